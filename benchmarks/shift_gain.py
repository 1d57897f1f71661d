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

The public tasks of the quality suite named in `--tasks` (default `douban_book_music` and
`ml1m_genre_beta0.2`) are only read, never trained: each transfer method of the task
(`public_methods`) with a finished run folder (one holding metrics.json) gives a row, and the
others are listed as skipped. Their gain is measured in the task's own metric (`gain_metric`:
RMSE on a rating task, NDCG@10 on a ranking one, signed so that > 0 means transfer helped).
A public task has one split, so its interest measures are one value for all its methods: its
correlations, a block of their own, are over its methods and the model measures only.

A plot (`plot_gain`, benchmarks/plots/shift_gain.png beside the report) draws each model
measure against the gain, one panel per measure, for the synthetic cells and the public tasks.

    python -m benchmarks.shift_gain                       # writes the section shift-gain of
                                                          # BENCHMARKS.md (and the plot)
    python -m benchmarks.shift_gain --runs runs/bench-quality --shifts 0,45,90 --seeds 1
    python -m benchmarks.shift_gain --tasks douban_book_music --report /tmp/check.md
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

from benchmarks import quality as Q
from benchmarks.gain_cells import (
    _diagnose,
    _measures,
    _test_rmse,
    collect_public,
    correlations,
    gain_metric,
    public_task,
)
from benchmarks.sections import OTHER_SECTIONS, put_section
from transferjax.diagnostics import MEASURES

SECTION = OTHER_SECTIONS[0]
TRANSFER = ("emcdr", "cmf", "ptupcdr", "dann")
SYNTHETIC = "synthetic"  # in --tasks: the synthetic shift sweep (--shifts, --methods)
TASKS = (SYNTHETIC, "douban_book_music", "ml1m_genre_beta0.2")
PLOT = pathlib.Path("benchmarks") / "plots" / "shift_gain.png"  # beside the report


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


