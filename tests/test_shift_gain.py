"""benchmarks.shift_gain: Spearman's rho and its p-value against closed forms, and the
correlation table's bookkeeping (pooled and per method), the public tasks' gain and
skipped cells, and the plot."""

import json
import math

import numpy as np
import pytest

from benchmarks import gain_cells as G
from benchmarks import quality as Q
from benchmarks import shift_gain as S


def test_spearman_against_ranks_and_t():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    rho, p = G.spearman(x, [10, 20, 30, 40, 50])
    assert rho == pytest.approx(1.0) and p < 1e-12
    rho, p = G.spearman(x, [5, 6, 7, 9, 8])  # ranks 1 2 3 5 4: d^2 sum 2 -> 1 - 6*2/120
    assert rho == pytest.approx(0.9)
    t = 0.9 * math.sqrt(3 / (1 - 0.81))
    assert p == pytest.approx(G.t_pvalue(t, 3))
    rho, _ = G.spearman([1, 2, 2, 3], [4, 3, 3, 1])  # ties take average ranks
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([4, 2.5, 2.5, 1])
    assert rho == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert all(math.isnan(v) for v in G.spearman([1, 2], [1, 2]))
    assert all(math.isnan(v) for v in G.spearman([1, 1, 1], [1, 2, 3]))


def test_correlations_pool_and_split_by_method():
    rows = [
        {"shift": s, "method": m, "gain": g, "interest": {"cosine": c}, "model": {"cosine": v}}
        for s, c in ((0, 0.9), (45, 0.5), (90, 0.1))
        for m, g, v in (("a", 1 - s / 90, 1 - s / 90), ("b", 0.5 - s / 90, s / 90))
    ]
    got = {(k, m): (r, n) for k, m, r, _, n in G.correlations(rows)}
    assert got[("interest", "cosine")][1] == 6
    assert got[("model (a)", "cosine")] == (pytest.approx(1.0), 3)
    assert got[("model (b)", "cosine")] == (pytest.approx(-1.0), 3)


def _metrics(folder, **test):
    """A tiny finished run folder: metrics.json with two seeds' selected test metrics (the
    second seed's values shifted by 0.02, so the mean is the value + 0.01)."""
    folder.mkdir(parents=True)
    seeds = [
        {"seed": i, "selected": {"test": {k: v + 0.02 * i for k, v in test.items()}}}
        for i in range(2)
    ]
    (folder / "metrics.json").write_text(json.dumps({"seeds": seeds}))


def _fake_diagnose(calls):
    """A stand-in for `transferjax diagnose`: per-method model cosines, one interest value."""
    cos = {"cmf": 0.9, "emcdr": 0.5, "phi": 0.1, "ptupcdr": 0.3}

    def measure(folder):
        calls.append(folder.name)
        c = cos[folder.name]
        return {"interest": {"cosine": 0.2}, "model": [{"cosine": c}, {"cosine": c + 0.02}]}

    return measure


def test_gain_metric_per_task_kind():
    rating = Q.Task(name="r", experiment="x.py")
    ranking = Q.Task(name="k", experiment="x.py", metrics=Q.RANKING)
    full = Q.Task(name="f", experiment="x.py", metrics=("full_recall@10", "full_ndcg@10"))
    assert G.gain_metric(rating) == ("rmse", -1.0)
    assert G.gain_metric(ranking) == ("ndcg@10", 1.0)
    assert G.gain_metric(full) == ("full_ndcg@10", 1.0)
    with pytest.raises(ValueError, match="neither"):
        G.gain_metric(Q.Task(name="m", experiment="x.py", metrics=("mae",)))
    # > 0 means the method did better than target-only MF, in both directions of metric
    assert G.transfer_gain(0.90, 0.85, sign=-1.0) == pytest.approx(0.05)
    assert G.transfer_gain(0.30, 0.25, sign=1.0) == pytest.approx(-0.05)


@pytest.mark.parametrize(
    ("metrics", "mf", "method", "gain"),
    [
        (("mae", "rmse"), {"rmse": 0.90}, {"rmse": 0.80}, 0.10),  # lower RMSE: helped
        (("mae", "rmse"), {"rmse": 0.80}, {"rmse": 0.85}, -0.05),  # negative transfer
        (Q.RANKING, {"ndcg@10": 0.30, "rmse": 9.0}, {"ndcg@10": 0.36, "rmse": 0.0}, 0.06),
    ],
)
def test_public_gain_from_metrics_json(tmp_path, metrics, mf, method, gain):
    task = Q.Task(name="t", experiment="x.py", methods=("mf", "cmf"), metrics=metrics)
    _metrics(tmp_path / "t" / "mf", **mf)
    _metrics(tmp_path / "t" / "cmf", **method)
    rows, skipped = G.collect_public(task, runs=tmp_path, measure=_fake_diagnose([]))
    assert skipped == []
    [row] = rows
    assert row["gain"] == pytest.approx(gain)  # (means over the seeds: both shift by 0.01)
    assert row["metric"] == G.gain_metric(task)[0] and row["task"] == "t"
    assert row["model"] == {"cosine": pytest.approx(0.91)} and row["interest"] == {"cosine": 0.2}


