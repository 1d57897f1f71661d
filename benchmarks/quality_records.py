"""Cell records: what the quality report needs of a finished cell, kept in the repository.

A cell's run folder (`runs/bench-quality/TASK/METHOD`) holds checkpoints, logs and curves, and
stays on the machine that trained it. Its record, `benchmarks/cells/TASK/METHOD.json`
(`TASK/METHOD/seedK.json` per seed for a cell trained one seed per run), is the part the
report reads (20-30 kB), committed beside the report:

    {"config": config.json, "fingerprint": fingerprint.json,
     "metrics": metrics.json without the evaluation history and summary,
     "machine": where it ran, "code": the commit and versions that trained it}

so the report can be regenerated (`python -m benchmarks.quality --report-only`) and an
interrupted suite resumed on another machine without retraining the cells that finished. A
record stands for its cell only while it matches: the same config (`same_config`) and the same
data fingerprint as the split the task builds now. A record that does not match is neither
reported nor reused; the cell is trained again (or listed as not run by `--report-only`).
"""

from __future__ import annotations

import json
import pathlib

from transferjax import config as C
from transferjax.data.types import DataError
from transferjax.reports.collect import RunRecord, metrics_records, read_json

# The committed records of the full suite (the quick suite keeps none).
RECORDS = pathlib.Path(__file__).resolve().parent / "cells"


def record_path(root, task: str, method: str, part: str = "") -> pathlib.Path:
    """Where the record of cell TASK/METHOD lives under `root`; with `part` (a cell trained
    one seed per run: "seedK"), that run's record, TASK/METHOD/PART.json."""
    if part:
        return pathlib.Path(root) / task / method / f"{part}.json"
    return pathlib.Path(root) / task / f"{method}.json"


def _without_history(metrics: dict) -> dict:
    """metrics.json without the evaluation history and the printed summary."""
    out = {k: v for k, v in metrics.items() if k not in ("history", "_summary")}
    if isinstance(out.get("seeds"), list):
        out["seeds"] = [{k: v for k, v in e.items() if k != "history"} for e in out["seeds"]]
    return out


KEYS = ("config", "fingerprint", "metrics", "machine")  # what a record must hold
PROVENANCE = ("git_commit", "version", "jax", "python", "resumed_from")


def _code(folder: pathlib.Path) -> dict:
    """What trained the cell, from its manifest.json: the commit, versions, and the checkpoint
    it resumed from (empty for a folder without a manifest)."""
    path = folder / "manifest.json"
    manifest = read_json(path) if path.is_file() else {}
    return {k: manifest[k] for k in PROVENANCE if k in manifest}


def save_record(folder, path, *, machine: dict) -> pathlib.Path:
    """Writes the record of the finished run folder `folder`, trained on `machine`, to `path`
    (keys sorted, so an unchanged cell rewrites the same bytes)."""
    folder = pathlib.Path(folder)
    rec = {
        "config": read_json(folder / "config.json"),
        "fingerprint": read_json(folder / "fingerprint.json"),
        "metrics": _without_history(read_json(folder / "metrics.json")),
        "machine": machine,
        "code": _code(folder),
    }
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def load_record(path, cfg, data_fingerprint) -> dict | None:
    """The record at `path` if it stands for the cell `cfg` trains on data whose fingerprint
    is `data_fingerprint()` (called only when the config matches), else None. A malformed
    record raises DataError naming the file."""
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    rec = read_json(path)
    if not isinstance(rec, dict) or not all(isinstance(rec.get(k), dict) for k in KEYS):
        raise DataError(f"{path}: a cell record is an object of the objects {', '.join(KEYS)}")
    if not C.same_config(rec["config"], cfg):
        return None
    return rec if rec["fingerprint"].get("data") == data_fingerprint() else None


def record_runs(rec: dict, path) -> list[RunRecord]:
    """The report's RunRecords of the record `rec` loaded from `path`, one per seed."""
    return metrics_records(rec["metrics"], rec["config"], path=path, where=str(path))


def metrics_wall(metrics: dict) -> tuple[float, bool]:
    """A run's wall seconds from its metrics.json, and whether they are a lower bound.

    A run written since the wall time spans a resumed run's processes has "process_wall_s"
    beside "wall_s"; one written before holds its last process's wall time alone. Its
    "train_s" counts every process (summed over seeds that trained one after another or side
    by side), and each seed trained within the run's wall time, so where its seeds' mean
    training time exceeds "wall_s" the run was resumed: that mean stands in, as a lower bound.
    """
    timing = metrics["timing"]
    wall = float(timing["wall_s"])
    mean_train = float(timing.get("train_s", 0.0)) / len(metrics.get("seeds") or [None])
    if "process_wall_s" not in timing and mean_train > wall:
        return mean_train, True
    return wall, False


def record_wall(rec: dict) -> tuple[float, bool]:
    """The cell's wall seconds as measured when it ran, and whether a lower bound
    (`metrics_wall`)."""
    return metrics_wall(rec["metrics"])
