"""Runner: vmapped seeds and learning rates equal sequential runs, SIGKILL + rerun resumes to the
same metrics, sweeps choose on valid only, atomic result files."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import RunFolderError
from transferjax.methods.mf import MFConfig
from transferjax.train import run as R
from transferjax.train.checkpoint import Checkpointer
from transferjax.train.evaluate import make_evaluate
from transferjax.train.files import write_json
from transferjax.train.trainer import make_train

SMALL = C.SyntheticConfig(
    n_overlap=300,
    n_source_only=100,
    n_target_only=100,
    n_items_source=150,
    n_items_target=120,
    density_source=0.1,
    density_target=0.05,
    shift_deg=5.0,
    seed=2,
)
CFG = C.RunConfig(
    method="emcdr",
    data=C.DataConfig(name="synthetic", synthetic=SMALL),
    protocol=C.ProtocolConfig(beta=0.3, seed=1),
    trainer=C.TrainerConfig(lr=1e-2, batch_size=64, epochs=4),
    mf=MFConfig(dim=8, epochs=3, batch_size=128),
)


@pytest.fixture(scope="module")
def split():
    return build_split(CFG.protocol, build_dataset(CFG.data))


def _hist(r, part):
    return np.array([[h[part][k] for k in sorted(h[part])] for h in r.history])


def _test(r):
    """The selected evaluation's test metrics (scored once, on the selected params)."""
    return np.array([r.best["test"][k] for k in sorted(r.best["test"])])


@pytest.mark.slow
def test_vmapped_seeds_equal_sequential(split):
    train = make_train(CFG, split, evaluate=make_evaluate(CFG, split))
    batched = train(jnp.stack([jax.random.key(5), jax.random.key(6)]))
    for r, seed in zip(batched, (5, 6)):
        alone = train(jax.random.key(seed))
        np.testing.assert_allclose(_hist(r, "valid"), _hist(alone, "valid"), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(_test(r), _test(alone), rtol=1e-4, atol=1e-5)
        assert r.selected == alone.selected
    assert not np.allclose(_hist(batched[0], "valid"), _hist(batched[1], "valid"))


@pytest.mark.slow
def test_vmapped_learning_rates_equal_separate_runs(split):
    lrs = [3e-3, 3e-2]
    train = make_train(
        CFG, split, evaluate=make_evaluate(CFG, split), trials=[{"trainer.lr": v} for v in lrs]
    )
    batched = train(jnp.stack([jax.random.key(0)] * 2))
    for r, lr in zip(batched, lrs):
        cfg = C.override(CFG, "trainer.lr", str(lr))
        alone = make_train(cfg, split, evaluate=make_evaluate(cfg, split))(jax.random.key(0))
        np.testing.assert_allclose(_hist(r, "valid"), _hist(alone, "valid"), rtol=1e-4, atol=1e-5)
    assert not np.allclose(_hist(batched[0], "valid"), _hist(batched[1], "valid"))


TRACED_CASES = [  # (method, key, two values, extra overrides)
    ("cmf", "cmf.source_weight", (0.2, 0.8), []),
    ("emcdr", "mf.reg", (1e-4, 0.1), []),
    ("mf", "mf.reg", (1e-4, 0.1), ["mf.sparse=true"]),
    ("dann", "align.lam", (0.1, 3.0), ["align.lam_schedule=constant"]),
    ("infonce", "align.temperature", (0.05, 1.0), []),
    ("mmd", "align.weight", (0.0, 5.0), []),
]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "key", "values", "extra"), TRACED_CASES)
def test_vmapped_loss_hyperparameters_equal_separate_runs(split, method, key, values, extra):
    base = C.apply_overrides(
        CFG,
        [f"method={method}", "trainer.epochs=2", "mf.epochs=1", "phi.dims=16,8", *extra],
    )
    train = make_train(
        base, split, evaluate=make_evaluate(base, split), trials=[{key: v} for v in values]
    )
    batched = train(jnp.stack([jax.random.key(0)] * 2))
    for r, v in zip(batched, values):
        cfg = C.override(base, key, str(v))
        alone = make_train(cfg, split, evaluate=make_evaluate(cfg, split))(jax.random.key(0))
        np.testing.assert_allclose(_hist(r, "valid"), _hist(alone, "valid"), rtol=1e-4, atol=1e-5)
        assert float(r.hyper[key]) == pytest.approx(v)
    assert not np.allclose(_hist(batched[0], "valid"), _hist(batched[1], "valid"))


@pytest.mark.slow
def test_untraced_trial_key_is_rejected(split):
    train = make_train(
        CFG, split, evaluate=make_evaluate(CFG, split), trials=[{"align.weight": 1.0}] * 2
    )
    with pytest.raises(ValueError, match="'align.weight' is not a traced value of method 'emcdr'"):
        train(jnp.stack([jax.random.key(0)] * 2))


