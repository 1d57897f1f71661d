"""Reports: tables and plots from run folders (reads only config.json / metrics.json)."""

from transferjax.reports.collect import RunRecord, collect_runs, learning_curve, read_run
from transferjax.reports.plots import plot_all, plot_learning_curves, plot_metric_vs
from transferjax.reports.report import report_main
from transferjax.reports.stats import (
    TestResult,
    betainc,
    mean_std,
    paired_test,
    paired_ttest,
    t_pvalue,
    wilcoxon_exact,
)
from transferjax.reports.tables import (
    Cell,
    TaskTable,
    lower_is_better,
    summarize,
    to_csv,
    to_latex,
    to_markdown,
)

__all__ = [
    "Cell",
    "RunRecord",
    "TaskTable",
    "TestResult",
    "betainc",
    "collect_runs",
    "learning_curve",
    "lower_is_better",
    "mean_std",
    "paired_test",
    "paired_ttest",
    "plot_all",
    "plot_learning_curves",
    "plot_metric_vs",
    "read_run",
    "report_main",
    "summarize",
    "t_pvalue",
    "to_csv",
    "to_latex",
    "to_markdown",
    "wilcoxon_exact",
]
