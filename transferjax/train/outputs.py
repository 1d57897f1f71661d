"""What a run records about itself: the config hash and default folder, the data fingerprint,
the code's commit and the CPU it ran on (provenance), and the files its results go to
(metrics.json, manifest.json, summary.txt; the layout is described in `transferjax.train.run`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform
import subprocess

import jax
import numpy as np

from transferjax import __version__
from transferjax import config as C
from transferjax.train.distributed import is_writer
from transferjax.train.files import write_json, write_text
from transferjax.train.mesh import device_names, mesh_sizes


def config_hash(cfg) -> str:
    """8 hex digits identifying the resolved config (the default run folder's suffix)."""
    return hashlib.sha256(C.dumps(cfg).encode()).hexdigest()[:8]


def default_run_dir(cfg) -> pathlib.Path:
    """runs/NAME-METHOD-HASH: the same command maps to the same folder, so a rerun resumes."""
    return pathlib.Path("runs") / f"{cfg.name}-{cfg.method}-{config_hash(cfg)}"


def split_fingerprint(split) -> str:
    """sha256 over the arrays a run trains and evaluates on."""
    h = hashlib.sha256()
    for inter in (split.source_train, split.target_train):
        h.update(inter.fingerprint().encode())
    for part in (split.valid, split.test):
        for a in (part.pairs, part.row, part.item, part.rating):
            h.update(np.ascontiguousarray(a).tobytes())
        if part.negatives is not None:
            h.update(np.ascontiguousarray(part.negatives).tobytes())
        if part.exclude is not None:  # no bytes when no row is excluded (cold-start users)
            for a in (part.exclude.user, part.exclude.item):
                h.update(np.ascontiguousarray(a).tobytes())
    h.update(np.ascontiguousarray(split.warm_pairs).tobytes())
    return h.hexdigest()


def usable_cores() -> int | None:
    """The cores this process may run on: its CPU affinity, fewer than the machine's under
    `taskset` or a container's CPU set; None where the platform does not say."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


MACHINE_KEYS = ("cpu", "cores", "cores_usable", "python", "jax", "backend", "devices")


def machine() -> dict:
    """Where this process runs (`MACHINE_KEYS`): the CPU, the machine's cores and those the
    process may use (a wall time is read against the cores it had), the Python and JAX
    versions, the backend and the devices."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable_cores(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": device_names(),
    }


def git_commit() -> str | None:
    """The commit of the code that ran, recorded only when the package sits at the top of a git
    checkout (`transferjax/` beside `.git`, as in an editable install); None otherwise (an
    installed copy, even one inside some other repository, or no git), without an error."""
    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # a folder, or a file in a git worktree
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _fmt(metrics: dict, keys) -> str:
    return "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)


SUMMARY_KEYS = (
    "mae",
    "rmse",
    "hr@10",
    "ndcg@10",
    "mrr",
    "full_hr@10",
    "full_ndcg@10",
    "full_recall@10",
    "full_mrr",
)


def summary(cfg, results, split, seeds, wall: float, train_s: float, process_wall: float) -> str:
    lines = [
        f"transferjax {__version__}  {cfg.name}  method={cfg.method}  data={split.data.name}  "
        f"protocol={split.protocol}  seeds={list(seeds)}"
    ]
    for seed, r in zip(seeds, results):
        best = r.best
        if best is None:
            lines.append(f"seed {seed}: FAILED: {r.failure['message']}")
            continue
        keys = [k for k in SUMMARY_KEYS if k in best["valid"]]
        lines += [
            f"seed {seed}: selected stage={best['stage']} epoch={best['epoch']} "
            f"by valid {r.select_metric}"
            + (f" (stopped early after epoch {r.history[-1]['epoch']})" if r.stopped_early else ""),
            f"  valid  {_fmt(best['valid'], keys)}",
            f"  test   {_fmt(best['test'], keys)}",
        ]
    ok = [r for r in results if r.best is not None]
    if len(ok) > 1:
        keys = [k for k in SUMMARY_KEYS if k in ok[0].best["test"]]
        arr = {k: np.array([r.best["test"][k] for r in ok]) for k in keys}
        lines.append(
            "  test mean +/- std: "
            + "  ".join(f"{k}={v.mean():.4f}+/-{v.std(ddof=1):.4f}" for k, v in arr.items())
            + (f"  (over {len(ok)} seeds; failed seeds left out)" if len(ok) < len(results) else "")
        )
    r0 = results[0]
    lines.append(
        f"wall {wall:.1f}s (train {train_s:.1f}s, "
        f"compile {max(r.compile_time for r in results):.1f}s)"
        + (
            f", resumed from checkpoint {r0.resumed_from}; this process {process_wall:.1f}s"
            if r0.resumed_from
            else ""
        )
    )
    return "\n".join(lines)


