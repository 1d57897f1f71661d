"""Reports: collection, numbers against numpy, significance tests, formats, plots."""

import csv
import io
import json
import math
import re
import sys
import warnings

import numpy as np
import pytest

from transferjax.data.types import DataError
from transferjax.reports import (
    collect_runs,
    learning_curve,
    paired_ttest,
    report_main,
    summarize,
    t_pvalue,
    to_csv,
    to_latex,
    to_markdown,
    wilcoxon_exact,
)


def _write_run(
    folder,
    *,
    method,
    seed,
    test,
    valid=None,
    dataset="synthetic",
    protocol="cold_start",
    beta=0.2,
    shift=10.0,
    history=None,
):
    """A run folder shaped like transferjax.train.run writes it, with known numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "name": "t",
        "method": method,
        "seed": seed,
        "data": {"name": dataset, "synthetic": {"shift_deg": shift, "seed": seed}},
        "protocol": {"name": protocol, "beta": beta},
    }
    valid = valid if valid is not None else test
    history = (
        history
        if history is not None
        else [
            {
                "stage": "s",
                "epoch": e,
                "step": 10 * e,
                "train": {},
                "valid": {k: v + 0.1 / e for k, v in valid.items()},
                "test": test,
            }
            for e in (1, 2, 3)
        ]
    )
    metrics = {
        "method": method,
        "dataset": dataset,
        "protocol": protocol,
        "protocol_info": {"beta": beta, "seed": 0},
        "select_metric": "rmse",
        "selected": {
            "index": 2,
            "stage": "s",
            "epoch": 3,
            "step": 30,
            "train": {},
            "valid": valid,
            "test": test,
        },
        "history": history,
        "timing": {"data_s": 0.0, "train_s": 0.0, "wall_s": 0.0},
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


# seed -> rmse / mae per method; emcdr is better than mf on every seed (significant)
RMSE = {
    "mf": [1.00, 1.10, 0.95, 1.05],
    "emcdr": [0.90, 1.02, 0.88, 0.93],
    "item_mean": [1.20, 1.00, 1.10, 1.30],
}
MAE = {m: [0.8 * v for v in vals] for m, vals in RMSE.items()}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for m in RMSE:
        for s in range(4):
            _write_run(
                root / "nested" / f"{m}-s{s}" if s % 2 else root / f"{m}-s{s}",
                method=m,
                seed=s,
                test={"rmse": RMSE[m][s], "mae": MAE[m][s]},
                valid={"rmse": RMSE[m][s] + 0.5, "mae": MAE[m][s] + 0.5},
            )
    return root


def test_collect_recurses_reads_fields_and_warns(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    (runs / "crashed").mkdir()
    (runs / "crashed" / "config.json").write_text("{}")
    with pytest.warns(UserWarning) as caught:
        recs = collect_runs([runs, runs / "nested", tmp_path / "empty"])
    msgs = " ".join(str(w.message) for w in caught)
    assert "crashed" in msgs and "empty" in msgs
    assert len(recs) == 12  # the nested folder, given twice, is read once
    r = next(r for r in recs if r.method == "emcdr" and r.seed == 3)
    assert (r.dataset, r.protocol, r.beta, r.shift_deg) == ("synthetic", "cold_start", 0.2, 10.0)
    assert r.test == {"rmse": 0.93, "mae": 0.8 * 0.93}
    assert r.valid["rmse"] == pytest.approx(1.43)
    assert r.config["seed"] == 3 and r.path.endswith("emcdr-s3")
    steps, values = learning_curve(r, "rmse")
    assert steps == [10, 20, 30] and values == pytest.approx([1.53, 1.48, 1.43 + 0.1 / 3])
    with pytest.raises(FileNotFoundError, match="nope"):
        collect_runs(tmp_path / "nope")


def test_table_numbers_equal_numpy(runs):
    (t,) = summarize(collect_runs(runs), metrics=["rmse", "mae"])
    assert t.methods == ("mf", "emcdr", "item_mean") and t.metrics == ("rmse", "mae")
    rows = list(csv.DictReader(io.StringIO(to_csv([t]))))
    assert len(rows) == 3 * 2
    for metric, table in (("rmse", RMSE), ("mae", MAE)):
        for m, vals in table.items():
            c = t.cells[(m, metric)]
            assert c.mean == pytest.approx(np.mean(vals), abs=1e-12)
            assert c.std == pytest.approx(np.std(vals, ddof=1), abs=1e-12)
            assert c.n == 4
            row = next(r for r in rows if r["method"] == m and r["metric"] == metric)
            assert float(row["mean"]) == pytest.approx(np.mean(vals), abs=1e-12)
            assert float(row["std"]) == pytest.approx(np.std(vals, ddof=1), abs=1e-12)
            assert int(row["n"]) == 4
            if m == "mf":
                assert c.pvalue is None and row["p_value"] == ""
            else:  # hand-computed paired t statistic -> same p as the table
                d = np.asarray(vals) - np.asarray(table["mf"])
                tstat = d.mean() / (d.std(ddof=1) / 2.0)
                assert paired_ttest(vals, table["mf"]).statistic == pytest.approx(tstat)
                assert c.pvalue == pytest.approx(t_pvalue(tstat, 3), abs=1e-12)
                assert float(row["p_value"]) == pytest.approx(c.pvalue, abs=1e-12)
    assert t.cells[("emcdr", "rmse")].significant  # d = -.10 -.08 -.07 -.12: p ~ 0.002
    assert not t.cells[("item_mean", "rmse")].significant
    (v,) = summarize(collect_runs(runs), split="valid", metrics=["rmse"])
    assert v.cells[("mf", "rmse")].mean == pytest.approx(np.mean(RMSE["mf"]) + 0.5)


@pytest.mark.parametrize(
    "t,df,p",
    [
        (2.776445105, 4, 0.05),  # t_{0.975, 4}
        (0.0, 4, 1.0),
        (1.0, 1, 0.5),  # Cauchy: 1 - 2 atan(|t|) / pi
        (3.0, 1, 1 - 2 * math.atan(3.0) / math.pi),
        (1.5, 2, 1 - 1.5 / math.sqrt(2 + 1.5**2)),  # df = 2: 1 - |t| / sqrt(2 + t^2)
        (-12.7062047, 1, 0.05),
        (2.228138852, 10, 0.05),
        (40.0, 30, 0.0),
    ],
)
def test_t_pvalue_known_values(t, df, p):
    assert t_pvalue(t, df) == pytest.approx(p, abs=1e-7)


def test_paired_ttest_closed_form_and_edge_cases():
    x, y = np.array([3.0, 5.0, 4.0]), np.array([2.0, 2.5, 3.5])  # d = 1, 2.5, 0.5
    d = x - y
    tstat = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    r = paired_ttest(x, y)
    assert r.statistic == pytest.approx(tstat) and r.n == 3
    assert r.pvalue == pytest.approx(1 - abs(tstat) / math.sqrt(2 + tstat**2), abs=1e-12)
    assert paired_ttest(x, x).pvalue == 1.0
    assert paired_ttest(y + 1.0, y).pvalue == 0.0
    assert math.isnan(paired_ttest([1.0], [0.0]).pvalue)


def test_wilcoxon_exact_small_cases():
    assert wilcoxon_exact([1, 2, 3, 4, 5], [0] * 5).pvalue == pytest.approx(2 / 32)
    # W- = 2 for n = 6: P(W- <= 2) = |{{}, {1}, {2}}| / 64, two-sided doubled
    r = wilcoxon_exact([1, -2, 3, 4, 5, 6], [0] * 6)
    assert r.statistic == 19 and r.pvalue == pytest.approx(6 / 64)
    assert wilcoxon_exact([1, 1, 2], [0, 0, 0]).pvalue == pytest.approx(2 / 8)  # ties
    assert wilcoxon_exact([1, 2, 3], [1, 2, 3]).pvalue == 1.0  # zero differences dropped
    assert wilcoxon_exact([2, -1], [0, 0]).pvalue == 1.0


def test_summarize_wilcoxon_and_pairing_by_seed(tmp_path):
    base = {0: 1.0, 1: 1.2, 2: 0.9, 3: 1.1}
    other = {1: 1.0, 2: 0.85, 3: 0.7, 4: 5.0}  # seed 4 has no baseline partner, 0 is missing
    for s, v in base.items():
        _write_run(tmp_path / f"mf{s}", method="mf", seed=s, test={"rmse": v})
    for s, v in other.items():
        _write_run(tmp_path / f"x{s}", method="x", seed=s, test={"rmse": v})
    recs = collect_runs(tmp_path)
    (t,) = summarize(recs)
    c = t.cells[("x", "rmse")]
    assert c.n == 4 and c.n_pairs == 3
    assert c.pvalue == pytest.approx(paired_ttest([1.0, 0.85, 0.7], [1.2, 0.9, 1.1]).pvalue)
    (w,) = summarize(recs, test="wilcoxon")
    assert w.cells[("x", "rmse")].pvalue == pytest.approx(2 / 8)  # 3 negative of 3
    assert "Wilcoxon" in to_markdown([w])
    (nb,) = summarize(recs, baseline="popularity")  # absent baseline: no tests
    assert nb.baseline is None and nb.cells[("x", "rmse")].pvalue is None
    assert "No significance test" in to_markdown([nb])


def test_best_mean_direction_and_dagger(tmp_path):
    vals = {"a": (0.5, 0.30), "b": (0.7, 0.40), "mf": (0.6, 0.35)}
    for m, (mae, hit) in vals.items():
        for s in range(3):
            _write_run(
                tmp_path / f"{m}{s}",
                method=m,
                seed=s,
                test={"mae": mae + 0.01 * s * (m == "a"), "hr@10": hit + 0.001 * s},
            )
    (t,) = summarize(collect_runs(tmp_path))
    assert t.metrics == ("mae", "hr@10")
    best = {k: [m for m in t.methods if t.cells[(m, k)].best] for k in t.metrics}
    assert best == {"mae": ["a"], "hr@10": ["b"]}  # lower mae, higher hit rate
    md = to_markdown([t])
    row_a = next(line for line in md.splitlines() if line.startswith("| a "))
    row_b = next(line for line in md.splitlines() if line.startswith("| b "))
    assert row_a.split("|")[2].strip().startswith("**0.5100**")  # mean of .50 .51 .52
    assert row_b.split("|")[3].strip().startswith("**0.4010**")
    # b - mf is a constant 0.1 on mae: p = 0 -> dagger; a - mf varies: t-test decides
    assert t.cells[("b", "mae")].significant and "\u2020" in row_b
    assert "p < 0.05" in md and "paired t-test against mf" in md


def test_latex_is_a_booktabs_tabular(runs):
    tables = summarize(collect_runs(runs), metrics="rmse mae".split())
    tex = to_latex(tables)
    assert tex.count(r"\begin{tabular}") == 1 == tex.count(r"\end{tabular}")
    m = re.search(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", tex, re.S)
    assert m.group(1) == "lcc"
    body = m.group(2)
    assert body.index(r"\toprule") < body.index(r"\midrule") < body.index(r"\bottomrule")
    rows = body.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(rows) == 3 and all(r.endswith(r"\\") for r in rows)
    assert all(r.count("&") == 2 for r in rows)
    assert rows[2].startswith(r"item\_mean &")
    assert r"^{\dagger}" in next(r for r in rows if r.startswith("emcdr"))
    assert tex.count("$") % 2 == 0


def test_malformed_json_names_the_file(tmp_path):
    run = _write_run(tmp_path / "bad", method="mf", seed=0, test={"rmse": 1.0})
    (run / "metrics.json").write_text('{\n  "method": "mf",\n  oops\n}')
    with pytest.raises(DataError, match=r"bad/metrics\.json:3: malformed JSON"):
        collect_runs(tmp_path)
    (run / "metrics.json").write_text(json.dumps({"method": "mf", "dataset": "d"}))
    with pytest.raises(DataError, match=r"bad/metrics\.json: missing field 'selected'"):
        collect_runs(tmp_path)


def test_seeds_list_is_expanded(tmp_path):
    run = _write_run(tmp_path / "multi", method="emcdr", seed=0, test={"rmse": 0.0})
    metrics = json.loads((run / "metrics.json").read_text())
    single = {k: metrics.pop(k) for k in ("selected", "history")}
    metrics["seeds"] = [
        {"seed": s, **single, "selected": {**single["selected"], "test": {"rmse": v}}}
        for s, v in ((0, 1.0), (1, 2.0), (5, 4.0))
    ]
    (run / "metrics.json").write_text(json.dumps(metrics))
    recs = collect_runs(tmp_path)
    assert [(r.seed, r.test["rmse"], r.method, r.config["seed"]) for r in recs] == [
        (0, 1.0, "emcdr", 0),
        (1, 2.0, "emcdr", 1),
        (5, 4.0, "emcdr", 5),
    ]
    (t,) = summarize(recs)
    c = t.cells[("emcdr", "rmse")]
    assert c.n == 3 and c.mean == pytest.approx(7 / 3)
    assert c.std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))


def test_duplicate_seed_and_bad_arguments(runs, tmp_path):
    _write_run(tmp_path / "again", method="mf", seed=0, test={"rmse": 1.0})
    with pytest.raises(ValueError, match="two runs of method=mf seed=0"):
        summarize(collect_runs([runs, tmp_path / "again"]))
    with pytest.raises(ValueError, match="unknown test"):
        summarize(collect_runs(runs), test="ztest")
    with pytest.raises(ValueError, match="unknown format"):
        report_main(runs, out_dir=tmp_path / "o", fmt="pdf")
    with pytest.raises(ValueError, match="available"):
        summarize(collect_runs(runs), metrics=["ndcg@10"])


def test_report_main_writes_tables_and_plots(runs, tmp_path):
    pytest.importorskip("matplotlib")
    for sh in (45.0, 80.0):  # a shift sweep for the metric-vs-shift plot
        for m in ("mf", "emcdr"):
            for s in range(2):
                _write_run(
                    runs / f"shift{sh:g}" / f"{m}{s}",
                    method=m,
                    seed=s,
                    shift=sh,
                    test={"rmse": 1.0 + sh / 100 + 0.01 * s, "mae": 0.8},
                )
    out = tmp_path / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        files = report_main([runs], out_dir=out, fmt="md,csv,latex", metrics="rmse,mae", plots=True)
    assert {"report.md", "results.csv", "tables.tex"} <= set(files)
    pngs = [k for k in files if k.endswith(".png")]
    assert any(k.startswith("plots/curve_rmse") for k in pngs)
    assert any("rmse_vs_shift_deg" in k for k in pngs)
    md = (out / "report.md").read_text()
    for k in pngs:
        data = files[k].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
        assert f"]({k})" in md
    assert "### synthetic, cold_start, beta=0.2, shift=10deg (test)" in md
    assert md.count("| mf (baseline) |") == 3


def test_plots_without_matplotlib_say_how_to_install(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install transferjax\[plots\]"):
        report_main(runs, out_dir=tmp_path / "o", plots=True)


def test_report_by_group_tables_each_groups_metric(tmp_path):
    """`--by source_activity`: one column per group and metric, the mean over seeds of that
    group's key; the default tables leave the group keys out."""
    root = tmp_path / "runs"
    ndcg = {"mf": [0.10, 0.20], "emcdr": [0.30, 0.50]}
    for m, vals in ndcg.items():
        for s, v in enumerate(vals):
            test = {
                "rmse": 1.0,
                "by_source_activity/1-4/rmse": 1.0 + v,
                "by_source_activity/1-4/n": 10.0,
                "by_source_activity/5-9/rmse": 1.0 - v,
                "by_source_activity/5-9/n": 12.0,
                "by_item_popularity/head/rmse": 0.5,
            }
            _write_run(root / f"{m}{s}", method=m, seed=s, test=test)
    records = collect_runs([root])
    plain = summarize(records)
    assert plain[0].metrics == ("rmse",)
    out = tmp_path / "rep"
    report_main([root], out_dir=out, fmt="csv", by="source_activity")
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    got = {(r["method"], r["metric"]): float(r["mean"]) for r in rows}
    for m, vals in ndcg.items():
        assert got[(m, "1-4 rmse")] == pytest.approx(1.0 + np.mean(vals))
        assert got[(m, "5-9 rmse")] == pytest.approx(1.0 - np.mean(vals))
    assert "by source_activity" in (out / "report.md").read_text()
    with pytest.raises(ValueError, match="unknown grouping"):
        report_main([root], out_dir=out, by="country")
    with pytest.raises(ValueError, match="test split only"):
        report_main([root], out_dir=out, by="item_popularity", split="valid")
