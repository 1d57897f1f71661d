"""A result holds the params of its selected evaluation, not the last epoch's: against a copy
taken when that evaluation ran, for one trial and for vmapped trials, and through an
interrupted and resumed run. Early stopping (`trainer.patience`) ends a trial that many
evaluations after its selected one, vmapped trials each where it would end alone."""

import jax
import numpy as np
import pytest

from tests.faults import TINY
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_train

# Target-only MF at a learning rate high enough that the valid RMSE turns up within 12 epochs:
# the selected epoch is not the last one.
CFG = C.apply_overrides(
    C.RunConfig(
        method="mf",
        data=C.DataConfig(name="synthetic", synthetic=TINY),
        protocol=C.ProtocolConfig(beta=0.3, seed=1),
        trainer=C.TrainerConfig(
            lr=0.1, batch_size=64, epochs=12, checkpoint_every=1, checkpoint_min_interval_s=0
        ),
    ),
    ["mf.dim=8", "mf.reg=0"],
)


@pytest.fixture(scope="module")
def split():
    return build_split(CFG.protocol, build_dataset(CFG.data))


class Capture:
    """The run's evaluator, plus a host copy of the params of every valid evaluation."""

    def __init__(self, cfg, split):
        self.inner, self.split, self.seen = make_evaluate(cfg, split), split, []

    def metric_names(self):
        return self.inner.metric_names()

    def __call__(self, scorer, params, heldout, **kw):
        if heldout is self.split.valid:
            self.seen.append(jax.device_get({k: v for k, v in params.items() if k != "hyper"}))
        return self.inner(scorer, params, heldout, **kw)


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_same(a, b) -> None:
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("n", [1, 3])
def test_result_params_are_those_of_the_selected_evaluation(split, n):
    cap = Capture(CFG, split)
    keys = jax.random.split(jax.random.key(0), n) if n > 1 else jax.random.key(0)
    results = make_train(CFG, split, evaluate=cap)(keys)
    results = results if n > 1 else [results]
    assert len(cap.seen) == CFG.trainer.epochs
    early = 0
    for i, r in enumerate(results):
        at = cap.seen[r.selected]
        _assert_same(r.params, jax.tree.map(lambda x, i=i: x[i], at) if n > 1 else at)
        if r.selected < len(r.history) - 1:
            early += 1
            last = cap.seen[-1]
            last = jax.tree.map(lambda x, i=i: x[i], last) if n > 1 else last
            assert any(
                not np.array_equal(x, y)
                for x, y in zip(_leaves(r.params), _leaves(last), strict=True)
            )
    assert early, "every trial selected its last epoch: the test would not see a difference"


class Stop(Exception):
    pass


def test_a_resumed_run_returns_the_params_an_uninterrupted_one_selects(split, tmp_path):
    keys = jax.random.split(jax.random.key(1), 2)
    train = make_train(CFG, split, evaluate=make_evaluate(CFG, split))
    whole = train(keys, ckpt_dir=tmp_path / "whole")
    stop_at = max(r.selected for r in whole) + 2  # after the best, before the end

    def log(step, scalars):
        if step == stop_at:
            raise Stop

    with pytest.raises(Stop):
        train(keys, ckpt_dir=tmp_path / "cut", log=log)
    again = train(keys, ckpt_dir=tmp_path / "cut")
    assert again[0].resumed_from is not None
    for a, b in zip(whole, again, strict=True):
        assert a.history == b.history and a.selected == b.selected
        _assert_same(a.params, b.params)


def _prefix_best(history: list[dict], metric: str = "rmse") -> int:
    vals = [h["valid"][metric] for h in history]
    return int(np.argmin(vals))  # first on ties, as select_best


def test_patience_stops_a_trial_after_that_many_evaluations_without_a_better_one(split):
    full = make_train(CFG, split, evaluate=make_evaluate(CFG, split))(jax.random.key(0))
    cfg = C.override(CFG, "trainer.patience", "2")
    cap = Capture(cfg, split)
    r = make_train(cfg, split, evaluate=cap)(jax.random.key(0))
    n = len(r.history)
    assert r.history == full.history[:n]  # the same epochs, cut short
    best = _prefix_best(full.history[:n])
    assert r.selected == best and n == best + 3 < len(full.history)
    # each evaluation before the stop but the last two improved on nothing older than best
    assert all(_prefix_best(full.history[: k + 1]) == best for k in range(best, n))
    assert len(cap.seen) == n  # training ended with the stop
    _assert_same(r.params, cap.seen[best])


def test_patience_stops_vmapped_trials_as_each_alone(split):
    cfg = C.override(C.override(CFG, "trainer.patience", "1"), "trainer.lr", "0.2")
    train = make_train(cfg, split, evaluate=make_evaluate(cfg, split))
    keys = jax.random.split(jax.random.key(2), 3)
    together = train(keys)
    alone = [train(k) for k in keys]
    assert len({len(r.history) for r in together}) > 1, "the trials should stop at other epochs"
    for a, b in zip(together, alone, strict=True):
        assert len(a.history) == len(b.history) and a.selected == b.selected
        va, vb = ([h["valid"]["rmse"] for h in r.history] for r in (a, b))
        np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-6)  # vmap: ulps apart
        for x, y in zip(_leaves(a.params), _leaves(b.params), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)  # ulps, over 10+ epochs


def test_patience_must_be_a_count():
    with pytest.raises(C.ConfigError, match="trainer.patience"):
        C.override(CFG, "trainer.patience", "-1")


def test_the_run_folder_says_which_seeds_stopped_early(tmp_path):
    from transferjax.train.run import run

    cfg = C.apply_overrides(CFG, ["trainer.patience=2", "seeds=2", "trainer.vmap=on"])
    m = run(cfg, out_dir=tmp_path / "run", echo=lambda *_: None, progress=False)
    summary = (tmp_path / "run" / "summary.txt").read_text()
    for s in m["seeds"]:
        last = s["history"][-1]["epoch"]
        assert s["stopped_early"] == (last < CFG.trainer.epochs)
        assert s["selected"]["index"] == len(s["history"]) - 3 or not s["stopped_early"]
        said = f"seed {s['seed']}: selected stage=target_mf epoch={s['selected']['epoch']} "
        assert (said + f"by valid rmse (stopped early after epoch {last})" in summary) == (
            s["stopped_early"]
        )
    assert any(s["stopped_early"] for s in m["seeds"])


def test_keep_selected_off_returns_the_last_epochs_params_and_the_same_selection(split, tmp_path):
    on = make_train(CFG, split, evaluate=make_evaluate(CFG, split))(jax.random.key(0))
    cfg = C.override(CFG, "trainer.keep_selected", "off")
    cap = Capture(cfg, split)
    train = make_train(cfg, split, evaluate=cap)
    off = train(jax.random.key(0), ckpt_dir=tmp_path / "ckpt")
    assert off.history == on.history and off.selected == on.selected < len(on.history) - 1
    _assert_same(off.params, cap.seen[-1])
    again = train(jax.random.key(0), ckpt_dir=tmp_path / "ckpt")  # resumes from the last one
    assert again.resumed_from is not None and again.history == off.history
    assert train.stage_structures(1) != make_train(
        CFG, split, evaluate=make_evaluate(CFG, split)
    ).stage_structures(1)
