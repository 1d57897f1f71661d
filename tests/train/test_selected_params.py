"""A result holds the params of its selected evaluation, not the last epoch's: against a copy
taken when that evaluation ran, for one trial and for vmapped trials, and through an
interrupted and resumed run. Early stopping (`trainer.patience`) ends a trial that many
evaluations after its selected one, vmapped trials each where it would end alone. The test
split, scored once on the selected params (`eval.curves=select`), gives what scoring it at
every evaluation gives at the selected one."""

import jax
import numpy as np
import pytest

from tests.faults import TINY
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import ConfigError, DivergenceError
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
    # every metric at every evaluation: each valid call of the evaluator is one evaluation
    ["mf.dim=8", "mf.reg=0", "eval.curves=all"],
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


@pytest.mark.parametrize("n", [1, pytest.param(3, marks=pytest.mark.slow)])  # 3: vmapped trials
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_patience_stops_a_trial_after_that_many_evaluations_without_a_better_one(split):
    every = CFG
    full = make_train(every, split, evaluate=make_evaluate(every, split))(jax.random.key(0))
    cfg = C.override(every, "trainer.patience", "2")
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_keep_selected_off_returns_the_last_epochs_params_and_the_same_selection(split, tmp_path):
    every = CFG  # (eval.curves=select: needs the selected params kept)
    on = make_train(every, split, evaluate=make_evaluate(every, split))(jax.random.key(0))
    cfg = C.override(every, "trainer.keep_selected", "off")
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


class Counting:
    """The run's evaluator, counting its test-split calls and recording the families asked of
    each valid call; `nan_test`: every test metric NaN."""

    def __init__(self, cfg, split, *, nan_test=False):
        self.inner, self.split = make_evaluate(cfg, split), split
        self.tests, self.nan_test, self.asked = 0, nan_test, []
        self.family_of = self.inner.family_of  # (the trainer narrows what it asks by it)

    def metric_names(self):
        return self.inner.metric_names()

    def __call__(self, scorer, params, heldout, **kw):
        got = self.inner(scorer, params, heldout, **kw)
        if heldout is self.split.valid:
            self.asked.append(kw.get("families"))
        if heldout is self.split.test:
            self.tests += 1
            if self.nan_test:
                got = {k: float("nan") for k in got}
        return got


RANKED = C.apply_overrides(  # sampled and full ranking, selected on the sampled family
    CFG, ["data.synthetic.implicit=true", "protocol.n_negatives=5", "eval.ranking=both"]
)


@pytest.fixture(scope="module")
def ranked_split():
    return build_split(RANKED.protocol, build_dataset(RANKED.data))


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 3])
def test_every_metric_scored_once_on_the_selected_params_as_at_every_evaluation(ranked_split, n):
    keys = jax.random.split(jax.random.key(0), n) if n > 1 else jax.random.key(0)
    runs = {}
    for mode in ("all", "select"):
        cfg = C.override(RANKED, "eval.curves", mode)
        ev, logged = Counting(cfg, ranked_split), []
        train = make_train(cfg, ranked_split, evaluate=ev)
        got = train(keys, log=lambda *a, out=logged: out.append(a))
        runs[mode] = (got if n > 1 else [got], ev, logged)
    (every, ev_all, _), (sel, ev_sel, logged) = runs["all"], runs["select"]
    assert every[0].select_metric == "ndcg@10"
    assert ev_all.tests == len(every[0].history) and ev_sel.tests == 1  # n trials: one call
    assert ev_sel.asked == [("sampled",)] * len(sel[0].history) + [None]  # then every family
    assert any(b.selected < len(b.history) - 1 for b in sel)  # not only the last epoch
    sampled = {k for k in every[0].best["valid"] if not k.startswith("full_")}
    for i, (a, b) in enumerate(zip(every, sel, strict=True)):
        assert a.selected == b.selected
        assert b.best["valid"] == a.best["valid"] and b.best["test"] == a.best["test"]
        others = [h for j, h in enumerate(b.history) if j != b.selected]
        assert all("test" not in h and set(h["valid"]) == sampled for h in others)
        assert [{k: h["valid"][k] for k in sampled} for h in a.history] == [
            {k: h["valid"][k] for k in sampled} for h in b.history
        ]
        prefix = f"trial{i}/" if n > 1 else ""
        for key in ("test/full_ndcg@10", "valid/full_ndcg@10", "valid/ndcg@10"):
            steps = [step for step, scalars in logged if prefix + key in scalars]
            want = [b.best["step"]] if "full" in key else [h["step"] for h in b.history]
            assert steps == want, key


@pytest.mark.parametrize("on_nonfinite", ["fail", "raise"])
def test_a_non_finite_test_score_at_the_selected_params_is_a_divergence(split, on_nonfinite):
    cfg = C.apply_overrides(CFG, [f"trainer.on_nonfinite={on_nonfinite}", "eval.curves=select"])
    train = make_train(cfg, split, evaluate=Counting(cfg, split, nan_test=True))
    if on_nonfinite == "raise":
        with pytest.raises(DivergenceError, match="test mae is nan"):
            train(jax.random.key(0))
        return
    r = train(jax.random.key(0))
    assert r.status == "failed" and r.selected is None and r.failure["reason"] == "test mae is nan"


def test_test_at_the_selected_params_needs_them_kept(split):
    cfg = C.apply_overrides(CFG, ["trainer.keep_selected=off", "eval.curves=select"])
    with pytest.raises(ConfigError, match="eval.curves=select .* trainer.keep_selected=off"):
        make_train(cfg, split, evaluate=make_evaluate(cfg, split))