def markdown(rows, corr, *, command: str, seeds: int, wall: float) -> str:
    lines = [
        f"Written by `{command}` ({seeds} seeds per cell; this invocation {wall:.0f} s, "
        "finished cells reused). Gain: target-only MF's cold-test RMSE minus the method's "
        "(mean over seeds; > 0 helped). Interest measures: the two domains' SVD interest "
        "embeddings (source side ridge-mapped); model measures: the method's own source- and "
        "target-side user vectors under the selected epoch's params (`transferjax diagnose`), "
        "mean over seeds.",
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


def _gain_text(metric: str) -> str:
    """What a task's gain is, in words (`gain_metric`'s sign)."""
    if metric == "rmse":
        return "target-only MF's test RMSE minus the method's"
    return f"the method's test {metric} minus target-only MF's"


def _corr_table(corr) -> list[str]:
    return [
        "| vectors | measure | rho | p | n |",
        "|---|---|---:|---:|---:|",
        *(f"| {k} | {m} | {r:+.3f} | {p:.3g} | {n} |" for k, m, r, p, n in corr),
    ]


def public_markdown(task: Q.Task, rows: list[dict], corr, *, skipped) -> str:
    """The block of one public task: its correlations (model measures, over its methods), its
    interest measures (one value for the task), its cells and its skipped methods."""
    metric, _ = gain_metric(task)
    interest = rows[0]["interest"] if rows else {}
    lines = [
        f"### Public task `{task.name}`",
        "",
        f"Gain: {_gain_text(metric)} (mean over seeds; > 0 helped); the finished run folders "
        "of the quality suite are read, nothing is trained. The task has one split, so its "
        "interest measures are one value for every method and its diagnostics differ per "
        "method only through the model measures: the correlations are over its methods, "
        "model measures only (one cell per method; methods without source-side user vectors "
        "have none).",
        "",
        *_corr_table(corr),
        "",
        "Interest measures of the task: "
        + (", ".join(f"{k} {v:.4g}" for k, v in interest.items()) or "-")
        + ".",
        "",
        "| method | gain | " + " | ".join(f"model {m}" for m in MEASURES) + " |",
        "|---|---:|" + "---:|" * len(MEASURES),
    ]
    for r in rows:
        cells = " | ".join(
            "-" if r["model"].get(m) is None else f"{r['model'][m]:.4g}" for m in MEASURES
        )
        lines.append(f"| {r['method']} | {r['gain']:+.4f} | {cells} |")
    if skipped:
        lines += ["", f"Skipped (not measured): {', '.join(skipped)}."]
    return "\n".join(lines)


def _source(row: dict) -> str:
    """Which task a row belongs to in the plot: the synthetic sweep or a public task."""
    return SYNTHETIC if "shift" in row else row["task"]


def plot_gain(rows: list[dict], *, path) -> pathlib.Path:
    """A PNG at `path`: one panel per model measure, the measure (x) against the gain (y),
    one point per row; colour = method, marker = the synthetic sweep or the public task.

    Raises ImportError when matplotlib is missing (`transferjax.reports.plots`)."""
    from transferjax.reports.plots import _colors, _figure, _save

    measures = [k for k in MEASURES if any(k in r["model"] for r in rows)]
    colors = _colors({r["method"] for r in rows})
    markers = dict(zip(dict.fromkeys(map(_source, rows)), "os^Dvp*", strict=False))
    ncols = 3
    nrows = max(1, math.ceil((len(measures) + 1) / ncols))  # (+1: the legend's panel)
    fig = _figure(size=(3.3 * ncols, 2.8 * nrows))
    handles = {}
    for i, k in enumerate(measures):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for r in (r for r in rows if k in r["model"]):
            label = f"{r['method']} ({_source(r)})"
            (h,) = ax.plot(
                [r["model"][k]], [r["gain"]], markers[_source(r)], color=colors[r["method"]], ms=5
            )
            handles.setdefault(label, h)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel(f"model {k}", fontsize=8)
        ax.set_ylabel("gain over MF", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    legend = fig.add_subplot(nrows, ncols, len(measures) + 1)
    legend.axis("off")
    legend.legend(list(handles.values()), list(handles), fontsize=6, loc="center", ncol=1)
    return _save(fig, pathlib.Path(path))


def _plot_line(rows: list[dict], *, report) -> str:
    """The plot's markdown image line (the PNG beside the report), or why it was skipped."""
    out = pathlib.Path(report).resolve().parent
    if not any(r["model"] for r in rows):
        return "(no cell with model measures to plot)"
    try:
        png = plot_gain(rows, path=out / PLOT)
    except ImportError as e:
        return f"(plot skipped: {e})"
    return (
        "**Model measures against the gain** (one panel per measure, one point per cell; "
        "colour: method, marker: the synthetic sweep or the public task):\n\n"
        f"![model shift measures against the transfer gain]({png.relative_to(out).as_posix()})"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--tasks",
        default=",".join(TASKS),
        help=f"{SYNTHETIC!r} (the shift sweep: trains missing cells) and public tasks of the "
        "quality suite (read only: their unfinished cells are skipped)",
    )
    p.add_argument("--shifts", default="0,15,30,45,60,75,90")
    p.add_argument("--methods", default=",".join(TRANSFER), help="the synthetic sweep's methods")
    p.add_argument("--runs", default="runs/bench-quality", help="the quality suite's run folders")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--report", default="BENCHMARKS.md", help="markdown file of the section")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    tasks = a.tasks.split(",")
    publics = [public_task(t) for t in tasks if t != SYNTHETIC]
    shifts = [int(s) for s in a.shifts.split(",")]
    rows = []
    if SYNTHETIC in tasks:
        rows = collect(shifts, a.methods.split(","), runs=a.runs, seeds=a.seeds)
    blocks, all_rows = [], list(rows)
    for task in publics:
        prow, skipped = collect_public(task, runs=a.runs, measure=_diagnose)
        corr = correlations(prow, kinds=("model",), per_method=False)
        blocks.append(public_markdown(task, prow, corr, skipped=skipped))
        all_rows += prow
    cmd = "python -m benchmarks.shift_gain" + "".join(
        f" {f} {v}"
        for f, v, d in (
            ("--tasks", a.tasks, ",".join(TASKS)),
            ("--shifts", a.shifts, "0,15,30,45,60,75,90"),
            ("--methods", a.methods, ",".join(TRANSFER)),
            ("--seeds", a.seeds, 3),
        )
        if v != d
    )
    # (--runs only says where the cells are kept: the same configs give the same numbers)
    wall = time.perf_counter() - t0
    if SYNTHETIC in tasks:
        text = markdown(rows, correlations(rows), command=cmd, seeds=a.seeds, wall=wall)
    else:
        text = f"Written by `{cmd}` (this invocation {wall:.0f} s; public tasks only)."
    text = "\n\n".join([text, *blocks, _plot_line(all_rows, report=a.report)])
    put_section(a.report, SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
