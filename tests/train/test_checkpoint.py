"""Background checkpoint saves: the state is snapshotted when `save` returns, so the trainer
may donate (delete) its buffers at once; reads wait for the pending save."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.train.checkpoint import Checkpointer


def _state(v):
    return {"params": {"w": jnp.full((4, 3), v, jnp.float32)}, "step": jnp.asarray(int(v))}


def test_save_snapshots_state_before_its_buffers_are_donated(tmp_path):
    ck = Checkpointer(tmp_path / "ckpt")
    history = [{"rmse": 1.0}]
    for step in (1, 2):
        state = _state(float(step))
        ck.save(step, state, {"epoch": step, "history": history})
        history.append({"rmse": 0.5})  # the caller keeps mutating its record
        for leaf in jax.tree.leaves(state):
            leaf.delete()  # what donating the state to the next epoch does
    assert ck.steps() == [2, 1]  # waits for the pending save
    assert ck.meta(1) == {"epoch": 1, "history": [{"rmse": 1.0}]}
    got = ck.restore(2, _state(0.0))
    np.testing.assert_array_equal(got["params"]["w"], np.full((4, 3), 2.0, np.float32))
    assert int(got["step"]) == 2
    ck.close()


def test_failed_background_save_raises_at_the_next_call(tmp_path, monkeypatch):
    ck = Checkpointer(tmp_path / "ckpt")

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck._mngr, "save", broken)
    ck.save(1, _state(1.0), {"epoch": 1})  # returns: the write runs in the background
    with pytest.raises(OSError, match="disk full"):
        ck.wait()
    ck.close()


EVERY_EPOCH = [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (2, 3)]  # (stage, epoch)


@pytest.mark.parametrize("interval, want", [(0.0, EVERY_EPOCH), (1e9, [(2, 3)])])
@pytest.mark.slow
def test_min_interval_skips_due_checkpoints_but_never_the_final_state(
    tmp_path, monkeypatch, interval, want
):
    """EMCDR's three stages with a checkpoint due every epoch: interval 0 saves each one; an
    interval longer than the run saves only the last stage's final state."""
    from transferjax import config as C
    from transferjax.train import run as R

    saved = []
    real = Checkpointer.save

    def spy(self, step, state, meta):
        saved.append((meta["stage"], meta["epoch"]))
        return real(self, step, state, meta)

    monkeypatch.setattr(Checkpointer, "save", spy)
    cfg = C.apply_overrides(
        C.RunConfig(),
        [
            "method=emcdr",
            "data.synthetic.n_overlap=60",
            "data.synthetic.n_source_only=10",
            "data.synthetic.n_target_only=10",
            "data.synthetic.n_items_source=30",
            "data.synthetic.n_items_target=20",
            "mf.epochs=2",
            "trainer.epochs=3",
            "trainer.checkpoint_every=1",
            f"trainer.checkpoint_min_interval_s={interval}",
        ],
    )
    R.run(cfg, out_dir=tmp_path / "run", echo=lambda *_: None, progress=False)
    assert saved == want  # stages: source MF, target MF, the mapping