@pytest.mark.slow
def test_sweep_groups_traced_hyperparameters_into_one_program(tmp_path):
    from transferjax.train import sweep as S

    cfg = C.apply_overrides(CFG, ["method=cmf", "trainer.epochs=2", "trainer.checkpoint_every=0"])
    grids = ["cmf.source_weight=0.2,0.8", "trainer.lr=1e-2,3e-2"]
    rep = S.sweep(cfg, grids=grids, out_dir=tmp_path, echo=lambda *_: None)
    assert rep["budget"] == 4
    assert sorted(q.name for q in tmp_path.glob("group-*")) == ["group-000"]  # one program
    assert len({p["valid"] for p in rep["points"]}) == 4


def _cli(args, cwd, **kw):
    """The CLI of this checkout (not whichever transferjax the interpreter has installed) in a
    subprocess started in `cwd`."""
    root = str(pathlib.Path(R.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "transferjax.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


LONG = dataclasses.replace(
    CFG,
    trainer=dataclasses.replace(
        CFG.trainer, epochs=24, checkpoint_every=1, checkpoint_min_interval_s=0
    ),
    mf=dataclasses.replace(CFG.mf, epochs=6),
)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """LONG's experiment file and the folder of its uninterrupted run."""
    d = tmp_path_factory.mktemp("long")
    exp = d / "exp.py"
    exp.write_text(
        "from transferjax import config as C\n"
        f"def get_config():\n    return C.from_dict(C.RunConfig, {C.to_dict(LONG)!r})\n"
    )
    ref = _cli(["run", str(exp), "--out", str(d / "ref")], d)
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err
    return exp, d / "ref"


def _steps(folder: pathlib.Path) -> list[int]:
    ckpt = folder / "ckpt"
    return [int(d.name) for d in ckpt.glob("[0-9]*") if d.name.isdigit()] if ckpt.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_stopped_then_rerun_matches_uninterrupted(long_run, tmp_path, sig):
    """Killed (SIGKILL: from its newest checkpoint) or given a termination notice (SIGTERM: it
    checkpoints the epoch in progress and exits 143 with one line), the run's rerun ends with
    the uninterrupted run's history and selection; its wall time adds the stopped process's,
    as the checkpoint it resumed from recorded it."""
    exp, ref = long_run
    stopped = tmp_path / "stopped"
    p = _cli(["run", str(exp), "--out", str(stopped)], tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until the mapping stage has checkpoints, then stop it
        if max(_steps(stopped), default=0) >= 15:  # mapping epoch 9 of 24: 15 epochs left
            break
        time.sleep(0.05)
    os.kill(p.pid, sig)
    _, err = p.communicate(timeout=300)
    assert not (stopped / "metrics.json").exists(), "the run finished before it could be stopped"
    if sig == signal.SIGTERM:
        assert p.returncode == 143, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("transferjax: stopped by a termination notice (SIGTERM) after"), err
        assert f"checkpoint saved in {stopped / 'ckpt'}" in last
    else:
        assert p.returncode == -signal.SIGKILL
    newest = max(_steps(stopped))
    ckpt = Checkpointer(stopped / "ckpt")
    saved = ckpt.meta(newest)
    ckpt.close()
    again = _cli(["run", str(exp), "--out", str(stopped)], tmp_path)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "resumed from checkpoint" in out
    a = json.loads((ref / "metrics.json").read_text())
    b = json.loads((stopped / "metrics.json").read_text())
    assert a["history"] == b["history"] and a["selected"] == b["selected"]
    assert json.loads((stopped / "manifest.json").read_text())["resumed_from"] == newest >= 15
    t, t_ref = b["timing"], a["timing"]
    assert saved["wall_time"] >= saved["train_time"] > 0
    assert t["wall_s"] == pytest.approx(t["process_wall_s"] + saved["wall_time"], rel=1e-9)
    assert t["wall_s"] >= t["train_s"] > saved["train_time"]
    assert t_ref["wall_s"] == t_ref["process_wall_s"]  # not resumed: this process alone
    assert f"this process {t['process_wall_s']:.1f}s" in out


@pytest.mark.slow
def test_sweep_chooses_on_valid_only(tmp_path, monkeypatch):
    from transferjax.train import sweep as S

    cfg = dataclasses.replace(CFG, trainer=dataclasses.replace(CFG.trainer, checkpoint_every=0))
    grids = ["trainer.lr=1e-3,3e-2", "mf.dim=4,8"]
    a = S.sweep(cfg, grids=grids, out_dir=tmp_path / "a", echo=lambda *_: None)
    real = S.build_split

    def scrambled(pc, data):  # same valid, test with every rating set to 5.0
        sp = real(pc, data)
        return dataclasses.replace(
            sp, test=dataclasses.replace(sp.test, rating=sp.test.rating * 0 + 5.0)
        )

    monkeypatch.setattr(S, "build_split", scrambled)
    b = S.sweep(cfg, grids=grids, out_dir=tmp_path / "b", echo=lambda *_: None)
    assert a["chosen"] == b["chosen"]
    assert [p["valid"] for p in a["points"]] == [p["valid"] for p in b["points"]]
    assert [p["test_for_record"] for p in a["points"]] != [
        p["test_for_record"] for p in b["points"]
    ]
    assert a["budget"] == 4 and a["space"] == {"trainer.lr": ["1e-3", "3e-2"], "mf.dim": ["4", "8"]}
    best = min(a["points"], key=lambda p: p["valid"])
    assert a["chosen"]["index"] == best["index"]
    m = json.loads((tmp_path / "a" / best["folder"] / "metrics.json").read_text())
    assert m["selected"]["valid"]["rmse"] == pytest.approx(best["valid"])


def test_sweep_rejects_unknown_grid_key(tmp_path):
    from transferjax.train.sweep import parse_space, points

    with pytest.raises(C.ConfigError, match="unknown config key 'trainer.lrr'"):
        parse_space(CFG, ["trainer.lrr=1,2"])
    with pytest.raises(C.ConfigError, match="not a valid int"):
        parse_space(CFG, ["mf.dim=a,b"])
    space = parse_space(CFG, ["trainer.lr=log:1e-4:1e-1", "mf.dim=4,8"])
    pts = points(space, random=5, seed=3)
    assert len(pts) == 5 and pts == points(space, random=5, seed=3)
    assert all(1e-4 <= float(p["trainer.lr"]) <= 1e-1 for p in pts)


@pytest.mark.slow
@pytest.mark.parametrize(
    "cores, want",
    [
        (1, [1, 1, 1, 1, 1, 1]),
        # 3 seeds on 2 cores share them on 3 threads; 4 fill two rounds of 2; 5 take 3 threads
        (2, [1, 2, 3, 2, 3, 2]),
        (4, [1, 2, 3, 4, 5, 6]),
    ],
)
def test_seed_workers_leave_no_core_idle_while_seeds_are_left(monkeypatch, cores, want):
    """The CPU default: one thread per core when the seeds fill whole rounds of the cores,
    else ceil(n / r) threads over r = ceil(n / 2c) rounds; an explicit trainer.workers wins."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert [R.seed_workers(CFG, n) for n in range(1, 7)] == want
    assert R.seed_workers(C.override(CFG, "trainer.workers", "2"), 5) == 2
    if cores == 2:  # bounded: at most 2c seeds at once, in balanced rounds
        assert [R.seed_workers(CFG, n) for n in (7, 9, 10, 11)] == [4, 3, 2, 4]


@pytest.mark.slow
def test_seeds_on_threads_equal_seeds_one_after_another(split, tmp_path):
    from transferjax.train.writers import JsonlWriter

    cfg = C.apply_overrides(
        CFG,
        [
            "seeds=3",
            "trainer.epochs=2",
            "trainer.checkpoint_every=1",
            "trainer.checkpoint_min_interval_s=0",
        ],
    )
    out = {}
    for workers in (1, 2):
        c = C.override(cfg, "trainer.workers", str(workers))
        assert R.seed_workers(c, 3) == workers
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        writer = JsonlWriter(folder / "scalars.jsonl")
        try:
            out[workers] = R.train_seeds(c, split, out=folder, writer=writer, vmapped=False)
        finally:
            writer.close()
        assert sorted(q.name for q in (folder / "ckpt").iterdir()) == ["seed0", "seed1", "seed2"]
        lines = (folder / "scalars.jsonl").read_text().splitlines()
        assert all(json.loads(line) for line in lines)  # no interleaved writes
    for a, b in zip(out[1], out[2], strict=True):
        assert a.history == b.history
    assert out[1][0].history != out[1][1].history
    assert R.seed_workers(C.override(cfg, "trainer.workers", "8"), 3) == 3


def test_write_json_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1})

    def boom(obj, f, **kw):
        f.write('{"a": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", boom)  # as transferjax.train.files calls it
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_checkpoint_of_another_structure_fails_naming_the_folder(tmp_path):
    from transferjax.train.checkpoint import Checkpointer

    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, {"params": {"a": jnp.ones(3)}}, {"stage": 0})
    ckpt.close()
    ckpt = Checkpointer(tmp_path / "ckpt")
    try:
        with pytest.raises(RunFolderError, match=r"ckpt: checkpoint 1 does not match .* delete"):
            ckpt.restore(1, {"params": {"a": jnp.ones(3), "hyper": {"x": jnp.ones(())}}})
        state = ckpt.restore(1, {"params": {"a": jnp.zeros(3)}})  # the matching one restores
        np.testing.assert_array_equal(state["params"]["a"], np.ones(3))
    finally:
        ckpt.close()