def _seed_entry(seed, r) -> dict:
    return {
        "seed": seed,
        "status": r.status,
        **({"failure": r.failure} if r.failure is not None else {}),
        "select_metric": r.select_metric,
        "selected": None if r.best is None else {"index": r.selected, **r.best},
        "stopped_early": r.stopped_early,
        "history": r.history,
    }


def write_results(
    out: pathlib.Path,
    cfg,
    split,
    results,
    *,
    vmapped: bool,
    workers: int,
    t_data: float,
    process_wall: float,
) -> dict:
    """Writes metrics.json, manifest.json and summary.txt (on process 0 of a multi-process
    run; the others write nothing); returns the metrics dict. `workers`: the threads the
    seeds ran on (1 when vmapped).

    Times: `process_wall` is this process's seconds; "wall_s" adds the wall seconds of the
    earlier processes of a resumed run, as its checkpoints recorded them (the largest of its
    seeds': they ran side by side or one after another, and each records the run's clock), so
    it spans every process up to the checkpoints it resumed from, as "train_s" does.
    """
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    train_s = results[0].train_time if vmapped else sum(r.train_time for r in results)
    wall = process_wall + max(r.wall_before for r in results)
    common = {
        "method": cfg.method,
        "dataset": split.data.name,
        "protocol": split.protocol,
        "protocol_info": {
            k: (v if isinstance(v, (int, float, str, bool)) else str(v))
            for k, v in split.info.items()
        },
        "timing": {
            "data_s": t_data,
            "train_s": train_s,
            "compile_s": max(r.compile_time for r in results),
            "wall_s": wall,
            "process_wall_s": process_wall,
        },
        "version": __version__,
        "status": "ok" if all(r.status == "ok" for r in results) else "failed",
    }
    if len(seeds) == 1:
        metrics = {**common, **_seed_entry(seeds[0], results[0])}
    else:
        metrics = {**common, "seeds": [_seed_entry(s, r) for s, r in zip(seeds, results)]}
    text = summary(cfg, results, split, seeds, wall, train_s, process_wall)
    text += f"\nrun folder: {out}"
    metrics["_summary"] = text
    if not is_writer():
        return metrics
    write_json(out / "metrics.json", metrics)
    write_json(
        out / "manifest.json",
        {
            "config": C.to_dict(cfg),
            "version": __version__,
            "git_commit": git_commit(),
            "data_fingerprint": split_fingerprint(split),
            "seeds": seeds,
            "vmapped_seeds": vmapped,
            "seed_workers": workers,
            # the run's (last) process: its CPU, cores, versions, backend and devices
            **machine(),
            "mesh": mesh_sizes(cfg.trainer.mesh),
            "host": platform.node(),
            "processes": jax.process_count(),
            "wall_s": wall,
            "process_wall_s": process_wall,
            "train_s": train_s,
            "compile_s": max(r.compile_time for r in results),
            "data_s": t_data,
            "resumed_from": results[0].resumed_from,
        },
    )
    write_text(out / "summary.txt", text + "\n")
    return metrics
