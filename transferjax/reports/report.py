"""`report_main`: run folders in, a report folder out (the `transferjax report` command).

    transferjax report RUNS... --out DIR --baseline mf --format md,csv,latex \
        --metrics rmse,mae --test ttest --plots

writes into DIR:
  report.md     always: every task's table with its footnote, links to the plots, the runs
  results.csv   format "csv": one row per task x method x metric (mean, std, n, p-value)
  tables.tex    format "latex": one booktabs tabular per task
  plots/*.png   with plots=True: learning curves, metric vs beta, metric vs shift
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings

from transferjax.eval.groups import GROUPINGS
from transferjax.reports.collect import collect_runs
from transferjax.reports.stats import TESTS
from transferjax.reports.tables import summarize, task_label, to_csv, to_latex, to_markdown

FORMATS = {"md": "md", "markdown": "md", "csv": "csv", "latex": "latex", "tex": "latex"}


def _names(value, what: str) -> list[str]:
    """A comma-separated string or a sequence of strings, as a list of names."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [s.strip() for s in items if s and s.strip()]
    if not items:
        raise ValueError(f"{what}: expected at least one name, got {value!r}")
    return items


def _rel(path: str, base: pathlib.Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive (Windows)
        return str(path)


def by_group(records: list, by: str, *, metrics, split: str) -> tuple[list, list[str]]:
    """Records whose metrics are the `by_<by>/<group>/<metric>` keys renamed "<group>
    <metric>", and the column names: every group (in the runs' order) times `metrics` (default:
    the runs' selection metrics that are reported by group).

    Raises:
      ValueError: an unknown grouping, the valid split, or runs without metrics by group.
    """
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; choose one of {', '.join(GROUPINGS)}")
    if split != "test":
        raise ValueError("metrics by group are reported for the test split only")
    prefix = f"by_{by}/"
    groups, found = {}, set()
    out = []
    for r in records:
        test = {}
        for k, v in r.test.items():
            if k.startswith(prefix):
                group, metric = k[len(prefix) :].rsplit("/", 1)
                groups.setdefault(group, None)
                found.add(metric)
                test[f"{group} {metric}"] = v
        out.append(dataclasses.replace(r, test=test))
    if not found:
        raise ValueError(f"no metrics by {by} in these runs (run with eval.groups=on, the default)")
    if metrics is None:
        metrics = sorted({r.select_metric for r in records if r.select_metric in found}) or sorted(
            found - {"n", "full_n"}
        )
    return out, [f"{g} {m}" for m in metrics for g in groups]


def report_main(
    paths,
    *,
    out_dir: str | os.PathLike,
    metrics=None,
    baseline: str | None = "mf",
    split: str = "test",
    fmt=("md", "csv"),
    test: str = "ttest",
    plots: bool = False,
    digits: int = 4,
    by: str | None = None,
) -> dict[str, pathlib.Path]:
    """Collects the runs under `paths` and writes the report into `out_dir`.

    Args:
      paths: run folders or folders of run folders (a single path is accepted too).
      out_dir: report folder (created).
      metrics: metric names or "rmse,mae"; None: all the runs report.
      baseline: method the others are tested against ("mf"); None or an absent method: no test.
      split: "test" (default) or "valid".
      fmt: formats among md, csv, latex (a sequence or "md,csv,latex"); report.md is
        always written, since it is where tables and plots come together.
      test: "ttest" or "wilcoxon".
      plots: also write PNG plots (needs matplotlib: pip install transferjax[plots]).
      digits: decimals in the markdown and LaTeX tables (CSV keeps full precision).
      by: a grouping of the test metrics (`transferjax.eval.groups`: "source_activity" or
        "item_popularity"): the tables' columns are then "<group> <metric>", one per group
        and metric (`metrics`, default the runs' selection metric), e.g. "0-7 full_ndcg@10".

    Returns:
      {file name relative to out_dir: path} of every file written.
    """
    formats = {FORMATS.get(f.lower(), f) for f in _names(fmt, "fmt")}
    bad = formats - set(FORMATS.values())
    if bad:
        raise ValueError(f"unknown format(s) {sorted(bad)}; choose from md, csv, latex")
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {sorted(TESTS)}")
    metrics = _names(metrics, "metrics") if metrics is not None else None
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = collect_runs(paths)
    skipped = [str(w.message) for w in caught]
    for msg in skipped:
        warnings.warn(msg, stacklevel=2)
    if not records:
        raise ValueError(f"no run folders (with metrics.json) under {[str(p) for p in paths]}")
    excluded = [r for r in records if r.excluded]
    if excluded:
        warnings.warn(
            f"{len(excluded)} seeds left out of the means (failed or non-finite metrics): "
            + ", ".join(f"{r.path} (seed {r.seed})" for r in excluded),
            stacklevel=2,
        )
    if by is not None:
        records, metrics = by_group(records, by, metrics=metrics, split=split)
    tables = summarize(records, metrics=metrics, split=split, baseline=baseline, test=test)

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, pathlib.Path] = {}

    def write(name: str, text: str) -> None:
        (out / name).write_text(text, encoding="utf-8")
        written[name] = out / name

    if "csv" in formats:
        write("results.csv", to_csv(tables))
    if "latex" in formats:
        write("tables.tex", to_latex(tables, digits=digits))
    pngs = []
    if plots:
        from transferjax.reports.plots import plot_all

        used = sorted({m for t in tables for m in t.metrics})
        kept = [r for r in records if not r.excluded]
        pngs = plot_all(kept, out_dir=out / "plots", metrics=used, split=split)
        for p in pngs:
            written[p.relative_to(out).as_posix()] = p

    md = [
        "# transferjax report",
        "",
        f"{len(records)} runs (seeds) from {len({r.path for r in records})} run folders; "
        f"split: {split}; baseline: {baseline}; test: {TESTS[test]}, alpha = 0.05."
        + (f" Metrics by {by} (columns: group, metric; group sizes in results.csv)." if by else ""),
        "",
        "## Results",
        "",
        to_markdown(tables, digits=digits),
    ]
    if pngs:
        md += ["## Plots", ""]
        md += [f"![{p.stem}]({p.relative_to(out).as_posix()})\n" for p in pngs]
    md += ["## Runs", "", "| method | task | seed | folder | status |", "|---|---|---:|---|---|"]
    for r in sorted(records, key=lambda r: (task_label(r.task), r.method, r.seed)):
        status = f"excluded: {r.problem}" if r.excluded else "ok"
        md.append(
            f"| {r.method} | {task_label(r.task)} | {r.seed} | `{_rel(r.path, out)}` | {status} |"
        )
    if excluded:
        md += ["", "## Excluded from the means", ""]
        md += [f"- `{_rel(r.path, out)}` seed {r.seed}: {r.problem}" for r in excluded]
    if skipped:
        md += ["", "## Skipped", ""] + [f"- {s}" for s in skipped]
    write("report.md", "\n".join(md) + "\n")
    return written