def test_public_reads_only_finished_folders(tmp_path):
    methods = ("popularity", "mf", "cmf", "emcdr", "phi", "coral", "ptupcdr", "lightgcn")
    task = Q.Task(name="t", experiment="x.py", methods=methods)
    for m in ("mf", "cmf", "emcdr", "phi", "popularity", "lightgcn"):
        _metrics(tmp_path / "t" / m, rmse=0.9)
    (tmp_path / "t" / "coral" / "ckpt").mkdir(parents=True)  # in progress: no metrics.json
    calls, said = [], []
    rows, skipped = G.collect_public(
        task, runs=tmp_path, measure=_fake_diagnose(calls), echo=said.append
    )
    assert [r["method"] for r in rows] == ["cmf", "emcdr", "phi"]  # not the target-only cells
    assert calls == ["cmf", "emcdr", "phi"]  # the unfinished folders are never diagnosed
    assert skipped == ["coral (in progress)", "ptupcdr (no run folder)"]
    assert "coral (in progress)" in said[0]
    assert not (tmp_path / "t" / "coral" / "metrics.json").exists()  # nothing is trained
    # without a finished target-only MF there is no gain to take
    (tmp_path / "t" / "mf" / "metrics.json").unlink()
    rows, skipped = G.collect_public(task, runs=tmp_path, measure=_fake_diagnose([]))
    assert rows == [] and skipped[0] == "cmf (target-only mf: in progress)"


def test_public_block_correlates_model_measures_only(tmp_path):
    task = Q.Task(name="t", experiment="x.py", methods=("mf", "cmf", "emcdr", "phi", "coral"))
    _metrics(tmp_path / "t" / "mf", rmse=0.9)
    for m, r in (("cmf", 0.8), ("emcdr", 0.85), ("phi", 0.95)):  # gain falls with the cosine
        _metrics(tmp_path / "t" / m, rmse=r)
    rows, skipped = G.collect_public(task, runs=tmp_path, measure=_fake_diagnose([]))
    corr = G.correlations(rows, kinds=("model",), per_method=False)
    assert [(k, m, n) for k, m, _, _, n in corr] == [("model", "cosine", 3)]
    assert corr[0][2] == pytest.approx(1.0)
    text = S.public_markdown(task, rows, corr, skipped=skipped)
    assert "| model | cosine | +1.000 |" in text
    assert "| cmf | +0.1000 |" in text and "| phi | -0.0500 |" in text
    assert "Skipped (not measured): coral (no run folder)." in text
    assert "Interest measures of the task: cosine 0.2." in text
    assert "Gain: target-only MF's test RMSE minus the method's" in text
    ranking = Q.Task(name="k", experiment="x.py", metrics=Q.RANKING)
    empty = S.public_markdown(ranking, [], [], skipped=["cmf (in progress)"])
    assert "Gain: the method's test ndcg@10 minus target-only MF's" in empty
    assert "Skipped (not measured): cmf (in progress)." in empty
    assert S._plot_line([], report=tmp_path / "B.md") == "(no cell with model measures to plot)"


def test_plot_gain_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [
        {"shift": s, "method": "emcdr", "gain": 0.1 - s / 900, "model": {"cosine": 1 - s / 90}}
        for s in (0, 45, 90)
    ] + [
        {"task": "t", "method": m, "gain": g, "model": {"cosine": c, "coral": c / 2}}
        for m, g, c in (("cmf", 0.01, 0.9), ("phi", -0.02, 0.4))
    ]
    path = S.plot_gain(rows, path=tmp_path / "plots" / "gain.png")
    assert path == tmp_path / "plots" / "gain.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = S._plot_line(rows, report=tmp_path / "B.md")
    assert "](benchmarks/plots/shift_gain.png)" in line
    assert (tmp_path / "benchmarks" / "plots" / "shift_gain.png").is_file()


def test_main_public_task_only_reads_and_writes_the_section(tmp_path, monkeypatch):
    runs = tmp_path / "runs" / "douban_book_music"
    _metrics(runs / "mf", rmse=0.9)
    for m, r in (("cmf", 0.8), ("emcdr", 0.85), ("phi", 0.95)):
        _metrics(runs / m, rmse=r)
    (runs / "coral" / "ckpt").mkdir(parents=True)
    monkeypatch.setattr(S, "_diagnose", _fake_diagnose([]))
    monkeypatch.setattr(S.Q, "run_cell", lambda *a, **k: pytest.fail("trains nothing"))
    report = tmp_path / "B.md"
    argv = ["--runs", str(tmp_path / "runs"), "--tasks", "douban_book_music"]
    assert S.main([*argv, "--report", str(report)]) == 0
    text = report.read_text()
    assert "<!-- shift-gain:begin -->" in text and "--tasks douban_book_music" in text
    assert "### Public task `douban_book_music`" in text and "coral (in progress)" in text
    assert "| model | cosine | +1.000 | 0 | 3 |" in text
    assert "**Spearman rank correlation" not in text  # no synthetic block
    with pytest.raises(SystemExit, match="unknown task"):
        S.main([*argv[:2], "--tasks", "nope", "--report", str(report)])
