"""One run end to end: config -> data -> split -> train -> run folder.

A run folder holds:
  config.json   the resolved config
  metrics.json  every evaluation (valid and test), the selected one, and timings
  scalars.jsonl and tb/ (TensorBoard event files through tensorboardX)
  summary.txt   the printed summary
JSON files are written atomically (temp file, then rename).
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time

import jax

from transferjax import __version__
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_train
from transferjax.train.writers import make_writer


def write_json(path: str | os.PathLike, obj) -> None:
    """Writes JSON atomically: a reader sees the old file or the complete new one."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def default_run_dir(cfg) -> pathlib.Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / f"{cfg.name}-{cfg.method}-{stamp}"


def _fmt(metrics: dict, keys) -> str:
    return "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)


def summary(cfg, result, split) -> str:
    best = result.best
    keys = [k for k in ("mae", "rmse", "hr@10", "ndcg@10", "mrr", "full_hr@10",
                        "full_ndcg@10", "full_recall@10", "full_mrr") if k in best["valid"]]
    lines = [
        f"transferjax {__version__}  {cfg.name}  method={cfg.method}  data={split.data.name}  "
        f"protocol={split.protocol}",
        f"selected: stage={best['stage']} epoch={best['epoch']} by valid {result.select_metric}",
        f"  valid  {_fmt(best['valid'], keys)}",
        f"  test   {_fmt(best['test'], keys)}",
        f"wall {result.wall_time:.1f}s (train {result.train_time:.1f}s)",
    ]
    return "\n".join(lines)


def run(cfg, *, out_dir: str | os.PathLike | None = None, echo=print) -> dict:
    """Runs `cfg` and writes its run folder; returns the metrics dict that was written."""
    t0 = time.perf_counter()
    out = pathlib.Path(out_dir) if out_dir else default_run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", C.to_dict(cfg))
    data = build_dataset(cfg.data)
    split = build_split(cfg.protocol, data)
    t_data = time.perf_counter() - t0
    writer = make_writer(out)
    try:
        train = make_train(cfg, split, evaluate=make_evaluate(cfg, split), log=writer.scalars)
        result = train(jax.random.key(cfg.seed))
    finally:
        writer.close()
    metrics = {
        "method": cfg.method,
        "dataset": data.name,
        "protocol": split.protocol,
        "protocol_info": {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                          for k, v in split.info.items()},
        "select_metric": result.select_metric,
        "selected": {"index": result.selected, **result.best},
        "history": result.history,
        "timing": {"data_s": t_data, "train_s": result.train_time,
                   "wall_s": time.perf_counter() - t0},
        "version": __version__,
        "devices": [str(d) for d in jax.devices()],
        "host": platform.node(),
    }
    write_json(out / "metrics.json", metrics)
    text = summary(cfg, result, split) + f"\nrun folder: {out}"
    (out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    echo(text)
    return metrics
