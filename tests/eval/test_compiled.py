"""The compiled plan path (transferjax.eval.plan + compiled) against the host-loop reference
functions of transferjax.eval.ranking, on small random cases.

The two agree exactly on every count (hits, ranks, users, interactions) and on the means up to
float32 summation order: a tolerance of 1e-6 relative, while one hit or rank more or less over
these few rows would move a mean by 1/n >= 1e-2."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.data.types import HeldOut, Interactions
from transferjax.eval import compiled, plan, ranking

N_TGT, N_SRC, N_ITEMS, N_NEG = 17, 6, 40, 5


def make_case(seed, *, ties=False, n_pairs=23):
    """(params, HeldOut, train Interactions): target users repeated over several pairs rows,
    rows without held-out items, a duplicated held-out item, 0..7 training items per user."""
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many ties
        table = rng.integers(0, 3, size=(N_TGT, N_ITEMS)).astype(np.float32)
        src_w = np.zeros(N_SRC + 1, np.float32)
    else:
        table = rng.normal(size=(N_TGT, N_ITEMS)).astype(np.float32)
        src_w = rng.normal(size=N_SRC + 1).astype(np.float32)
    tgt = rng.integers(0, N_TGT, size=n_pairs).astype(np.int32)  # repeats on purpose
    src = rng.integers(-1, N_SRC, size=n_pairs).astype(np.int32)
    rows, items = [], []
    for r in range(n_pairs):
        n_pos = 0 if r % 5 == 4 else int(rng.integers(1, 5))
        rows += [r] * n_pos
        items += list(rng.choice(N_ITEMS, size=n_pos, replace=False))
    rows.append(rows[0])  # one held-out item twice: it counts once in n_rel
    items.append(items[0])
    tr_u = np.repeat(np.arange(N_TGT), rng.integers(0, 8, size=N_TGT))
    tr_i = rng.integers(0, N_ITEMS, size=len(tr_u))
    ho = HeldOut(
        pairs=np.stack([src, tgt], 1),
        row=rows,
        item=items,
        rating=rng.integers(1, 6, size=len(rows)),
        negatives=rng.integers(0, N_ITEMS, size=(len(rows), N_NEG)),
    )
    ex = Interactions(
        user=tr_u, item=tr_i, rating=np.ones(len(tr_u)), n_users=N_TGT, n_items=N_ITEMS
    )
    return {"table": jnp.asarray(table), "w": jnp.asarray(src_w)}, ho, ex


def score_all(params, src, tgt):
    return params["table"][tgt] + 0.1 * params["w"][src + 1][:, None]


def score_items(params, src, tgt, items):
    return jnp.take_along_axis(score_all(params, src, tgt), items, axis=1)


def predict(params, src, tgt, item):
    return 3.0 + score_all(params, src, tgt)[jnp.arange(src.shape[0]), item]


def assert_same_metrics(got: dict, ref: dict) -> None:
    """Same keys in the same order, equal counts, means within float32 summation error."""
    assert list(got) == list(ref)
    for k, v in ref.items():
        if k.startswith("n_"):
            assert got[k] == v and isinstance(got[k], int), k
        else:
            assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k


def _floats(d: dict) -> dict:
    return {k: v if isinstance(v, int) else float(v) for k, v in d.items()}


def _full(params, ho, ex, *, ks, chunk_size):
    p = plan.full_plan(ho, exclude=ex, n_items=N_ITEMS, chunk_size=chunk_size)
    sums, n_nan = jax.jit(functools.partial(compiled.full_sums, score_all, ks=ks))(params, p)
    assert int(n_nan) == 0
    return _floats(compiled.finish_full(jax.device_get(sums), plan.n_rows(p)))


@pytest.mark.parametrize(
    "seed, chunk_size, ties", [(0, 1, False), (1, 7, False), (2, 64, False), (3, 3, True)]
)
@pytest.mark.slow
def test_full_means_equal_full_ranking(seed, chunk_size, ties):
    params, ho, ex = make_case(seed, ties=ties)
    for ks, exclude in (((1, 5, 10), ex), ((3,), None), ((2, N_ITEMS), ex)):
        ref = ranking.full_ranking(
            lambda s, t: score_all(params, s, t),  # noqa: B023
            ho,
            exclude=exclude,
            n_items=N_ITEMS,
            ks=ks,
            chunk_size=chunk_size,
        )
        assert_same_metrics(_full(params, ho, exclude, ks=ks, chunk_size=chunk_size), ref)


def test_full_plan_layout():
    # 23 rows, 4 without held-out items: 19 users in chunks of 7, the last with 5 real rows
    params, ho, ex = make_case(0)
    p = plan.full_plan(ho, exclude=ex, n_items=N_ITEMS, chunk_size=7)
    n_users = len(np.unique(ho.row))
    assert plan.n_rows(p) == n_users and p.src.shape == (-(-n_users // 7), 7)
    assert p.n_real.tolist()[-1] == n_users - 7 * (p.src.shape[0] - 1)
    assert int(p.n_rel.sum()) == len(set(zip(ho.row.tolist(), ho.item.tolist(), strict=True)))
    assert p.ex_row.shape == p.ex_item.shape and p.pos_row.shape == p.pos_item.shape
    assert all(isinstance(a, jax.Array) for a in jax.tree_util.tree_leaves(p))


def test_same_shapes_pads_without_changing_results():
    (params, a, ex), (_, b, _) = make_case(0), make_case(1, n_pairs=9)
    plans = [plan.full_plan(h, exclude=ex, n_items=N_ITEMS, chunk_size=4) for h in (a, b)]
    padded = plan.same_shapes(plans)
    shapes = [[x.shape for x in jax.tree_util.tree_leaves(p)] for p in padded]
    assert shapes[0] == shapes[1] and padded[0] is plans[0]  # the larger plan is kept as is
    assert padded[1].src.shape[0] > plans[1].src.shape[0] and plan.n_rows(padded[1]) == 9 - 1
    run = jax.jit(functools.partial(compiled.full_sums, score_all, ks=(1, 5)))
    fin = lambda p: compiled.finish_full(jax.device_get(run(params, p)[0]), plan.n_rows(p))  # noqa: E731
    assert fin(padded[1]) == fin(plans[1])
    assert [plan.fit_chunk(n, 1024) for n in (1, 100, 1303, 2048)] == [8, 104, 656, 1024]


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True)])
@pytest.mark.slow
def test_sampled_means_equal_sampled_ranking(seed, ties):
    params, ho, _ = make_case(seed, ties=ties)
    for rule in plan.TIES:
        for chunk_size, ks in ((1, (1,)), (6, (1, 3, 5)), (4096, (2, 10))):
            ref = ranking.sampled_ranking(
                lambda s, t, i: score_items(params, s, t, i),  # noqa: B023
                ho,
                ks=ks,
                chunk_size=chunk_size,
                ties=rule,
            )
            p = plan.sampled_plan(ho, chunk_size=chunk_size)
            fn = functools.partial(
                compiled.sampled_sums, score_items, ks=ks, pessimistic=rule == "pessimistic"
            )
            sums, n_nan = jax.device_get(jax.jit(fn)(params, p))
            assert int(n_nan) == 0
            assert_same_metrics(_floats(compiled.finish_sampled(sums, len(ho), ks=ks)), ref)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.slow
def test_rating_sums_equal_rating_eval(seed):
    params, ho, _ = make_case(seed)
    for chunk_size in (1, 7, 8192):
        ref = ranking.rating_eval(
            lambda s, t, i: predict(params, s, t, i), ho, chunk_size=chunk_size
        )
        p = plan.rating_plan(ho, chunk_size=chunk_size)
        sums = jax.jit(functools.partial(compiled.rating_sums, predict))(params, p)
        assert_same_metrics(_floats(compiled.finish_rating(sums, plan.n_rows(p))), ref)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def test_vmapped_over_trials_equals_each_trial():
    cases = [make_case(s) for s in (0, 1, 2)]
    _, ho, ex = cases[0]
    batch = _stack([c[0] for c in cases])
    ks = (1, 5)
    fp = plan.full_plan(ho, exclude=ex, n_items=N_ITEMS, chunk_size=4)
    sp = plan.sampled_plan(ho, chunk_size=5)
    rp = plan.rating_plan(ho, chunk_size=6)
    progs = (
        (
            functools.partial(compiled.full_sums, score_all, ks=ks),
            fp,
            lambda out, n: compiled.finish_full(out[0], n),
        ),
        (
            functools.partial(compiled.sampled_sums, score_items, ks=ks, pessimistic=True),
            sp,
            lambda out, n: compiled.finish_sampled(out[0], n, ks=ks),
        ),
        (functools.partial(compiled.rating_sums, predict), rp, compiled.finish_rating),
    )
    for fn, p, finish in progs:
        n = plan.n_rows(p)
        batched = finish(jax.device_get(jax.jit(jax.vmap(fn, in_axes=(0, None)))(batch, p)), n)
        for i, (params, _, _) in enumerate(cases):
            one = _floats(finish(jax.device_get(jax.jit(fn)(params, p)), n))
            got = {k: v if isinstance(v, int) else float(v[i]) for k, v in batched.items()}
            assert_same_metrics(got, one)


def test_scan_traces_the_scorer_once_per_plan():
    traces = []

    def counted(params, src, tgt):
        traces.append(src.shape)
        return score_all(params, src, tgt)

    params, ho, ex = make_case(0)
    p = plan.full_plan(ho, exclude=ex, n_items=N_ITEMS, chunk_size=4)
    run = jax.jit(functools.partial(compiled.full_sums, counted, ks=(5,)))
    first = run(params, p)
    second = run(make_case(1)[0], p)  # other values, same shapes
    assert traces == [(4,)]  # one trace, [chunk] users per scan step
    assert not np.array_equal(first[0]["mrr"], second[0]["mrr"])


def test_errors_match_the_reference():
    params, ho, ex = make_case(0)
    nan_all = lambda prm, s, t: score_all(prm, s, t) * jnp.nan  # noqa: E731
    fp = plan.full_plan(ho, exclude=ex, n_items=N_ITEMS, chunk_size=8)
    _, n_nan = jax.jit(functools.partial(compiled.full_sums, nan_all, ks=(5,)))(params, fp)
    n_bad = len(np.unique(ho.row)) * N_ITEMS  # every score of every real row
    with pytest.raises(ValueError, match=f"returned {n_bad} NaN scores") as ref:
        ranking.full_ranking(
            lambda s, t: nan_all(params, s, t), ho, exclude=ex, n_items=N_ITEMS, chunk_size=8
        )
    assert str(compiled.nan_error(n_nan)) == str(ref.value)
    assert compiled.nan_error(np.int32(0)) is None
    assert "trial 1: 3" in str(compiled.nan_error(np.array([0, 3])))
    short = lambda prm, s, t: score_all(prm, s, t)[:, :-1]  # noqa: E731
    with pytest.raises(ValueError, match="shape"):
        jax.jit(functools.partial(compiled.full_sums, short, ks=(5,)))(params, fp)
    no_neg = HeldOut(pairs=ho.pairs, row=ho.row, item=ho.item, rating=ho.rating)
    with pytest.raises(ValueError, match="negatives is None"):
        plan.sampled_plan(no_neg, chunk_size=4)
    with pytest.raises(ValueError, match="chunk_size"):
        plan.rating_plan(ho, chunk_size=0)
