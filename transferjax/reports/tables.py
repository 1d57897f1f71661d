"""Result tables: group records by task, summarize over seeds, render markdown/CSV/LaTeX.

One table per task (dataset, protocol, beta, shift_deg): rows are methods, columns metrics of
one split (test by default). A cell holds mean +/- sample std (ddof=1) over seeds and n; a
method other than the baseline gets a paired test against the baseline over the seeds both
have (matched by seed, see `stats`), marked with a dagger when p < alpha. The best mean of a
column is bold: lowest for error metrics (mae, rmse, ...), highest otherwise.

Seeds that failed (diverged) or whose metrics are NaN or infinite (`RunRecord.excluded`) are
never averaged: they are left out of the cells and tests, and the method is marked with a
double dagger whose note lists each left-out seed, its folder and why.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections import defaultdict

from transferjax.reports.collect import RunRecord
from transferjax.reports.stats import TESTS, mean_std, paired_test

_LOWER = ("mae", "rmse", "mse", "loss")
DAGGER = "\u2020"
DDAGGER = "\u2021"  # a method with seeds left out of the means


def lower_is_better(metric: str) -> bool:
    """True for error metrics (mae, rmse, mse, ...loss), False for ranking/accuracy metrics."""
    return metric.rsplit("/", 1)[-1].lower().endswith(_LOWER)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One method x metric: mean, sample std and n over seeds; p-value against the baseline
    (None for the baseline itself or when the task has no baseline; nan if undefined)."""

    mean: float
    std: float
    n: int
    pvalue: float | None = None
    n_pairs: int = 0
    significant: bool = False
    best: bool = False


@dataclasses.dataclass(frozen=True)
class TaskTable:
    """The summary of one task. `cells[(method, metric)]` is absent where a method lacks it."""

    task: tuple
    split: str
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    cells: dict
    baseline: str | None
    test: str
    alpha: float
    excluded: tuple = ()  # (method, seed, path, problem) of each seed left out of the means

    def excluded_methods(self) -> set[str]:
        return {e[0] for e in self.excluded}


def _sort_key(task: tuple):
    return tuple((v is None, v if v is not None else 0) for v in task)


def task_label(task: tuple) -> str:
    """'synthetic, cold_start, beta=0.2, shift=10deg' (parts that are None are left out)."""
    dataset, protocol, beta, shift = task
    parts = [dataset, protocol]
    if beta is not None:
        parts.append(f"beta={beta:g}")
    if shift is not None:
        parts.append(f"shift={shift:g}deg")
    return ", ".join(parts)


def _default_metrics(recs, split) -> list[str]:
    # metrics by group ("by_<grouping>/...") have their own tables (`report --by`)
    names = {m for r in recs for m in r.metrics(split) if not m.startswith("by_")}
    return sorted(names, key=lambda m: (not lower_is_better(m), m))


def summarize(
    records: list[RunRecord],
    *,
    metrics=None,
    split: str = "test",
    baseline: str | None = "mf",
    test: str = "ttest",
    alpha: float = 0.05,
) -> list[TaskTable]:
    """Groups `records` by task and summarizes each method x metric over seeds.

    Args:
      records: from `collect_runs`.
      metrics: metric names (columns, in this order); None: every metric the task's runs
        report, error metrics first. A named metric that no run of a task has is left out
        of that task's table.
      split: "test" or "valid" (the selected evaluation's metrics on that split).
      baseline: method the others are tested against; a task without it gets no tests.
      test: "ttest" (paired t-test) or "wilcoxon" (exact signed-rank).
      alpha: significance level of the dagger.

    Raises:
      ValueError: bad arguments, no records, or two runs of one method, task and seed.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {sorted(TESTS)}")
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    if not records:
        raise ValueError("no runs to report")
    by_task: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in records:
        by_task[r.task].append(r)
    tables = []
    for task in sorted(by_task, key=_sort_key):
        left_out = tuple((r.method, r.seed, r.path, r.problem) for r in by_task[task] if r.excluded)
        recs = [r for r in by_task[task] if not r.excluded]
        seen: dict[tuple, str] = {}
        for r in recs:
            key = (r.method, r.seed)
            if key in seen:
                raise ValueError(
                    f"two runs of method={r.method} seed={r.seed} for task ({task_label(task)}): "
                    f"{seen[key]} and {r.path}; report them separately"
                )
            seen[key] = r.path
        names = list(metrics) if metrics else _default_metrics(recs, split)
        names = [m for m in names if any(m in r.metrics(split) for r in recs)]
        methods = sorted(
            {r.method for r in recs} | {e[0] for e in left_out}, key=lambda m: (m != baseline, m)
        )
        base = baseline if baseline in methods else None
        cells = {}
        for metric in names:
            vals = {
                m: {
                    r.seed: r.metrics(split)[metric]
                    for r in recs
                    if r.method == m and metric in r.metrics(split)
                }
                for m in methods
            }
            for m in methods:
                if not vals[m]:
                    continue
                mean, std, n = mean_std([vals[m][s] for s in sorted(vals[m])])
                p, n_pairs = None, 0
                if base is not None and m != base:
                    common = sorted(set(vals[m]) & set(vals[base]))
                    res = paired_test(
                        [vals[m][s] for s in common], [vals[base][s] for s in common], test=test
                    )
                    p, n_pairs = res.pvalue, len(common)
                cells[(m, metric)] = Cell(
                    mean, std, n, p, n_pairs, significant=p is not None and p < alpha
                )
            means = [cells[(m, metric)].mean for m in methods if (m, metric) in cells]
            if not means:
                continue
            best = min(means) if lower_is_better(metric) else max(means)
            for m in methods:
                c = cells.get((m, metric))
                if c is not None and c.mean == best:
                    cells[(m, metric)] = dataclasses.replace(c, best=True)
        tables.append(
            TaskTable(task, split, tuple(methods), tuple(names), cells, base, test, alpha, left_out)
        )
    if metrics and not any(t.metrics for t in tables):
        have = sorted({m for r in records for m in r.metrics(split)})
        raise ValueError(
            f"none of the metrics {list(metrics)} is in the runs' {split} "
            f"metrics; available: {have}"
        )
    return tables


def footnote(t: TaskTable) -> str:
    """The note under a table: what a cell is, the test, alpha, the bold rule, and the seeds
    left out of the means."""
    text = (
        f"Cells: mean \u00b1 sample std (ddof=1) of the selected {t.split} metric over "
        "n seeds. Bold: best mean per column (lower is better for error metrics such as "
        "mae/rmse, higher otherwise). "
    )
    if t.baseline is None:
        text += "No significance test: the baseline method is not in this task."
    else:
        text += (
            f"{DAGGER}: p < {t.alpha:g}, {TESTS[t.test]} against {t.baseline}, paired "
            "over the seeds both methods have (matched by seed)."
        )
    return text + excluded_note(t)


def excluded_note(t: TaskTable) -> str:
    """' ‡: left out of the means ...' naming each excluded seed's folder, or ''."""
    if not t.excluded:
        return ""
    items = "; ".join(f"{m} seed {seed} ({path}: {why})" for m, seed, path, why in t.excluded)
    return f" {DDAGGER}: seeds left out of the means (failed or non-finite metrics): {items}."


