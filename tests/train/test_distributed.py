"""Multi-process runs: 2 local processes x 2 fake CPU devices form one 4-device cluster over
`jax.distributed` (gloo collectives), and `transferjax run` on it (`trainer.mesh=data=4`) gives
the metrics of one device; process 0 alone writes the run folder; a run whose process dies
after a checkpoint resumes, rerun on both processes, and ends with the metrics of an
uninterrupted run.

Tolerances. Against one device: each of the 4 devices sums the loss and gradients of its 16
rows of a step's 64 and the partial sums are all-reduced across the processes, so the numbers
differ from one device's only in float32 summation order (measured: <= 1.2e-7 relative on the
metrics of mf, dann, emcdr and cmf); rtol=1e-5 leaves a wide margin while a wrong batch split
(rows fed twice or not at all) moves them by 1e-3 or more. A resumed run replays the same
programs on the same restored bits: its metrics equal the uninterrupted run's exactly.
"""

import dataclasses
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.faults import TINY
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import ConfigError
from transferjax.train.distributed import Cluster, cluster_from_env, initialize
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_train

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKER = "tests.train.multiprocess_worker"  # run with -m from ROOT (the checkout's code)
SETS = [f"data.synthetic.{k}={v}" for k, v in dataclasses.asdict(TINY).items()] + [
    "protocol.beta=0.3",
    "protocol.seed=1",
    "trainer.batch_size=64",
    "mf.batch_size=64",
    "trainer.lr=1e-2",
    "eval.groups=off",
]
MF = [
    "method=mf",
    "mf.epochs=4",
    "trainer.epochs=4",
    "trainer.checkpoint_every=1",
    "trainer.checkpoint_min_interval_s=0",
]
TIMEOUT = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(port: int, i: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # conftest's devices
    return {
        **env,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": "2",
        "TRANSFERJAX_COORDINATOR": f"127.0.0.1:{port}",
        "TRANSFERJAX_NUM_PROCESSES": "2",
        "TRANSFERJAX_PROCESS_ID": str(i),
    }


def _start(
    out: pathlib.Path, sets: list[str], *, mesh: str = "data=4", **extra
) -> list[subprocess.Popen]:
    """Both processes of `transferjax run --distributed --out OUT --set ...`."""
    cmd = [sys.executable, "-m", WORKER, "run", "--distributed", "--out", str(out)]
    for s in [*SETS, *sets, f"trainer.mesh={mesh}"]:
        cmd += ["--set", s]
    port = _free_port()
    return [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**_env(port, i), **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    """The outputs of both processes, which must succeed; once one fails (or after TIMEOUT
    seconds) the other, left waiting in a collective, is killed rather than waited for."""
    deadline = time.monotonic() + TIMEOUT
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
    outs = [p.communicate()[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"process {i} (exit {p.returncode}):\n{out[-3000:]}"
    return outs


def _history(out: pathlib.Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["history"]


def _one_device(sets: list[str]) -> list[dict]:
    """The same run on one device, in this process."""
    cfg = C.apply_overrides(C.RunConfig(), [*SETS, *sets])
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    train = make_train(cfg, split, evaluate=make_evaluate(cfg, split))
    return train(jax.random.key(cfg.seed)).history


def _assert_close(got: list[dict], ref: list[dict], *, rtol: float) -> None:
    assert len(got) == len(ref) > 0
    for g, r in zip(got, ref):
        assert (g["stage"], g["epoch"]) == (r["stage"], r["epoch"])
        for split in ("valid", "test"):
            assert (split in g) == (split in r), split  # test: at the selected evaluation only
            if split not in r:
                continue
            keys = sorted(r[split])
            np.testing.assert_allclose(
                [g[split][k] for k in keys], [r[split][k] for k in keys], rtol=rtol, err_msg=split
            )


def test_cluster_from_env_names_the_bad_variable():
    assert cluster_from_env({}) is None
    good = {
        "TRANSFERJAX_COORDINATOR": "127.0.0.1:1234",
        "TRANSFERJAX_NUM_PROCESSES": "2",
        "TRANSFERJAX_PROCESS_ID": "1",
    }
    assert cluster_from_env(good) == Cluster("127.0.0.1:1234", 2, 1)
    bad = [
        ({"TRANSFERJAX_COORDINATOR": "127.0.0.1:1234"}, "TRANSFERJAX_NUM_PROCESSES"),
        ({**good, "TRANSFERJAX_COORDINATOR": "nohost"}, "TRANSFERJAX_COORDINATOR='nohost'"),
        ({**good, "TRANSFERJAX_NUM_PROCESSES": "two"}, "TRANSFERJAX_NUM_PROCESSES='two'"),
        ({**good, "TRANSFERJAX_PROCESS_ID": "2"}, "TRANSFERJAX_PROCESS_ID=2"),
    ]
    for env, named in bad:
        with pytest.raises(ConfigError, match=named):
            cluster_from_env(env)
    assert initialize(requested=False, env={}) is False  # nothing asked: nothing started


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pathlib.Path:
    """An mf run on 2 processes x 2 devices, 4 epochs, a checkpoint after each."""
    out = tmp_path_factory.mktemp("mp") / "mf"
    outs = _finish(_start(out, MF))
    assert "run folder:" in outs[0] and "run folder:" not in outs[1]  # process 0 prints
    return out


@pytest.mark.slow
def test_two_processes_match_one_device_mf(uninterrupted):
    manifest = json.loads((uninterrupted / "manifest.json").read_text())
    assert manifest["processes"] == 2 and len(manifest["devices"]) == 4
    assert manifest["mesh"] == {"trial": 1, "data": 4, "model": 1}
    assert (uninterrupted / "tb").is_dir() and not (uninterrupted / ".lock").exists()
    _assert_close(_history(uninterrupted), _one_device(MF), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dann", "emcdr", "cmf"])
def test_two_processes_match_one_device(tmp_path, method):
    sets = [f"method={method}", "trainer.epochs=2", "mf.epochs=2", "trainer.checkpoint_every=0"]
    procs = _start(tmp_path / method, sets)
    ref = _one_device(sets)  # while the two processes run
    _finish(procs)
    got = _history(tmp_path / method)
    assert {h["stage"] for h in got} == {h["stage"] for h in ref}  # emcdr: all three stages
    _assert_close(got, ref, rtol=1e-5)


@pytest.mark.slow
def test_two_processes_with_tables_split_over_model_match_one_device(tmp_path):
    """data=2,model=2 over 2 processes: the row-sparse MF tables split by rows (each process
    fills and checkpoints its own devices' rows), one device's numbers."""
    sets = ["method=mf", "mf.sparse=true", "mf.epochs=2", "trainer.checkpoint_every=1"]
    procs = _start(tmp_path / "mf", sets, mesh="data=2,model=2")
    ref = _one_device(sets)  # while the two processes run
    _finish(procs)
    manifest = json.loads((tmp_path / "mf" / "manifest.json").read_text())
    assert manifest["mesh"] == {"trial": 1, "data": 2, "model": 2}
    _assert_close(_history(tmp_path / "mf"), ref, rtol=1e-5)


@pytest.mark.slow
def test_killed_run_resumes_on_both_processes_with_the_same_metrics(tmp_path, uninterrupted):
    out = tmp_path / "mf"
    procs = _start(out, MF, EXIT_AFTER_CHECKPOINT="2")
    assert procs[1].wait(timeout=TIMEOUT) == 9  # process 1 died after checkpoint 2
    procs[0].kill()  # process 0, left waiting for it in the next collective, is killed too
    procs[0].communicate(timeout=TIMEOUT)
    assert not (out / "metrics.json").exists()
    _finish(_start(out, MF))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from"] in (1, 2)
    _assert_close(_history(out), _history(uninterrupted), rtol=0)


@pytest.mark.slow
def test_sigterm_stops_both_processes_at_one_epoch_and_the_rerun_matches(tmp_path, uninterrupted):
    """JAX's preemption service holds SIGTERM in each process: the processes agree on an epoch,
    checkpoint it (not due by trainer.checkpoint_every) and exit 143; the rerun continues."""
    out = tmp_path / "mf"
    sets = [*MF, "trainer.checkpoint_every=3"]
    procs = _start(out, sets, SIGTERM_AT_CHECK="1")  # process 1, after epoch 1
    outs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    assert [p.returncode for p in procs] == [143, 143], outs
    at = re.search(r"stopped by a termination notice \(SIGTERM\) after epoch (\d+)", outs[0])
    assert at is not None and int(at[1]) in (2, 3), outs[0]  # the first epoch both reach (of 4)
    assert not (out / "metrics.json").exists()
    assert [int(d.name) for d in (out / "ckpt").iterdir() if d.name.isdigit()] == [int(at[1])]
    _finish(_start(out, sets))
    assert json.loads((out / "manifest.json").read_text())["resumed_from"] == int(at[1])
    _assert_close(_history(out), _history(uninterrupted), rtol=0)


def test_distributed_without_a_cluster_is_one_line_naming_the_variables(tmp_path):
    env = {k: v for k, v in _env(1, 0).items() if not k.startswith("TRANSFERJAX_")}
    env = {k: v for k, v in env.items() if not k.startswith(("SLURM_", "OMPI_", "TPU_"))}
    cmd = [sys.executable, "-m", "transferjax.cli", "run", "--distributed", "--out", str(tmp_path)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "TRANSFERJAX_COORDINATOR=host:port" in p.stderr and "Traceback" not in p.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.slow
def test_folder_in_use_stops_both_processes_with_one_line(tmp_path):
    out = tmp_path / "held"
    out.mkdir()
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}
    (out / ".lock").write_text(json.dumps(owner))  # this pytest process holds it
    procs = _start(out, MF)
    outs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    assert [p.returncode for p in procs] == [2, 2], outs
    assert "is in use by another run" in outs[0]
    assert "process 0 could not take the run folder" in outs[1]
    assert "Traceback" not in outs[0] + outs[1]
    assert sorted(q.name for q in out.iterdir()) == [".lock"]  # nothing written
