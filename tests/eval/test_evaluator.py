"""transferjax.train.evaluate: the planned, compiled evaluator of a split against the host-loop
reference functions, its batched (vmapped) trials against one trial at a time, and no retrace
across evaluations."""

import collections
import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import pytest

from tests.eval.test_compiled import assert_same_metrics
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.eval.ranking import full_ranking, rating_eval, sampled_ranking
from transferjax.methods.api import Scorer
from transferjax.methods.mf import MFConfig
from transferjax.methods.registry import get_method
from transferjax.train.evaluate import make_evaluate, make_evaluator

SYN = C.SyntheticConfig(
    n_overlap=300,
    n_source_only=50,
    n_target_only=50,
    n_items_source=120,
    n_items_target=90,
    density_target=0.08,
    seed=5,
)


def _cfg(**eval_kw):
    return C.RunConfig(
        method="mf",
        data=C.DataConfig(name="synthetic", synthetic=SYN),
        protocol=C.ProtocolConfig(beta=0.3, n_negatives=20, seed=1),
        # 16 users per chunk: the valid and test sets span several chunks, the last partial
        eval=C.EvalConfig(
            **{"ranking": "both", "ks": (1, 5, 10), "chunk_size": 16, "groups": "off", **eval_kw}
        ),
        mf=MFConfig(dim=8),
    )


@pytest.fixture(scope="module")
def setup():
    cfg = _cfg()
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    built = get_method("mf").build(cfg, split)
    return cfg, split, built.scorer, [built.view(built.init(jax.random.key(i))) for i in range(3)]


def _reference(cfg, split, scorer, params, heldout):
    """What `make_evaluate` computed before plans: the host-loop functions chunk by chunk."""
    ec = cfg.eval
    out = rating_eval(
        lambda s, t, i: scorer.rating(params, s, t, i), heldout, chunk_size=max(ec.chunk_size, 4096)
    )
    out.update(
        sampled_ranking(
            lambda s, t, i: scorer.score_items(params, s, t, i),
            heldout,
            ks=ec.ks,
            chunk_size=ec.chunk_size,
        )
    )
    full = full_ranking(
        lambda s, t: scorer.score_all(params, s, t),
        heldout,
        exclude=heldout.exclude,
        n_items=split.target_train.n_items,
        ks=ec.ks,
        chunk_size=ec.chunk_size,
    )
    out.update({f"full_{k}": v for k, v in full.items()})
    return out


def _as_counts(d):
    """The evaluator's floats with the counts as ints, as the reference functions return."""
    return {k: int(v) if k.endswith(("n_users", "n_interactions")) else v for k, v in d.items()}


@pytest.mark.slow
def test_equals_the_reference_functions(setup):
    cfg, split, scorer, params = setup
    evaluate = make_evaluate(cfg, split)
    assert len(split.valid.pairs) > 2 * cfg.eval.chunk_size
    for p in params[:2]:
        for heldout in (split.valid, split.test):
            got = evaluate(scorer, p, heldout)
            assert all(isinstance(v, float) for v in got.values())
            assert_same_metrics(_as_counts(got), _reference(cfg, split, scorer, p, heldout))
    assert evaluate(scorer, params[0], "test") == evaluate(scorer, params[0], split.test)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@pytest.mark.slow
def test_batched_trials_equal_each_trial(setup):
    cfg, split, scorer, params = setup
    evaluate = make_evaluate(cfg, split)
    for heldout in ("valid", split.test):
        batched = evaluate.batched(scorer, _stack(params), heldout)
        assert len(batched) == len(params)
        for got, p in zip(batched, params, strict=True):
            assert_same_metrics(_as_counts(got), _as_counts(evaluate(scorer, p, heldout)))
    assert evaluate(scorer, _stack(params), split.test, batched=True) == batched


def _counting(scorer, traces):
    def wrap(name, fn):
        def traced(*args):
            traces[name] += 1  # runs only while jax traces
            return fn(*args)

        return traced

    return Scorer(
        score_items=wrap("score_items", scorer.score_items),
        score_all=wrap("score_all", scorer.score_all),
    )


def test_evaluating_again_does_not_retrace(setup):
    cfg, split, scorer, params = setup
    traces = collections.Counter()
    counted = _counting(scorer, traces)
    evaluate = make_evaluate(cfg, split)
    for batched, ps in ((False, params), (True, [_stack(params), _stack(params[::-1])])):
        for heldout in ("valid", "test"):
            evaluate(counted, ps[0], heldout, batched=batched)
            after_first = dict(traces)
            evaluate(counted, ps[1], heldout, batched=batched)  # other values, same shapes
            assert dict(traces) == after_first, (batched, heldout)
    # valid and test are planned to one shape per family, so one trace per family and program
    # (plain, vmapped): rating and sampled ranking score candidates, full ranking all items
    assert traces == {"score_items": 2 * 2, "score_all": 1 * 2}


