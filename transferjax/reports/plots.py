"""Report plots (PNG): learning curves, and a metric against beta or against the domain shift.

matplotlib is an optional extra (`pip install transferjax[plots]`); it is imported inside the
functions, and figures are drawn with the Agg canvas directly (no pyplot, so no global
backend is switched and nothing opens a window).
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from collections import Counter, defaultdict

from transferjax.reports.collect import RunRecord, learning_curve
from transferjax.reports.stats import mean_std
from transferjax.reports.tables import _sort_key, task_label

_AXES = {
    "beta": "beta (fraction of overlapping users made cold)",
    "shift_deg": "domain shift (degrees)",
}


def _figure(size=(6.4, 4.2)):
    """A matplotlib Figure on an Agg canvas; a clear error when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install transferjax[plots]") from e
    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def _colors(methods) -> dict[str, str]:
    """One colour per method: the 10-colour cycle, then tab20's lighter shades beyond ten."""
    ms = sorted(methods)
    if len(ms) <= 10:
        return {m: f"C{i}" for i, m in enumerate(ms)}
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # ten dark hues first, then their light pairs
    return {m: matplotlib.colors.to_hex(cmap(order[i % 20])) for i, m in enumerate(ms)}


def _selection_metric(recs) -> str | None:
    counts = Counter(r.select_metric for r in recs if r.select_metric)
    return counts.most_common(1)[0][0] if counts else None


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_learning_curves(
    records: list[RunRecord],
    *,
    out_dir: str | os.PathLike,
    metric: str | None = None,
    split: str = "valid",
) -> list[pathlib.Path]:
    """One PNG per task: `split` `metric` against training step, one line per run.

    Lines of one method share a colour; a dot marks each run's selected evaluation.
    metric: None uses the task's selection metric (the most common `select_metric`).
    Tasks whose runs have no history for the metric get no file.
    """
    colors = _colors({r.method for r in records})  # one colour per method in every plot
    by_task = defaultdict(list)
    for r in records:
        by_task[r.task].append(r)
    written = []
    for task in sorted(by_task, key=_sort_key):
        recs = by_task[task]
        name = metric or _selection_metric(recs)
        if name is None:
            continue
        curves = [(r, *learning_curve(r, name, split=split)) for r in recs]
        curves = [c for c in curves if c[1]]
        if not curves:
            continue
        fig = _figure()
        ax = fig.add_subplot()
        labelled = set()
        for r, steps, values in sorted(curves, key=lambda c: (c[0].method, c[0].seed)):
            label = None if r.method in labelled else r.method
            labelled.add(r.method)
            ax.plot(
                steps,
                values,
                color=colors[r.method],
                alpha=0.7,
                lw=1.2,
                label=label,
                marker="." if len(steps) < 30 else None,
            )
            if r.selected_step in steps:
                i = steps.index(r.selected_step)
                ax.plot([steps[i]], [values[i]], "o", color=colors[r.method], ms=6, mfc="none")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{split} {name}")
        ax.set_title(f"{task_label(task)}\n(one line per seed; circle = selected)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = pathlib.Path(out_dir) / f"curve_{_slug(name)}_{_slug(task_label(task))}.png"
        written.append(_save(fig, path))
    return written


def plot_metric_vs(
    records: list[RunRecord],
    *,
    x: str,
    metric: str,
    out_dir: str | os.PathLike,
    split: str = "test",
) -> list[pathlib.Path]:
    """`metric` against `x` ("beta" or "shift_deg"), one line per method, error bars = std.

    Runs are grouped by the other task fields (dataset, protocol and the other of beta /
    shift_deg); one PNG per group in which `x` takes at least two values.
    """
    if x not in _AXES:
        raise ValueError(f"x must be one of {sorted(_AXES)}, got {x!r}")
    other = "shift_deg" if x == "beta" else "beta"
    colors = _colors({r.method for r in records})
    groups = defaultdict(list)
    for r in records:
        if getattr(r, x) is not None and metric in r.metrics(split):
            groups[(r.dataset, r.protocol, getattr(r, other))].append(r)
    written = []
    for key in sorted(groups, key=_sort_key):
        recs = groups[key]
        xs = sorted({getattr(r, x) for r in recs})
        if len(xs) < 2:
            continue
        fig = _figure()
        ax = fig.add_subplot()
        methods = sorted({r.method for r in recs})
        dodge = 0.008 * (xs[-1] - xs[0])  # spread overlapping error bars apart
        for j, m in enumerate(methods):
            off = (j - (len(methods) - 1) / 2) * dodge
            pts = []
            for xv in xs:
                vals = [
                    r.metrics(split)[metric] for r in recs if r.method == m and getattr(r, x) == xv
                ]
                if vals:
                    mean, std, _ = mean_std(vals)
                    pts.append((xv + off, mean, 0.0 if math.isnan(std) else std))
            if pts:
                px, py, pe = zip(*pts, strict=True)
                ax.errorbar(px, py, yerr=pe, color=colors[m], marker="o", ms=4, capsize=3, label=m)
        dataset, protocol, ov = key
        title = f"{dataset}, {protocol}" + ("" if ov is None else f", {other}={ov:g}")
        ax.set_title(f"{title}\n(mean \u00b1 std over seeds)", fontsize=9)
        ax.set_xlabel(_AXES[x])
        ax.set_ylabel(f"{split} {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = pathlib.Path(out_dir) / f"{_slug(metric)}_vs_{x}_{_slug(title)}.png"
        written.append(_save(fig, path))
    return written


def plot_all(
    records: list[RunRecord], *, out_dir: str | os.PathLike, metrics, split: str = "test"
) -> list[pathlib.Path]:
    """Learning curves (selection metric on valid) and every metric against beta and shift."""
    written = plot_learning_curves(records, out_dir=out_dir)
    for metric in metrics:
        for x in ("beta", "shift_deg"):
            written += plot_metric_vs(records, x=x, metric=metric, out_dir=out_dir, split=split)
    return written
