"""`trainer.mesh`: the setting's parser, data parallel and trials over devices give the numbers
of one device.

The test process has 4 fake CPU devices (conftest); `trainer.mesh=auto` trains on one of them,
as on a plain CPU machine. The last test runs the CLI in a subprocess that gets its 4 devices
from XLA_FLAGS, as the README shows.

Tolerances: a data-parallel step sums each device's rows and then all-reduces the partial sums,
so its loss and gradients differ from one device's only in float32 summation order (a few ulp,
~1e-7 relative); over the tiny runs here the metrics stay within ~2e-7 (measured), and
rtol=1e-5 leaves a wide margin while any real change (another batch, a lost gradient) moves
them by 1e-3 or more. Trials split over "trial" reduce nothing across devices; each device runs
the same per-trial math on a trial batch of another size, which can vectorise differently (one
ulp seen), hence 1e-6.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.faults import TINY
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import ConfigError
from transferjax.train.evaluate import make_evaluate
from transferjax.train.mesh import make_layout, mesh_sizes
from transferjax.train.run import use_vmap
from transferjax.train.trainer import make_train

BASE = C.apply_overrides(
    C.RunConfig(
        method="mf",
        data=C.DataConfig(name="synthetic", synthetic=TINY),
        protocol=C.ProtocolConfig(beta=0.3, seed=1),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=64, epochs=2, checkpoint_every=0),
    ),
    ["mf.epochs=2", "mf.batch_size=64"],
)


@pytest.fixture(scope="module")
def split():
    assert jax.local_device_count() == 4, "conftest sets 4 fake CPU devices"
    return build_split(BASE.protocol, build_dataset(BASE.data))


def _cfg(method: str, mesh: str, **trainer):
    cfg = C.override(C.override(BASE, "method", method), "trainer.mesh", mesh)
    return dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, **trainer))


def _curves(results) -> np.ndarray:
    """f64[trials, evaluations, 3]: valid rmse, valid mae and the train loss of each entry."""
    return np.array(
        [
            [[h["valid"]["rmse"], h["valid"]["mae"], h["train"]["loss"]] for h in r.history]
            for r in results
        ]
    )


def _train(cfg, split, keys):
    train = make_train(cfg, split, evaluate=make_evaluate(cfg, split))
    out = train(keys)
    return train, out if isinstance(out, list) else [out]


@pytest.mark.parametrize(
    "bad", ["data", "data=0", "dat=2", "data=2,data=2", "data=two", "data=2;model=2", ""]
)
def test_mesh_setting_rejects_malformed_values_by_name(bad):
    with pytest.raises(ConfigError, match=r"trainer\.mesh="):
        C.apply_overrides(C.RunConfig(), [f"trainer.mesh={bad}"])


def test_mesh_sizes_must_multiply_to_the_device_count():
    assert C.parse_mesh("data=2,model=2") == {"trial": 1, "data": 2, "model": 2}
    assert mesh_sizes("auto") == {"trial": 1, "data": 1, "model": 1}  # one device on a CPU
    assert make_layout("auto") is None and make_layout("data=4").sizes["data"] == 4
    for spec in ("data=3", "data=4,model=2", "trial=2"):
        with pytest.raises(ConfigError, match=r"trainer\.mesh=.*4 cpu device"):
            make_layout(spec)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mf", "cmf", "emcdr", "dann"])
def test_data_parallel_matches_one_device(method, split):
    key = jax.random.key(0)
    ref_train, ref = _train(_cfg(method, "auto"), split, key)
    assert ref_train.layout is None
    # the two-axis mesh on mf, cmf and emcdr (dann's: tests/train/test_mesh_tables.py)
    meshes = ("data=4",) if method == "dann" else ("data=4", "data=2,model=2")
    for mesh in meshes:
        train, got = _train(_cfg(method, mesh), split, key)
        np.testing.assert_allclose(_curves(got), _curves(ref), rtol=1e-5, err_msg=mesh)
        data = train.layout.sizes["data"]
        for (_, batched, _, shapes), program in train.programs.compiled.items():
            assert not batched
            # the batch rows enter split over "data" (replicated when the batch does not divide,
            # and split inside); the replicated gradients are all-reduced
            even = shapes[-1][-1] % data == 0
            assert program.input_shardings[0][-1].spec == (jax.P(None, "data") if even else jax.P())
            assert "all-reduce(" in program.as_text()


@pytest.mark.slow
def test_data_parallel_batch_not_divisible_by_the_devices(split):
    """A batch of 30 rows over 4 devices: the rows enter replicated and are split unevenly
    inside the program; still one device's numbers."""
    key = jax.random.key(1)
    _, ref = _train(_cfg("mf", "auto", batch_size=30), split, key)
    _, got = _train(_cfg("mf", "data=4", batch_size=30), split, key)
    np.testing.assert_allclose(_curves(got), _curves(ref), rtol=1e-5)


@pytest.mark.slow
def test_trials_split_over_devices_match_one_device(split):
    keys = jnp.stack([jax.random.key(s) for s in range(4)])
    _, ref = _train(_cfg("mf", "auto"), split, keys)
    for mesh in ("trial=4", "trial=2,data=2"):
        train, got = _train(_cfg("mf", mesh), split, keys)
        np.testing.assert_allclose(_curves(got), _curves(ref), rtol=1e-6, atol=1e-6)
        ((_, batched, *_),) = train.programs.compiled
        assert batched
        state = train.programs.compiled[next(iter(train.programs.compiled))].output_shardings[0]
        assert {s.spec for s in jax.tree.leaves(state)} == {jax.P("trial")}
    with pytest.raises(ConfigError, match=r"trainer\.mesh=.*3 trial"):
        _train(_cfg("mf", "trial=4"), split, keys[:3])


def test_trial_axis_vmaps_the_seeds(split):
    cfg = dataclasses.replace(_cfg("mf", "trial=4"), seeds=4)
    assert use_vmap(cfg, split)  # "auto" on a CPU would run the seeds one after another
    off = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, vmap="off"))
    with pytest.raises(ConfigError, match=r"trainer\.mesh=.*trainer\.vmap"):
        use_vmap(off, split)


@pytest.mark.slow
def test_cli_on_four_fake_devices_matches_one_device(tmp_path, split):
    """The README's command: `XLA_FLAGS=...device_count=4 transferjax run ... --set
    trainer.mesh=data=4` writes the mesh to the manifest and one device's metrics."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sets = [f"data.synthetic.{k}={v}" for k, v in dataclasses.asdict(TINY).items()]
    sets += ["protocol.beta=0.3", "protocol.seed=1", "method=mf", "trainer.checkpoint_every=0"]
    sets += ["trainer.batch_size=64", "trainer.epochs=2", "mf.batch_size=64", "mf.epochs=2"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    cmd = [sys.executable, "-m", "transferjax.cli", "run", "--out", str(tmp_path)]
    for s in [*sets, "trainer.mesh=data=4"]:
        cmd += ["--set", s]
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["mesh"] == {"trial": 1, "data": 4, "model": 1}
    assert len(manifest["devices"]) == 4
    got = json.loads((tmp_path / "metrics.json").read_text())["history"]
    cfg = C.apply_overrides(C.RunConfig(), sets)  # the same run on one device, in-process
    _, (ref,) = _train(cfg, split, jax.random.key(cfg.seed))
    assert len(got) == len(ref.history) > 0
    for g, r in zip(got, ref.history):
        np.testing.assert_allclose(g["valid"]["rmse"], r["valid"]["rmse"], rtol=1e-5)
