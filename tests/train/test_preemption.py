"""A termination notice (SIGTERM) stops training after the epoch in progress, with a checkpoint
of that epoch, and the rerun continues to the numbers of an uninterrupted run; the handler is
installed only where it should be and restored after."""

import dataclasses
import os
import signal
import threading
import time

import jax
import numpy as np
import pytest

from tests.faults import TINY
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import Preempted
from transferjax.methods.mf import MFConfig
from transferjax.train import preemption
from transferjax.train.checkpoint import Checkpointer
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_train

CFG = C.RunConfig(
    method="emcdr",
    data=C.DataConfig(name="synthetic", synthetic=TINY),
    protocol=C.ProtocolConfig(beta=0.3, seed=1),
    trainer=C.TrainerConfig(
        lr=1e-2, batch_size=64, epochs=6, checkpoint_every=100, checkpoint_min_interval_s=0
    ),
    mf=MFConfig(dim=8, epochs=3, batch_size=128),
)

main_thread_only = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="Python installs signal handlers from the main thread only",
)


def _wait_for(pred, timeout=5.0):
    t0 = time.monotonic()
    while not pred() and time.monotonic() - t0 < timeout:
        time.sleep(0.01)  # the handler runs between bytecodes of this thread
    return pred()


@main_thread_only
def test_sigterm_is_a_notice_inside_the_block_and_terminates_again_after_one():
    before = signal.getsignal(signal.SIGTERM)
    with preemption.sigterm_notice():
        assert not preemption.reached()
        with preemption.sigterm_notice():  # nested: the outer block keeps the handler
            pass
        assert signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        assert _wait_for(preemption.reached)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a second one terminates
    assert signal.getsignal(signal.SIGTERM) == before
    assert not preemption.reached()  # a notice lives within its block
    preemption.notify()
    assert not preemption.reached()  # nor is there one outside any block
    with preemption.sigterm_notice():
        assert not preemption.reached()


@main_thread_only
def test_no_handler_when_disabled_or_outside_the_main_thread():
    before = signal.getsignal(signal.SIGTERM)
    with preemption.sigterm_notice(enabled=False):
        assert signal.getsignal(signal.SIGTERM) == before
    seen = []

    def other():
        with preemption.sigterm_notice():
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [before]


@pytest.fixture(scope="module")
def split():
    return build_split(CFG.protocol, build_dataset(CFG.data))


def _histories(result) -> list:
    return [(h["stage"], h["epoch"], h["valid"]) for h in result.history]


@pytest.mark.slow
@main_thread_only
def test_notice_checkpoints_the_epoch_in_progress_and_the_rerun_matches(split, tmp_path):
    train = make_train(CFG, split, evaluate=make_evaluate(CFG, split))
    ref = train(jax.random.key(3))
    stop_at = 3 + 3 + 2  # the second epoch of the mapping stage, after both MF stages

    def log(step, scalars):
        if step == stop_at:
            preemption.notify()  # what SIGTERM does inside the trainer's call

    started = time.perf_counter() - 100.0  # the run began 100 s before this call
    with pytest.raises(Preempted) as e:
        train(jax.random.key(3), log=log, ckpt_dir=tmp_path, started=started)
    stopped = time.perf_counter()
    assert (e.value.stage, e.value.epoch) == ("mapping", 2)
    assert e.value.checkpoint == str(tmp_path.absolute())
    assert "SIGTERM" in str(e.value) and "run the same command again" in str(e.value)
    ckpt = Checkpointer(tmp_path)
    try:  # the stage ends (3, 6) and the notice's epoch: not due by checkpoint_every
        assert ckpt.steps()[0] == stop_at  # newest first
        meta = ckpt.meta(stop_at)
    finally:
        ckpt.close()
    assert meta["epoch"] == 2
    assert 100.0 < meta["wall_time"] < stopped - started  # the run's clock at the save
    again = train(jax.random.key(3), ckpt_dir=tmp_path)
    assert (again.wall_before, ref.wall_before) == (meta["wall_time"], 0.0)
    assert _histories(again) == _histories(ref)
    assert again.selected == ref.selected
    np.testing.assert_array_equal(
        [again.best["test"][k] for k in sorted(ref.best["test"])],
        [ref.best["test"][k] for k in sorted(ref.best["test"])],
    )


@pytest.mark.slow
@main_thread_only
def test_a_notice_in_the_last_epoch_lets_the_call_finish(split, tmp_path):
    cfg = dataclasses.replace(CFG, trainer=dataclasses.replace(CFG.trainer, epochs=2))
    train = make_train(cfg, split, evaluate=make_evaluate(cfg, split))
    last = 3 + 3 + 2

    def log(step, scalars):
        if step == last:
            preemption.notify()

    result = train(jax.random.key(3), log=log, ckpt_dir=tmp_path)  # nothing left to save for
    assert result.history[-1]["epoch"] == 2
