"""Does a shift diagnostic predict negative transfer? The synthetic shift sweep, measured.

For each synthetic shift angle (`--shifts`, the quality suite's `synthetic_shift{S}` tasks) the
cells of target-only MF and of each transfer method (`--methods`) are trained through the
quality suite's runner (`benchmarks.quality.run_cell`: finished run folders of the same config
and data are reused, so this reads the full suite's folders when `--runs` points at them), and
`transferjax diagnose` measures each transfer cell's folder (`transferjax.train.diagnose`).

The transfer gain of a method at an angle is MF's mean cold-test RMSE minus the method's (over
the seeds; > 0: transfer helped, < 0: negative transfer). Each diagnostic is then set against
the gain over all (angle, method) cells, as Spearman's rank correlation with its two-sided
p-value (t approximation, n - 2 degrees of freedom):
  - the raw interest measures (one value per angle, the same for every method): how far apart
    the two domains' training interests are;
  - the model measures (per cell, the mean over seeds): how far apart the method's own source
    and target user vectors are (`Built.represent`).
A negative correlation means a larger distance goes with a smaller gain; the cosine is a
similarity, so there a positive one does.

    python -m benchmarks.shift_gain                       # writes the section shift-gain of
                                                          # BENCHMARKS.md (and the plot)
    python -m benchmarks.shift_gain --runs runs/bench-quality --shifts 0,45,90 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

from benchmarks import quality as Q
from benchmarks.sections import OTHER_SECTIONS, put_section
from transferjax.diagnostics import MEASURES
from transferjax.reports.stats import _avg_ranks, t_pvalue

SECTION = OTHER_SECTIONS[0]
TRANSFER = ("emcdr", "cmf", "ptupcdr", "dann")


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


def _test_rmse(folder: pathlib.Path) -> float:
    """Mean over seeds of the selected test RMSE in a run folder's metrics.json."""
    m = json.loads((folder / "metrics.json").read_text())
    seeds = m.get("seeds") or [m]
    return float(np.mean([s["selected"]["test"]["rmse"] for s in seeds]))


def _measures(diag: dict) -> tuple[dict, dict]:
    """({measure: interest value}, {measure: model value, mean over seeds}) of a diagnose
    result (`transferjax.train.diagnose.diagnose`)."""
    interest = {k: diag["interest"][k] for k in MEASURES if k in diag["interest"]}
    seeds = diag["model"] if isinstance(diag["model"], list) else []
    model = {k: float(np.mean([s[k] for s in seeds])) for k in MEASURES if seeds and k in seeds[0]}
    return interest, model


def collect(shifts, methods, *, runs, seeds: int, echo=print) -> list[dict]:
    """One row per (angle, transfer method): gain, interest and model measures."""
    from transferjax.train.diagnose import diagnose

    data, rows = {}, []
    for s in shifts:
        task = Q.Task(
            name=f"synthetic_shift{s}",
            experiment="synthetic_emcdr.py",
            overrides=(f"data.synthetic.shift_deg={s}",),
        )
        for m in ("mf", *methods):
            Q.run_cell(task, m, runs=runs, seeds=seeds, data=data, echo=echo)
        base = _test_rmse(pathlib.Path(runs) / task.name / "mf")
        for m in methods:
            folder = pathlib.Path(runs) / task.name / m
            interest, model = _measures(diagnose(folder, echo=lambda *_: None))
            gain = base - _test_rmse(folder)
            rows.append(
                {"shift": s, "method": m, "gain": gain, "interest": interest, "model": model}
            )
    return rows


def correlations(rows: list[dict]) -> list[tuple]:
    """(vectors, measure, rho, p, n) of each measure against the gain: over all rows, and for
    the model measures also within each method (over its angles), since the methods' vector
    spaces differ in scale."""
    out = []
    groups = [("interest", "interest", rows), ("model", "model", rows)]
    for m in dict.fromkeys(r["method"] for r in rows):
        groups.append((f"model ({m})", "model", [r for r in rows if r["method"] == m]))
    for label, kind, sub in groups:
        for k in MEASURES:
            pairs = [(r[kind][k], r["gain"]) for r in sub if k in r[kind]]
            if pairs:
                x, y = zip(*pairs, strict=True)
                out.append((label, k, *spearman(x, y), len(pairs)))
    return out


def markdown(rows, corr, *, command: str, seeds: int, wall: float) -> str:
    lines = [
        f"Written by `{command}` ({seeds} seeds per cell; this invocation {wall:.0f} s, "
        "finished cells reused). Gain: target-only MF's cold-test RMSE minus the method's "
        "(mean over seeds; > 0 helped). Interest measures: the two domains' SVD interest "
        "embeddings (source side ridge-mapped); model measures: the method's own source- and "
        "target-side user vectors at the selected (or newest kept) checkpoint, mean over seeds.",
        "",
        "**Spearman rank correlation of each diagnostic with the gain** (over all angle x method "
        "cells; two-sided p, t approximation):",
        "",
        "| vectors | measure | rho | p | n |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {k} | {m} | {r:+.3f} | {p:.3g} | {n} |" for k, m, r, p, n in corr]
    lines += [
        "",
        "(nan: a side is constant, e.g. CMF's cosine between its one shared user row and "
        "itself is always 1. The interest rows repeat one value per angle for every method, so "
        "their p-values, which count the cells as independent, are optimistic; the per-method "
        "rows have one cell per angle.)",
    ]
    lines += [
        "",
        "**The cells:**",
        "",
        "| shift | method | gain | "
        + " | ".join(f"interest {m}" for m in MEASURES)
        + " | "
        + " | ".join(f"model {m}" for m in MEASURES)
        + " |",
        "|" + "---:|" * 3 + "---:|" * (2 * len(MEASURES)),
    ]
    for r in rows:
        vals = [r["interest"].get(m) for m in MEASURES] + [r["model"].get(m) for m in MEASURES]
        cells = " | ".join("-" if v is None else f"{v:.4g}" for v in vals)
        lines.append(f"| {r['shift']} | {r['method']} | {r['gain']:+.4f} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shifts", default="0,15,30,45,60,75,90")
    p.add_argument("--methods", default=",".join(TRANSFER))
    p.add_argument("--runs", default="runs/bench-quality", help="the quality suite's run folders")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--report", default="BENCHMARKS.md", help="markdown file of the section")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    shifts = [int(s) for s in a.shifts.split(",")]
    rows = collect(shifts, a.methods.split(","), runs=a.runs, seeds=a.seeds)
    corr = correlations(rows)
    cmd = "python -m benchmarks.shift_gain" + "".join(
        f" {f} {v}"
        for f, v, d in (
            ("--shifts", a.shifts, "0,15,30,45,60,75,90"),
            ("--methods", a.methods, ",".join(TRANSFER)),
            ("--seeds", a.seeds, 3),
        )
        if v != d
    )
    # (--runs only says where the cells are kept: the same configs give the same numbers)
    text = markdown(rows, corr, command=cmd, seeds=a.seeds, wall=time.perf_counter() - t0)
    put_section(a.report, SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
