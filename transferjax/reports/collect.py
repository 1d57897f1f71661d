"""Collects run folders into flat records: the only place reports read files.

A run folder (written by `transferjax.train.run.run`) holds `config.json` and `metrics.json`.
`metrics.json` comes in two shapes:

* single seed: `{method, dataset, protocol, protocol_info, select_metric,
  selected: {valid: {...}, test: {...}, ...}, history: [...], ...}`, the seed in config.json;
* several seeds: `{..., seeds: [entry, ...]}` where each entry is shaped like a single-seed
  metrics.json plus a `seed` key; fields an entry lacks are taken from the top level.

Each (folder, seed) becomes one `RunRecord`. Only config.json and metrics.json are read here;
`learning_curve` may fall back to scalars.jsonl when a run has no evaluation history.

A seed whose entry has status "failed" (it diverged under `trainer.on_nonfinite=fail`; its
"selected" is null) or whose selected metrics are NaN or infinite (folders written before
divergence was detected) is read with `problem` set: tables leave it out of every mean and
say so (`RunRecord.excluded`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import warnings
from collections.abc import Iterable
from typing import Any

from transferjax.data.types import DataError

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"
SCALARS_FILE = "scalars.jsonl"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One seed of one run, as read from its run folder.

    `task` = (dataset, protocol, beta, shift_deg) groups runs that are comparable; beta is
    None outside the cold-start protocol and shift_deg is None for non-synthetic data.
    """

    method: str
    dataset: str
    protocol: str
    beta: float | None
    shift_deg: float | None
    seed: int
    valid: dict[str, float]
    test: dict[str, float]
    select_metric: str | None
    selected_step: int | None
    history: tuple[dict, ...]
    config: dict[str, Any]
    path: str
    entry: int | None = None  # index in metrics.json "seeds"; None for a single-seed folder
    status: str = "ok"  # "failed": the seed diverged (metrics.json "status")
    problem: str | None = None  # why the seed is left out of means: failed, non-finite metrics

    @property
    def excluded(self) -> bool:
        """Whether tables leave this seed out of their means (see `problem`)."""
        return self.problem is not None

    @property
    def task(self) -> tuple:
        return (self.dataset, self.protocol, self.beta, self.shift_deg)

    def metrics(self, split: str) -> dict[str, float]:
        """The selected evaluation's metrics on `split` ("valid" or "test")."""
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        return self.valid if split == "valid" else self.test


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file; malformed JSON raises DataError naming `path:LINE`."""
    path = pathlib.Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg} (column {e.colno})") from e


def _get(d: dict, dotted: str, default=None):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _metric_dict(obj, where: str) -> dict[str, float]:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object of metric values, got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DataError(f"{where}.{k}: expected a number, got {v!r}")
        out[k] = float(v)
    return out


def _record(
    entry: dict, top: dict, config: dict, path: pathlib.Path, where: str, index: int | None = None
) -> RunRecord:
    """One RunRecord from a (per-seed) metrics entry; `where` names the file and field."""

    def field(key):
        if key in entry:
            return entry[key]
        if key in top:
            return top[key]
        raise DataError(f"{where}: missing field {key!r}")

    status = str(entry.get("status", "ok"))
    selected = field("selected")
    if selected is None and status == "failed":
        selected = {}
    if not isinstance(selected, dict):
        raise DataError(f"{where}.selected: expected an object")
    protocol = str(field("protocol"))
    info = entry.get("protocol_info", top.get("protocol_info")) or {}
    beta = info.get("beta")
    if beta is None and protocol == "cold_start":
        beta = _get(config, "protocol.beta")
    shift = None
    if _get(config, "data.name", field("dataset")) == "synthetic":
        shift = _get(config, "data.synthetic.shift_deg")
    seed = entry.get("seed", top.get("seed", config.get("seed")))
    if seed is None:
        raise DataError(f"{where}: no seed (neither metrics.json nor config.json has 'seed')")
    if entry is not top and "seed" in entry:  # one folder, several seeds: config per seed
        config = {**config, "seed": entry["seed"]}
    valid = _metric_dict(selected.get("valid", {}), f"{where}.selected.valid")
    test = _metric_dict(selected.get("test", {}), f"{where}.selected.test")
    problem = None
    if status != "ok":
        why = (entry.get("failure") or {}).get("reason") if isinstance(entry, dict) else None
        problem = f"status {status}" + (f": {why}" if why else "")
    else:
        bad = [
            f"{split} {k}={v}"
            for split, d in (("valid", valid), ("test", test))
            for k, v in d.items()
            if not math.isfinite(v)
        ]
        problem = f"non-finite metrics: {', '.join(bad)}" if bad else None
    return RunRecord(
        method=str(entry.get("method", top.get("method", config.get("method", "")))) or "?",
        dataset=str(field("dataset")),
        protocol=protocol,
        beta=None if beta is None else float(beta),
        shift_deg=None if shift is None else float(shift),
        seed=int(seed),
        valid=valid,
        test=test,
        select_metric=entry.get("select_metric", top.get("select_metric")),
        selected_step=None if selected.get("step") is None else int(selected["step"]),
        history=tuple(entry.get("history", top.get("history", ())) or ()),
        config=config,
        path=str(path),
        entry=index,
        status=status,
        problem=problem,
    )


def read_run(run_dir: str | os.PathLike) -> list[RunRecord]:
    """Records of one run folder: one per seed (a "seeds" list gives several)."""
    run_dir = pathlib.Path(run_dir)
    mpath = run_dir / METRICS_FILE
    metrics = read_json(mpath)
    if not isinstance(metrics, dict):
        raise DataError(f"{mpath}: expected a JSON object at the top level")
    cpath = run_dir / CONFIG_FILE
    config = read_json(cpath) if cpath.is_file() else {}
    return metrics_records(metrics, config, path=run_dir, where=str(mpath))


def metrics_records(metrics: dict, config: dict, *, path, where: str) -> list[RunRecord]:
    """Records of one run's parsed metrics.json and config.json, one per seed; `path`: the
    records' `path`, `where`: the file that errors name."""
    path = pathlib.Path(path)
    if "seeds" not in metrics:
        return [_record(metrics, metrics, config, path, where)]
    entries = metrics["seeds"]
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{where}: 'seeds' must be a non-empty list of per-seed entries")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "seed" not in e:
            raise DataError(f"{where}: seeds[{i}] must be an object with a 'seed' key")
        out.append(_record(e, metrics, config, path, f"{where}: seeds[{i}]", i))
    return out


