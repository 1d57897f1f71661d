"""The cells of the diagnostic-against-gain analysis: each transfer cell's gain over
target-only MF in its task's metric, the diagnostics of its run folder, and Spearman's rank
correlation between the two (`benchmarks.shift_gain` trains the synthetic cells, reads the
public tasks' finished folders, and writes the section and plot).
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np

from benchmarks import quality as Q
from transferjax.diagnostics import MEASURES
from transferjax.reports.stats import _avg_ranks, t_pvalue

# Cells of a public task that are not transfer: the baselines, and target-only LightGCN.
TARGET_ONLY = (*Q.BASELINES, "lightgcn")


def spearman(x, y) -> tuple[float, float]:
    """(rho, two-sided p) of Spearman's rank correlation (average ranks for ties; the p-value
    of t = rho sqrt((n - 2) / (1 - rho^2)) with n - 2 degrees of freedom). NaN when n < 3 or a
    side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.size
    if n < 3:
        return math.nan, math.nan
    rx, ry = _avg_ranks(x), _avg_ranks(y)
    if np.std(rx) == 0 or np.std(ry) == 0:
        return math.nan, math.nan
    rho = float(np.corrcoef(rx, ry)[0, 1])
    if abs(rho) >= 1.0:
        return rho, 0.0
    return rho, t_pvalue(rho * math.sqrt((n - 2) / (1.0 - rho * rho)), n - 2)


def _test_metric(folder: pathlib.Path, metric: str) -> float:
    """Mean over seeds of the selected test `metric` in a run folder's metrics.json."""
    m = json.loads((folder / "metrics.json").read_text())
    seeds = m.get("seeds") or [m]
    return float(np.mean([s["selected"]["test"][metric] for s in seeds]))


def _test_rmse(folder: pathlib.Path) -> float:
    """Mean over seeds of the selected test RMSE in a run folder's metrics.json."""
    return _test_metric(folder, "rmse")


def gain_metric(task: Q.Task) -> tuple[str, float]:
    """(test metric, sign) in which a task's transfer gain is measured: RMSE on a rating task
    (one that reports rmse; lower is better, sign -1), else NDCG@10 (sampled when the task
    reports it, else full ranking; higher is better, sign +1). The sign makes every task's
    gain > 0 when transfer helped, so the tasks' rows can share one table and plot."""
    if "rmse" in task.metrics:
        return "rmse", -1.0
    for name in ("ndcg@10", "full_ndcg@10"):
        if name in task.metrics:
            return name, 1.0
    raise ValueError(f"task {task.name!r} reports neither rmse nor NDCG@10: {task.metrics}")


def transfer_gain(base: float, value: float, *, sign: float) -> float:
    """sign * (value - base): the method's test metric against target-only MF's (`base`),
    > 0 when the method did better."""
    return sign * (value - base)


def _measures(diag: dict) -> tuple[dict, dict]:
    """({measure: interest value}, {measure: model value, mean over seeds}) of a diagnose
    result (`transferjax.train.diagnose.diagnose`)."""
    interest = {k: diag["interest"][k] for k in MEASURES if k in diag["interest"]}
    seeds = diag["model"] if isinstance(diag["model"], list) else []
    model = {k: float(np.mean([s[k] for s in seeds])) for k in MEASURES if seeds and k in seeds[0]}
    return interest, model


def finished(folder: pathlib.Path) -> bool:
    """Whether a run folder holds a finished run (its metrics.json; a run in progress has only
    its checkpoints and scalars)."""
    return (folder / "metrics.json").is_file()


def public_task(name: str) -> Q.Task:
    """The full quality suite's task `name` (not a synthetic shift angle)."""
    tasks = {t.name: t for t in Q.suite(quick=False) if not t.name.startswith("synthetic_shift")}
    if name not in tasks:
        raise SystemExit(f"--tasks: unknown task {name!r}; public tasks: {', '.join(tasks)}")
    return tasks[name]


def public_methods(task: Q.Task) -> tuple[str, ...]:
    """The task's transfer methods: its methods less the target-only ones (`TARGET_ONLY`)."""
    return tuple(m for m in task.methods if m not in TARGET_ONLY)


def _diagnose(folder: pathlib.Path) -> dict:
    """`transferjax diagnose` of a run folder, quietly (imported late: it loads JAX)."""
    from transferjax.train.diagnose import diagnose

    return diagnose(folder, echo=lambda *_: None)


def collect_public(task: Q.Task, *, runs, measure=None, echo=print) -> tuple[list[dict], list]:
    """(rows, skipped) of a public task, reading its finished run folders only (nothing is
    trained): one row per transfer method with a finished folder, with the gain in the task's
    metric (`gain_metric`) over target-only MF and the measures of `measure(folder)` (default
    `transferjax diagnose`); skipped: "method (why)" of the others. Without a finished MF
    folder no gain can be taken, so every method is skipped."""
    from transferjax.errors import RunFolderError

    measure = measure or _diagnose
    root = pathlib.Path(runs) / task.name
    methods = public_methods(task)

    def why(folder):
        return "in progress" if folder.is_dir() else "no run folder"

    rows, skipped = [], []
    if not finished(root / "mf"):
        skipped = [f"{m} (target-only mf: {why(root / 'mf')})" for m in methods]
        methods = ()
    else:
        metric, sign = gain_metric(task)
        base = _test_metric(root / "mf", metric)
    for m in methods:
        folder = root / m
        if not finished(folder):
            skipped.append(f"{m} ({why(folder)})")
            continue
        try:
            interest, model = _measures(measure(folder))
        except RunFolderError as e:
            skipped.append(f"{m} (diagnose: {e})")
            continue
        gain = transfer_gain(base, _test_metric(folder, metric), sign=sign)
        rows.append(
            {
                "task": task.name,
                "metric": metric,
                "method": m,
                "gain": gain,
                "interest": interest,
                "model": model,
            }
        )
    if skipped:
        echo(f"{task.name}: skipped {', '.join(skipped)}")
    return rows, skipped


def correlations(
    rows: list[dict], *, kinds=("interest", "model"), per_method: bool = True
) -> list[tuple]:
    """(vectors, measure, rho, p, n) of each measure against the gain: over all rows, and for
    the model measures also within each method (over its angles), since the methods' vector
    spaces differ in scale. `kinds`: the vectors to correlate; `per_method=False` leaves out
    the per-method rows (one public task has one cell per method)."""
    out = []
    groups = [(k, k, rows) for k in ("interest", "model") if k in kinds]
    if per_method and "model" in kinds:
        for m in dict.fromkeys(r["method"] for r in rows):
            groups.append((f"model ({m})", "model", [r for r in rows if r["method"] == m]))
    for label, kind, sub in groups:
        for k in MEASURES:
            pairs = [(r[kind][k], r["gain"]) for r in sub if k in r[kind]]
            if pairs:
                x, y = zip(*pairs, strict=True)
                out.append((label, k, *spearman(x, y), len(pairs)))
    return out
