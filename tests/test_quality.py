"""Quality suite (`benchmarks.quality`, outside the installed library): runs through the runner,
reuses finished runs, BENCHMARKS.md from run folders, speed sections kept."""

import json
import re

import numpy as np
import pytest

from benchmarks import quality as Q
from benchmarks import sections as S


def _tiny_suite(*, quick):
    return [
        Q.Task(
            name="synthetic_tiny",
            experiment="synthetic_emcdr.py",
            overrides=(
                "data.synthetic.n_overlap=200",
                "data.synthetic.n_source_only=50",
                "data.synthetic.n_target_only=50",
                "data.synthetic.n_items_source=80",
                "data.synthetic.n_items_target=60",
                "trainer.checkpoint_every=0",
            ),
            methods=("item_mean", "mf", "emcdr"),
        )
    ]


@pytest.mark.slow
def test_quality_suite_writes_report_from_run_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(Q, "suite", _tiny_suite)
    out = tmp_path / "BENCHMARKS.md"
    Q.run_quality(quick=True, runs_dir=tmp_path / "runs", out=out, seeds=2, echo=lambda *_: None)
    text = out.read_text()
    assert "## synthetic_tiny" in text and "python -m benchmarks.quality --quick" in text
    for m in ("item_mean", "mf", "emcdr"):  # one table row per method
        assert re.search(rf"^\| {m}( \(baseline\))? \|", text, re.M), m
    # the emcdr cell equals the mean of the per-seed test rmse in its metrics.json
    metrics = json.loads(
        (tmp_path / "runs" / "synthetic_tiny" / "emcdr" / "metrics.json").read_text()
    )
    vals = [s["selected"]["test"]["rmse"] for s in metrics["seeds"]]
    assert f"{np.mean(vals):.4f}" in text

    # a second call reuses every finished run folder instead of training again
    def boom(*a, **k):
        raise AssertionError("should have reused the run folder")

    import transferjax.train.run as R

    monkeypatch.setattr(R, "run", boom)
    Q.run_quality(quick=True, runs_dir=tmp_path / "runs", out=out, seeds=2, echo=lambda *_: None)


def test_report_only_runs_nothing_and_lists_missing_cells(tmp_path, monkeypatch):
    import transferjax.train.run as R

    monkeypatch.setattr(Q, "suite", _tiny_suite)
    monkeypatch.setattr(R, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    out = tmp_path / "B.md"
    Q.run_quality(
        quick=True,
        runs_dir=tmp_path / "runs",
        out=out,
        seeds=2,
        echo=lambda *_: None,
        report_only=True,
    )
    text = out.read_text()
    cells = [f"synthetic_tiny/{m}" for m in _tiny_suite(quick=True)[0].methods]
    assert f"Not run yet (no finished run folder): {', '.join(cells)}." in text
    assert "--report-only" in text


def test_report_keeps_every_speed_section_and_drops_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(Q, "suite", _tiny_suite)
    out = tmp_path / "B.md"
    S.put_section(out, "speed", "## Speed here\n\n| a | 1 |")
    S.put_section(out, "speed-xeon", "## Speed there")
    S.put_section(out, "notes", "hand notes")
    S.put_section(out, "speed", "## Speed here, rerun")  # replaced in place, not appended
    text = out.read_text()
    assert text.count("<!-- speed:begin -->") == 1 and "rerun" in text
    assert "| a | 1 |" not in text
    assert S.section_names(text) == ["speed", "speed-xeon", "notes"]
    # an unclosed marker is not a section
    assert S.section_names(text + "\n<!-- speed-x:begin -->\n") == ["speed", "speed-xeon", "notes"]

    import transferjax.train.run as R

    monkeypatch.setattr(R, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    Q.run_quality(
        quick=True,
        runs_dir=tmp_path / "runs",
        out=out,
        seeds=2,
        echo=lambda *_: None,
        report_only=True,
    )
    text = out.read_text()
    assert text.startswith("# transferjax quality benchmark")
    assert S.section_names(text) == ["speed", "speed-xeon"]
    assert "## Speed here, rerun" in text and "## Speed there" in text
    assert "hand notes" not in text


def test_module_entry_point_passes_its_flags(tmp_path, monkeypatch, capsys):
    """`python -m benchmarks.quality --quick --runs R --out F --seeds 2 --only T --report-only`
    reaches `run_quality` with those values."""
    import transferjax.train.run as R

    monkeypatch.setattr(Q, "suite", _tiny_suite)
    monkeypatch.setattr(R, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    out = tmp_path / "B.md"
    assert (
        Q.main(
            [
                "--quick",
                "--runs",
                str(tmp_path / "runs"),
                "--out",
                str(out),
                "--seeds",
                "2",
                "--only",
                "synthetic_tiny",
                "--report-only",
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    assert "`python -m benchmarks.quality --quick --only synthetic_tiny --report-only`" in text
    assert "Seeds per cell: 2." in text and "Not run yet" in text