def _num(x: float, digits: int) -> str:
    return "nan" if math.isnan(x) else f"{x:.{digits}f}"


def to_markdown(tables: list[TaskTable], *, digits: int = 4) -> str:
    """One markdown table per task, each under a `###` heading and above its footnote."""
    out = []
    for t in tables:
        out += [
            f"### {task_label(t.task)} ({t.split})",
            "",
            "| method | " + " | ".join(t.metrics) + " |",
            "|---|" + "---:|" * len(t.metrics),
        ]
        for m in t.methods:
            row = []
            for metric in t.metrics:
                c = t.cells.get((m, metric))
                if c is None:
                    row.append("\u2013")
                    continue
                mean = _num(c.mean, digits)
                s = f"**{mean}**" if c.best else mean
                if c.n >= 2:
                    s += f" \u00b1 {_num(c.std, digits)}"
                row.append(s + f" (n={c.n})" + (DAGGER if c.significant else ""))
            name = f"{m} (baseline)" if m == t.baseline else m
            name += DDAGGER if m in t.excluded_methods() else ""
            out.append(f"| {name} | " + " | ".join(row) + " |")
        out += ["", footnote(t), ""]
    return "\n".join(out)


def to_csv(tables: list[TaskTable]) -> str:
    """One row per task x method x metric: mean, std, n, p-value against the baseline."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "dataset",
            "protocol",
            "beta",
            "shift_deg",
            "split",
            "method",
            "metric",
            "mean",
            "std",
            "n",
            "baseline",
            "test",
            "n_pairs",
            "p_value",
            "significant",
            "best",
            "n_excluded",
        ]
    )
    for t in tables:
        for m in t.methods:
            for metric in t.metrics:
                c = t.cells.get((m, metric))
                if c is None:
                    continue
                tested = c.pvalue is not None
                w.writerow(
                    [
                        *("" if v is None else v for v in t.task),
                        t.split,
                        m,
                        metric,
                        repr(c.mean),
                        repr(c.std),
                        c.n,
                        t.baseline or "",
                        t.test if tested else "",
                        c.n_pairs if tested else "",
                        repr(c.pvalue) if tested else "",
                        int(c.significant),
                        int(c.best),
                        sum(e[0] == m for e in t.excluded),
                    ]
                )
    return buf.getvalue()


_TEX = {
    "\\": r"\textbackslash{}",
    "_": r"\_",
    "&": r"\&",
    "%": r"\%",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
}


def _tex(s: str) -> str:
    """Escapes LaTeX special characters in plain text."""
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(tables: list[TaskTable], *, digits: int = 4) -> str:
    """One booktabs `tabular` per task inside a `table` float; needs \\usepackage{booktabs}."""
    out = []
    for t in tables:
        out += [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{_tex(task_label(t.task))} ({t.split} split)}}",
            r"\begin{tabular}{l" + "c" * len(t.metrics) + "}",
            r"\toprule",
            "Method & " + " & ".join(_tex(m) for m in t.metrics) + r" \\",
            r"\midrule",
        ]
        for m in t.methods:
            row = []
            for metric in t.metrics:
                c = t.cells.get((m, metric))
                if c is None:
                    row.append("--")
                    continue
                mean = _num(c.mean, digits)
                s = rf"$\mathbf{{{mean}}}" if c.best else f"${mean}"
                if c.n >= 2:
                    s += rf" \pm {_num(c.std, digits)}"
                s += r"^{\dagger}$" if c.significant else "$"
                row.append(s + rf"\,{{\scriptsize ({c.n})}}")
            mark = r"$^{\ddagger}$" if m in t.excluded_methods() else ""
            out.append(_tex(m) + mark + " & " + " & ".join(row) + r" \\")
        note = (
            _tex(footnote(t))
            .replace("\u00b1", r"$\pm$")
            .replace(DAGGER, r"$^{\dagger}$")
            .replace(DDAGGER, r"$^{\ddagger}$")
            .replace("p < ", "$p<$ ")
        )
        out += [
            r"\bottomrule",
            r"\end{tabular}",
            r"\par\smallskip",
            r"{\footnotesize " + note + "}",
            r"\end{table}",
            "",
        ]
    return "\n".join(out)
