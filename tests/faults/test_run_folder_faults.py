"""Run-folder faults: damaged checkpoints, resumes of other data or another state structure,
two writers, failed starts. Each failure raises the exact error class with a message naming
the folder, file or setting, and leaves a finished run folder byte for byte as it was."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from tests.faults._folders import (
    assert_unchanged,
    checkpoint_steps,
    finished_run,
    private_copy,
    snapshot,
)
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import DataError, RunFolderError
from transferjax.methods import registry
from transferjax.train import folder as F
from transferjax.train.book import checkpoint_tree
from transferjax.train.checkpoint import Checkpointer, structure_fingerprint
from transferjax.train.run import build_trainer, run
from transferjax.train.sweep import sweep
from transferjax.train.trials import fresh_state


def _run(cfg, out, **kw):
    return run(cfg, out_dir=out, echo=lambda *_: None, progress=False, **kw)


@pytest.fixture
def copy(tmp_path_factory, tmp_path):
    """A private copy of a finished run folder (checkpoints 3 and 4 kept) and of its data."""
    return private_copy(finished_run(tmp_path_factory.getbasetemp()), tmp_path)


def _record(out):
    rec = json.loads((out / F.RECORD).read_text())
    return {"data": rec["data"], "state": rec["state"]}


# ------------------------------------------------------------------- damaged checkpoints


def _largest_array_file(step_dir):
    """The largest data file of the checkpoint's arrays (OCDBT: `state/d/<hash>`; the
    per-process files under `state/ocdbt.process_0/` are merged into it when it is written)."""
    return max((step_dir / "state" / "d").iterdir(), key=lambda p: p.stat().st_size)


def truncate_array_file(step_dir):
    f = _largest_array_file(step_dir)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return f


def empty_metadata(step_dir):
    f = step_dir / "meta" / "metadata"
    f.write_text("")
    return f


def broken_metadata_json(step_dir):
    f = step_dir / "meta" / "metadata"
    f.write_text(f.read_text()[:-7])
    return f


def missing_files(step_dir):
    f = step_dir / "state" / "_METADATA"
    f.unlink()
    return f


DAMAGE = [truncate_array_file, empty_metadata, broken_metadata_json, missing_files]


# TensorStore's callbacks raise ignored "Event loop is closed" errors after orbax gives up on a
# truncated array file; the command line drops them (cli._quiet_closed_loops)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_to_the_older_one(copy, damage):
    out = copy["out"]
    damage(out / "ckpt" / "4")
    damaged = snapshot(out / "ckpt" / "4")
    with pytest.warns(F.RunFolderWarning, match=r"ckpt/4: checkpoint 4 is damaged .*checkpoint 3"):
        metrics = _run(copy["cfg"], out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from"] == 3
    assert metrics["history"] == copy["history"]  # epoch 4 replayed exactly
    assert_unchanged(out / "ckpt.damaged" / "4", damaged)  # moved aside, not deleted
    assert checkpoint_steps(out / "ckpt") == [3, 4]
    assert not (out / F.LOCK).exists()


# TensorStore's callbacks raise ignored "Event loop is closed" errors after orbax gives up on a
# truncated array file; the command line drops them (cli._quiet_closed_loops)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    "damages",
    [(truncate_array_file, truncate_array_file), (empty_metadata, missing_files)],
    ids=["truncated-both", "meta-and-missing"],
)
def test_no_intact_checkpoint_fails_naming_the_folder(copy, damages):
    out = copy["out"]
    for step, damage in zip((4, 3), damages):
        damage(out / "ckpt" / str(step))
    before = snapshot(out)
    with pytest.raises(RunFolderError) as e:
        _run(copy["cfg"], out)
    msg = str(e.value)
    assert f"{out / 'ckpt'}: no checkpoint can be restored" in msg
    assert "checkpoint 4:" in msg and "checkpoint 3:" in msg
    assert f"delete {out / 'ckpt'}" in msg and "--fresh" in msg
    assert_unchanged(out, before)


# --------------------------------------------------------------------- resume mismatches


def _edit_a_rating(data):
    target = data / "target.csv"
    lines = target.read_text().splitlines()
    user, item, rating = lines[5].split(",")
    lines[5] = f"{user},{item},{6 - int(rating) if rating != '3' else 4}"
    target.write_text("\n".join(lines) + "\n")


def _extra_param(monkeypatch):
    """The mf method with one more parameter (code that changes the state's structure)."""
    mf = registry.get_method("mf")

    def build(cfg, split):
        built = mf.build(cfg, split)
        init = built.init
        return dataclasses.replace(built, init=lambda k: {**init(k), "extra": jnp.zeros(3)})

    monkeypatch.setitem(registry._METHODS, "mf", dataclasses.replace(mf, build=build))


MISMATCH = {
    "edited-data": (
        lambda c, mp: _edit_a_rating(c["data"]),
        r"was trained on other data: data fingerprint [0-9a-f]{16} in .*fingerprint\.json",
    ),
    "state-structure": (
        lambda c, mp: _extra_param(mp),
        r"another training-state structure: state fingerprint [0-9a-f]{16}",
    ),
    "config": (
        lambda c, mp: c.update(cfg=C.override(c["cfg"], "mf.lr", "0.05")),
        r"holds a run of a different config \(mf\.lr: 0\.01 -> 0\.05\)",
    ),
}


@pytest.mark.parametrize("case", sorted(MISMATCH))
def test_rerun_with_other_data_state_or_config_is_refused(copy, case, monkeypatch):
    change, match = MISMATCH[case]
    out = copy["out"]
    before = snapshot(out)
    change(copy, monkeypatch)
    with pytest.raises(RunFolderError, match=match) as e:
        _run(copy["cfg"], out)
    assert str(e.value).startswith(str(out)) and f"delete {out}" in str(e.value)
    assert "--fresh" in str(e.value)
    assert_unchanged(out, before)


def test_checkpoint_of_another_state_structure_is_refused_without_a_record(copy, monkeypatch):
    """A folder from before records were kept: the checkpoint's own metadata still tells."""
    out = copy["out"]
    (out / F.RECORD).unlink()
    before = snapshot(out)
    _extra_param(monkeypatch)
    with (
        pytest.warns(F.RunFolderWarning, match="before transferjax recorded"),
        pytest.raises(RunFolderError, match=r"ckpt: checkpoint 4 holds another training-state"),
    ):
        _run(copy["cfg"], out)
    assert_unchanged(out, before)


def test_fresh_moves_the_old_folder_aside_and_starts_anew(copy):
    out = copy["out"]
    before = snapshot(out)
    _edit_a_rating(copy["data"])
    said = []
    run(copy["cfg"], out_dir=out, echo=said.append, progress=False, fresh=True)
    (aside,) = out.parent.glob(".run.old-*")
    assert said[0] == f"moved the previous run folder {out} to {aside}"
    assert_unchanged(aside, {k: v for k, v in before.items() if k != F.LOCK})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from"] is None
    assert manifest["data_fingerprint"] == _record(out)["data"] != _record(aside)["data"]


# --------------------------------------------------------------------------------- locks


@pytest.fixture
def live_pid():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p.pid
    p.kill()
    p.wait()


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _lock(out, **owner):
    (out / F.LOCK).write_text(json.dumps({"started": "2030-01-01T00:00:00+00:00", **owner}))


LOCKS = {
    "live-pid": (
        lambda out, pid: _lock(out, pid=pid, host=socket.gethostname()),
        r"is in use by another run \(pid {pid} on host {host}",
    ),
    "other-host": (
        lambda out, pid: _lock(out, pid=1, host="elsewhere.example"),
        r"is in use by another run \(pid 1 on host elsewhere\.example",
    ),
    "unreadable": (
        lambda out, pid: (out / F.LOCK).write_text(""),
        r"is locked by .*\.lock, which names no readable owner; .*delete .*\.lock",
    ),
}


@pytest.mark.parametrize("case", sorted(LOCKS))
def test_held_lock_refuses_a_second_writer(copy, case, live_pid):
    place, match = LOCKS[case]
    out = copy["out"]
    place(out, live_pid)
    before = snapshot(out)
    match = match.format(pid=live_pid, host=socket.gethostname())
    with pytest.raises(RunFolderError, match=match) as e:
        _run(copy["cfg"], out)
    assert str(e.value).startswith(str(out))
    assert_unchanged(out, before)  # the owner's lock included


def test_stale_lock_is_taken_over_with_a_warning(copy):
    out = copy["out"]
    pid = _dead_pid()
    _lock(out, pid=pid, host=socket.gethostname())
    with pytest.warns(F.RunFolderWarning, match=rf"{out}: took over the stale lock of pid {pid}"):
        metrics = _run(copy["cfg"], out)
    assert metrics["history"] == copy["history"]
    assert not (out / F.LOCK).exists()


def test_lock_is_released_after_an_error(copy):
    out = copy["out"]
    before = snapshot(out)
    (copy["data"] / "target.csv").unlink()
    with pytest.raises(DataError, match="target.csv"):
        _run(copy["cfg"], out)
    assert_unchanged(out, before)  # no lock left behind
    F.release(F.acquire(out))  # and the folder can be locked again


def test_sweep_folder_is_locked(copy, tmp_path, live_pid):
    out = tmp_path / "sweep"
    out.mkdir()
    _lock(out, pid=live_pid, host=socket.gethostname())
    before = snapshot(out)
    with pytest.raises(RunFolderError, match=rf"{out} is in use by another run \(pid {live_pid}"):
        sweep(copy["cfg"], grids=["mf.lr=0.01,0.02"], out_dir=out, echo=lambda *_: None)
    assert_unchanged(out, before)


# ---------------------------------------------------------------------- failed starts


def test_run_failing_before_training_leaves_no_stub(copy, tmp_path):
    out = tmp_path / "runs" / "new"
    bad = C.override(copy["cfg"], "data.csv_target", str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="nope.csv"):
        _run(bad, out)
    assert not out.exists()
    corrected = C.override(copy["cfg"], "mf.lr", "0.02")
    stub = tmp_path / "stub"  # a stub of an earlier version: config.json of the bad config
    stub.mkdir()
    (stub / "config.json").write_text(C.dumps(bad))
    metrics = _run(corrected, stub)
    assert metrics["history"] and json.loads((stub / "config.json").read_text())["mf"]["lr"] == 0.02


def test_stage_structures_match_the_states_the_trainer_saves(copy):
    """The fingerprints computed from shapes alone equal those of real states, with trials."""
    cfg = copy["cfg"]
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    trials = [{"mf.lr": 0.01}, {"mf.lr": 0.02}]
    train = build_trainer(cfg, split, trials=trials)
    keys = jax.random.split(jax.random.key(0), 2)
    params = jax.vmap(train.built.init)(keys)
    for stage, want in zip(train.built.stages, train.stage_structures(2), strict=True):
        state = fresh_state(stage, params, keys, trials, batched=True, n=2)
        assert structure_fingerprint(checkpoint_tree(state, params)) == want
    ckpt = Checkpointer(copy["out"] / "ckpt")
    try:
        assert ckpt.meta(4)["state_structure"] == build_trainer(cfg, split).stage_structures(1)[0]
    finally:
        ckpt.close()
    assert os.path.exists(copy["out"] / "ckpt" / "4")


def test_folder_that_is_not_a_run_folder_is_refused(copy, tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("not a run")
    before = snapshot(out)
    with pytest.raises(RunFolderError, match=rf"{out} is not empty and holds no config\.json"):
        _run(copy["cfg"], out)
    assert_unchanged(out, before)