def _run_dirs(root: pathlib.Path) -> Iterable[pathlib.Path]:
    """Run folders under `root` (itself included), sorted; warns about incomplete ones."""
    if (root / METRICS_FILE).is_file():
        yield root
        return
    if (root / CONFIG_FILE).is_file():
        warnings.warn(
            f"skipping {root}: it has {CONFIG_FILE} but no {METRICS_FILE} "
            "(unfinished or crashed run?)",
            stacklevel=3,
        )
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        yield from _run_dirs(child)


def collect_runs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[RunRecord]:
    """Reads every run under `paths`.

    Args:
      paths: run folders, or folders containing run folders at any depth.

    Returns:
      RunRecords, one per (run folder, seed), in path order. A path given twice (or nested
      in another given path) is read once.

    Raises:
      FileNotFoundError: a path does not exist.
      DataError: malformed JSON or a missing field (the message names the file).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    seen: set[pathlib.Path] = set()
    records: list[RunRecord] = []
    for p in paths:
        p = pathlib.Path(p)
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such run folder")
        found = 0
        for d in _run_dirs(p):
            found += 1
            if d.resolve() in seen:
                continue
            seen.add(d.resolve())
            records.extend(read_run(d))
        if not found:
            warnings.warn(f"skipping {p}: no {METRICS_FILE} in it or below it", stacklevel=2)
    return records


def learning_curve(record: RunRecord, metric: str, *, split: str = "valid"):
    """(steps, values) of `split` `metric` over training, from the run's history.

    Falls back to `valid/<metric>` lines of scalars.jsonl when metrics.json has no history
    (single-seed folders only). Returns two lists, possibly empty.
    """
    steps, values = [], []
    for h in record.history:
        v = (h.get(split) or {}).get(metric)
        if v is not None and "step" in h:
            steps.append(int(h["step"]))
            values.append(float(v))
    scalars = pathlib.Path(record.path) / SCALARS_FILE
    if not steps and record.entry is None and scalars.is_file():
        key = f"{split}/{metric}"
        for i, line in enumerate(scalars.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{scalars}:{i}: malformed JSON line: {e.msg}") from e
            if key in row:
                steps.append(int(row["step"]))
                values.append(float(row[key]))
    return steps, values
