"""`transferjax diagnose RUN_FOLDER` on tiny quick run folders: the table, diagnostics.json, the
selected checkpoint, and errors that name the folder and what is missing."""

import json

import pytest

from transferjax import cli
from transferjax import diagnostics as D

TINY = [
    "data.synthetic.n_overlap=80",
    "data.synthetic.n_source_only=20",
    "data.synthetic.n_target_only=20",
    "data.synthetic.n_items_source=40",
    "data.synthetic.n_items_target=30",
    "data.synthetic.density_source=0.2",
    "data.synthetic.density_target=0.15",
    "mf.dim=4",
    "trainer.checkpoint_every=1",
    "trainer.checkpoint_min_interval_s=0",
]


def _run(out, *sets, seeds=None):
    args = ["run", "--quick", "--out", str(out)]
    for s in [*TINY, *sets]:
        args += ["--set", s]
    if seeds:
        args += ["--seeds", str(seeds)]
    assert cli.main(args) == 0


@pytest.mark.slow
def test_diagnose_a_quick_emcdr_run(tmp_path, capsys):
    out = tmp_path / "run"
    _run(out)
    capsys.readouterr()
    assert cli.main(["diagnose", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"shift diagnostics of {out}" in printed and "kernel_mmd" in printed
    assert "model seed 0" in printed and "interest" in printed
    got = json.loads((out / "diagnostics.json").read_text())
    assert got["method"] == "emcdr" and set(got["estimators"]) == set(D.MEASURES)
    (model,) = got["model"]
    sel = json.loads((out / "metrics.json").read_text())["selected"]
    # the newest checkpoint holds the selected epoch's params, whichever epoch that was
    state = model["state"]
    assert (state["stage"], state["epoch"], state["which"]) == (
        sel["stage"],
        sel["epoch"],
        "selected",
    )
    assert f"params of mapping epoch {sel['epoch']} (selected)" in printed
    for e in (model, got["interest"]):
        assert set(D.MEASURES) <= set(e) and e["n_source"] > 0 and e["n_pairs"] > 0


@pytest.mark.slow
def test_diagnose_vmapped_seeds_and_an_override(tmp_path, capsys):
    out = tmp_path / "run"
    _run(out, "trainer.vmap=on", seeds=2)
    assert cli.main(["diagnose", str(out), "--set", "diagnostics.max_users=30"]) == 0
    got = json.loads((out / "diagnostics.json").read_text())
    assert [m["seed"] for m in got["model"]] == [0, 1]
    assert got["model"][0]["n_source"] == 30 and got["settings"]["diagnostics.max_users"] == 30
    assert got["model"][0]["kernel_mmd"] != got["model"][1]["kernel_mmd"]  # two trials' params


@pytest.mark.slow
def test_diagnose_errors_name_the_folder_and_what_is_missing(tmp_path, capsys):
    assert cli.main(["diagnose", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: no such run folder" in capsys.readouterr().err
    assert cli.main(["diagnose", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "holds no config.json" in err
    out = tmp_path / "nockpt"
    _run(out, "trainer.checkpoint_every=0")
    capsys.readouterr()
    assert cli.main(["diagnose", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "no checkpoints" in err and "checkpoint_every" in err
    assert not (out / "diagnostics.json").exists()
    assert cli.main(["diagnose", str(out), "--set", "trainer.lr=1"]) == 2
    assert "only diagnostics.* keys" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["mf"])
def test_diagnose_a_method_without_user_vectors_measures_the_raw_interests(
    tmp_path, capsys, method
):
    out = tmp_path / "run"
    _run(out, f"method={method}")
    assert cli.main(["diagnose", str(out)]) == 0
    got = json.loads((out / "diagnostics.json").read_text())
    assert "no source-side user vectors" in got["model"]["skipped"]
    assert set(D.MEASURES) <= set(got["interest"])