@pytest.mark.slow
def test_other_heldout_and_errors(setup):
    cfg, split, scorer, params = setup
    evaluator = make_evaluator(cfg, split)
    other = dataclasses.replace(split.test)  # equal contents, another object: planned anew
    assert evaluator.plans_of(other) is not evaluator.plans_of(split.test)
    assert evaluator.plans_of(other) is evaluator.plans_of(other)
    assert evaluator(scorer, params[0], other) == evaluator(scorer, params[0], split.test)
    with pytest.raises(ValueError, match="unknown held-out set"):
        evaluator(scorer, params[0], "train")
    nan = Scorer(
        score_items=lambda p, s, t, i: scorer.score_items(p, s, t, i) * jnp.nan,
        score_all=lambda p, s, t: scorer.score_all(p, s, t) * jnp.nan,
    )
    with pytest.raises(ValueError, match=r"returned \d+ NaN scores$"):
        evaluator(nan, params[0], "valid")
    scale = [1.0, float("nan"), 1.0]
    half_nan = Scorer(
        score_items=lambda p, s, t, i: scorer.score_items(p, s, t, i) * p["scale"],
        score_all=lambda p, s, t: scorer.score_all(p, s, t) * p["scale"],
    )
    trials = _stack([{**p, "scale": jnp.float32(c)} for p, c in zip(params, scale, strict=True)])
    with pytest.raises(ValueError, match=r"NaN scores \(trial 1: \d+\)"):
        evaluator.batched(half_nan, trials, "valid")


def test_families_follow_the_config(setup):
    _, split, scorer, params = setup
    only_full = make_evaluate(_cfg(ranking="full", rating="off"), split)
    got = only_full(scorer, params[0], split.valid)
    assert set(got) == {k for k in got if k.startswith("full_")} and "full_ndcg@10" in got
    rating = make_evaluate(_cfg(ranking="none"), split)(scorer, params[0], split.valid)
    assert set(rating) == {"mae", "rmse"}
    with pytest.raises(ValueError, match="exceeds"):
        make_evaluate(_cfg(ks=(1, 1000)), split)


def test_asked_families_are_those_of_a_full_evaluation(setup):
    cfg, split, scorer, params = setup
    evaluate = make_evaluate(cfg, split)
    whole = evaluate(scorer, params[0], split.valid)
    for fams in [("sampled",), ("full",), ("rating",), ("sampled", "full"), ()]:
        got = evaluate(scorer, params[0], split.valid, families=fams)
        names = {"rating": ("mae", "rmse")}
        want = {
            k: v
            for k, v in whole.items()
            if ("full" in fams and k.startswith("full_"))
            or ("rating" in fams and k in names["rating"])
            or ("sampled" in fams and not k.startswith("full_") and k not in names["rating"])
        }
        assert got == want, fams
    with pytest.raises(ValueError, match="each one of"):
        evaluate(scorer, params[0], split.valid, families=("ful",))


@pytest.mark.slow
def test_prepare_runs_once_per_evaluation_outside_the_chunk_loop(setup):
    """`Scorer.prepare`'s entries reach every chunk's scorer; the evaluation equals the same
    scorer without `prepare` (which computes the entry per call), and in the traced program the
    prepared work (a sinh here) sits outside the loop over chunks."""
    cfg, split, scorer, params = setup

    def shift(v):  # a per-evaluation table every chunk reads: one offset per item
        return 0.1 * jnp.sinh(v["target"]["item"][:, 0])

    def offset(v):
        return v["shift"] if "shift" in v else shift(v)

    plain = Scorer(
        score_items=lambda v, s, t, i: scorer.score_items(v, s, t, i) + offset(v)[i],
        score_all=lambda v, s, t: scorer.score_all(v, s, t) + offset(v)[None],
    )
    prepared = dataclasses.replace(plain, prepare=lambda v: {"shift": shift(v)})
    evaluate = make_evaluate(cfg, split)
    for heldout in ("valid", "test"):
        assert_same_metrics(
            _as_counts(evaluate(prepared, params[0], heldout)),
            _as_counts(evaluate(plain, params[0], heldout)),
        )
    with pytest.raises(ValueError, match="keys the view has"):
        dataclasses.replace(plain, prepare=lambda v: {"target": 0}).prepared(params[0])

    def sinhs(jaxpr, inside):  # (outside any loop, inside a loop body)
        out = [0, 0]
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "sinh":
                out[inside] += 1
            loop = eqn.primitive.name in ("scan", "while")
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                o, i = sinhs(sub, inside or loop)
                out[0], out[1] = out[0] + o, out[1] + i
        return out

    evaluator = make_evaluator(cfg, split)
    plan = evaluator.plans_of(split.test)["full"][0]
    program = evaluator.programs_of(prepared)["full"][0]
    jaxpr = jax.make_jaxpr(program)(params[0], {}, plan).jaxpr
    assert sinhs(jaxpr, False) == [1, 0]
    program = evaluator.programs_of(plain)["full"][0]
    assert sinhs(jax.make_jaxpr(program)(params[0], {}, plan).jaxpr, False) == [0, 1]
