"""benchmarks.validators on a tiny quick sweep: the table's regrets and choices equal those
recomputed from the run folders, and the quality suite keeps its section."""

import json

import numpy as np
import pytest

from benchmarks import validators as BV
from benchmarks.sections import is_kept_section, section

TINY = [
    "data.synthetic.n_overlap=80",
    "data.synthetic.n_source_only=20",
    "data.synthetic.n_target_only=20",
    "data.synthetic.n_items_source=40",
    "data.synthetic.n_items_target=30",
    "data.synthetic.density_source=0.2",
    "data.synthetic.density_target=0.15",
    "mf.dim=4",
    "trainer.epochs=2",
    "mf.epochs=2",
]


@pytest.mark.slow
def test_quick_table_matches_the_run_folders(tmp_path, capsys):
    runs, report = tmp_path / "runs", tmp_path / "B.md"
    args = ["--quick", "--tasks", "synthetic_shift90", "--methods", "emcdr"]
    args += ["--runs", str(runs), "--report", str(report)]
    for s in TINY:
        args += ["--set", s]
    assert BV.main(args) == 0
    capsys.readouterr()
    text = section(report.read_text(), BV.SECTION)
    assert is_kept_section(BV.SECTION) and text
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| rule")
    }
    # recompute from the sweep's folders: every (point, epoch), test and valid rmse
    folder = runs / "synthetic_shift90" / "emcdr"
    sw = json.loads((folder / "sweep.json").read_text())
    valid, test, unsup = [], [], []
    for p in sw["points"]:
        for h in json.loads((folder / p["folder"] / "metrics.json").read_text())["history"]:
            valid.append(h["valid"]["rmse"])
            test.append(h["test"]["rmse"])
            unsup.append(h["valid"]["unsup/source_risk"])
    assert len(test) == 3 * 2  # three grid points x two evaluated epochs
    oracle = min(test)
    by_valid = test[int(np.argmin(valid))] - oracle
    by_risk = test[int(np.argmin(unsup))] - oracle
    assert float(rows["oracle"][0]) == 0.0
    assert float(rows["cold-valid"][0]) == pytest.approx(by_valid, abs=1e-4)
    assert float(rows["unsup/source_risk"][0]) == pytest.approx(by_risk, abs=1e-4)
    assert float(rows["unsup/source_risk"][1]) == pytest.approx(by_risk - by_valid, abs=1e-4)
    assert float(rows["random"][0]) == pytest.approx(np.mean(test) - oracle, abs=1e-4)
    assert set(rows) == {"oracle", *BV.RULES, "random"}
    assert "worth using" in text
    # a second invocation reuses the finished sweep and writes the same table
    assert BV.main(args) == 0
    assert "== " not in capsys.readouterr().out
