"""Tests for transferjax.eval.ranking against brute-force numpy loops over users."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.data.types import HeldOut, Interactions
from transferjax.eval import metrics, ranking

N_TGT, N_SRC, N_ITEMS, N_NEG = 23, 9, 40, 6


def _fixture(seed, *, ties=False):
    """Scores, a HeldOut (1..5 positives per user, some rows unevaluated) and train items."""
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many ties
        table = rng.integers(0, 3, size=(N_TGT, N_ITEMS)).astype(np.float32)
        src_w = np.zeros(N_SRC + 1, np.float32)
    else:
        table = rng.normal(size=(N_TGT, N_ITEMS)).astype(np.float32)
        src_w = rng.normal(size=N_SRC + 1).astype(np.float32)  # index 0 for source user -1
    n_pairs = 19
    tgt_users = rng.permutation(N_TGT)[:n_pairs].astype(np.int32)
    src_users = rng.integers(-1, N_SRC, size=n_pairs).astype(np.int32)
    pairs = np.stack([src_users, tgt_users], 1)
    rows, items, tr_users, tr_items = [], [], [], []
    for r in range(n_pairs):
        perm = rng.permutation(N_ITEMS)
        n_pos = 0 if r % 6 == 5 else (1 if r % 3 == 0 else int(rng.integers(2, 6)))
        rows += [r] * n_pos
        items += list(perm[:n_pos])
        n_tr = int(rng.integers(0, 8))
        tr_users += [tgt_users[r]] * n_tr
        tr_items += list(perm[n_pos : n_pos + n_tr])
    negs = []
    for r in rows:  # negatives: not this user's positive or training item
        own = set(np.array(items)[np.array(rows) == r]) | set(
            np.array(tr_items)[np.array(tr_users) == tgt_users[r]]
        )
        pool = np.array([j for j in range(N_ITEMS) if j not in own])
        negs.append(rng.choice(pool, size=N_NEG, replace=False))
    ho = HeldOut(
        pairs=pairs,
        row=rows,
        item=items,
        rating=rng.integers(1, 6, size=len(rows)),
        negatives=np.array(negs),
    )
    ex = Interactions(
        user=tr_users,
        item=tr_items,
        rating=np.ones(len(tr_users)),
        n_users=N_TGT,
        n_items=N_ITEMS,
        name="target_train",
    )
    return table, src_w, ho, ex


def _score_np(table, src_w, src, tgt):
    return table[tgt] + 0.1 * src_w[src + 1][:, None]


def _score_fn(table, src_w):
    t, w = jnp.asarray(table), jnp.asarray(src_w)
    return lambda src, tgt: t[tgt] + 0.1 * w[src + 1][:, None]


def _train_items(ex, tgt):
    return set(ex.item[ex.user == tgt].tolist())


def _ref_full(table, src_w, ho, ex, ks):
    """Stable sort of -scores (ties: lower item index first), then metrics per user."""
    hits, n_rel = [], []
    for r in np.unique(ho.row):
        src, tgt = ho.pairs[r]
        s = _score_np(table, src_w, np.array([src]), np.array([tgt]))[0].astype(np.float64)
        s[list(_train_items(ex, tgt))] = -np.inf
        top = np.argsort(-s, kind="stable")[: max(ks)]
        pos = set(ho.item[ho.row == r].tolist())
        hits.append([j in pos and np.isfinite(s[j]) for j in top])
        n_rel.append(len(pos))
    out = {}
    for k in ks:
        p, rec, f1, hr, nd = [], [], [], [], []
        for h, nr in zip(hits, n_rel, strict=True):
            hk = sum(h[:k])
            p.append(hk / k)
            rec.append(hk / nr)
            f1.append(2 * p[-1] * rec[-1] / (p[-1] + rec[-1]) if hk else 0.0)
            hr.append(float(hk > 0))
            dcg = sum(1 / math.log2(i + 2) for i in range(k) if h[i])
            nd.append(dcg / sum(1 / math.log2(i + 2) for i in range(min(nr, k))))
        for name, v in zip(
            ("precision", "recall", "f1", "hr", "ndcg"), (p, rec, f1, hr, nd), strict=True
        ):
            out[f"{name}@{k}"] = float(np.mean(v))
    out["mrr"] = float(
        np.mean([next((1 / (i + 1) for i, x in enumerate(h) if x), 0.0) for h in hits])
    )
    out["n_users"] = len(hits)
    return out


def _ref_ranks(table, src_w, ho, ex, pessimistic):
    ranks = []
    for r, it in zip(ho.row, ho.item, strict=True):
        src, tgt = ho.pairs[r]
        s = _score_np(table, src_w, np.array([src]), np.array([tgt]))[0]
        skip = _train_items(ex, tgt) | set(ho.item[ho.row == r].tolist())
        comp = np.array([s[j] for j in range(N_ITEMS) if j not in skip])
        ranks.append(int(np.sum(comp >= s[it] if pessimistic else comp > s[it])))
    return np.array(ranks)


def _assert_dicts_close(got, ref):
    assert set(got) == set(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 1024])
def test_full_ranking_matches_brute_force(seed, chunk_size):
    table, src_w, ho, ex = _fixture(seed)
    ks = (1, 5, 10)
    got = ranking.full_ranking(
        _score_fn(table, src_w), ho, exclude=ex, n_items=N_ITEMS, ks=ks, chunk_size=chunk_size
    )
    _assert_dicts_close(got, _ref_full(table, src_w, ho, ex, ks))
    assert got["n_users"] == len(np.unique(ho.row)) < len(ho.pairs)


def test_full_ranking_ties_lower_index_first_and_no_exclusion():
    table, src_w, ho, ex = _fixture(3, ties=True)
    no_ex = Interactions(user=[], item=[], rating=[], n_users=N_TGT, n_items=N_ITEMS)
    for exclude, ref_ex in ((ex, ex), (None, no_ex)):
        got = ranking.full_ranking(
            _score_fn(table, src_w), ho, exclude=exclude, n_items=N_ITEMS, ks=(3, 8), chunk_size=5
        )
        _assert_dicts_close(got, _ref_full(table, src_w, ho, ref_ex, (3, 8)))


def test_exclusion_matters():
    # the user's training items top the scores: excluded they cannot take the top slots
    table = np.zeros((2, 6), np.float32)
    table[0] = [5.0, 4.0, 3.0, 0.0, 0.0, 0.0]
    ho = HeldOut(pairs=[[-1, 0]], row=[0], item=[2], rating=[1.0])
    ex = Interactions(user=[0, 0], item=[0, 1], rating=[1, 1], n_users=2, n_items=6)
    fn = _score_fn(table, np.zeros(1, np.float32))
    assert ranking.full_ranking(fn, ho, exclude=ex, n_items=6, ks=(1,))["hr@1"] == 1.0
    assert ranking.full_ranking(fn, ho, exclude=None, n_items=6, ks=(1,))["hr@1"] == 0.0
    assert ranking.full_ranking_ranks(fn, ho, exclude=ex, n_items=6).tolist() == [0]
    assert ranking.full_ranking_ranks(fn, ho, exclude=None, n_items=6).tolist() == [2]


def test_full_ranking_hand_example():
    # scores [.1, .9, .5, .7], item 1 trained: list [3, 2, 0]; positive 2 is 2nd
    table = np.array([[0.1, 0.9, 0.5, 0.7]], np.float32)
    ho = HeldOut(pairs=[[-1, 0]], row=[0], item=[2], rating=[1.0])
    ex = Interactions(user=[0], item=[1], rating=[1.0], n_users=1, n_items=4)
    fn = _score_fn(table, np.zeros(1, np.float32))
    out = ranking.full_ranking(fn, ho, exclude=ex, n_items=4, ks=(1, 2))
    assert out["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert out["hr@1"] == 0.0 and out["mrr"] == pytest.approx(0.5) and out["n_users"] == 1
    ranks = ranking.full_ranking_ranks(fn, ho, exclude=ex, n_items=4)
    assert ranks.tolist() == [1]
    assert metrics.rank_metrics_from_ranks(ranks, ks=(2,))["ndcg@2"] == pytest.approx(
        1 / math.log2(3)
    )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 6, 1024])
def test_full_ranking_ranks_match_brute_force(seed, ties, chunk_size):
    table, src_w, ho, ex = _fixture(seed, ties=ties)
    for rule in ("pessimistic", "optimistic"):
        got = ranking.full_ranking_ranks(
            _score_fn(table, src_w),
            ho,
            exclude=ex,
            n_items=N_ITEMS,
            chunk_size=chunk_size,
            ties=rule,
        )
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, _ref_ranks(table, src_w, ho, ex, rule == "pessimistic"))


def test_repeated_target_user_rows():
    # two pairs rows with the same target user (different source users) both get its exclusion
    table, src_w, ho, ex = _fixture(4)
    pairs = ho.pairs.copy()
    pairs[1, 1] = pairs[0, 1]
    ho2 = HeldOut(pairs=pairs, row=ho.row, item=ho.item, rating=ho.rating)
    fn = _score_fn(table, src_w)
    got = ranking.full_ranking(fn, ho2, exclude=ex, n_items=N_ITEMS, ks=(5,), chunk_size=3)
    _assert_dicts_close(got, _ref_full(table, src_w, ho2, ex, (5,)))
    np.testing.assert_array_equal(
        ranking.full_ranking_ranks(fn, ho2, exclude=ex, n_items=N_ITEMS, chunk_size=3),
        _ref_ranks(table, src_w, ho2, ex, True),
    )


def _items_fn(table, src_w):
    base = _score_fn(table, src_w)
    return lambda src, tgt, items: jnp.take_along_axis(base(src, tgt), items, axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.slow
def test_sampled_ranking_matches_brute_force(seed, ties):
    table, src_w, ho, _ = _fixture(seed, ties=ties)
    ks = (1, 3, 5)
    for rule in ("pessimistic", "optimistic"):
        ranks = []
        for src, tgt, it, neg in zip(
            ho.source_user, ho.target_user, ho.item, ho.negatives, strict=True
        ):
            s = _score_np(table, src_w, np.array([src]), np.array([tgt]))[0]
            ranks.append(
                np.sum(s[neg] >= s[it]) if rule == "pessimistic" else np.sum(s[neg] > s[it])
            )
        ref = metrics.rank_metrics_from_ranks(np.array(ranks), ks=ks)
        ref["n_interactions"] = len(ho)
        for chunk_size in (1, 5, 4096):
            got = ranking.sampled_ranking(
                _items_fn(table, src_w), ho, ks=ks, chunk_size=chunk_size, ties=rule
            )
            _assert_dicts_close(got, ref)


def test_constant_scores_tie_rules():
    # every score equal: pessimistic ranks the positive last, optimistic first
    table, src_w, ho, ex = _fixture(0)
    const = lambda src, tgt, items: jnp.zeros(items.shape, jnp.float32)  # noqa: E731
    assert ranking.sampled_ranking(const, ho, ks=(1,))["hr@1"] == 0.0
    assert ranking.sampled_ranking(const, ho, ks=(1,), ties="optimistic")["hr@1"] == 1.0
    fn = lambda src, tgt: jnp.zeros((src.shape[0], N_ITEMS), jnp.float32)  # noqa: E731
    r = ranking.full_ranking_ranks(fn, ho, exclude=ex, n_items=N_ITEMS)
    np.testing.assert_array_equal(r, _ref_ranks(np.zeros_like(table), 0 * src_w, ho, ex, True))
    assert np.all(
        ranking.full_ranking_ranks(fn, ho, exclude=ex, n_items=N_ITEMS, ties="optimistic") == 0
    )


def test_rating_eval_matches_numpy():
    table, src_w, ho, _ = _fixture(1)
    base = _score_fn(table, src_w)
    pred = lambda src, tgt, item: 3.0 + base(src, tgt)[jnp.arange(src.shape[0]), item]  # noqa: E731
    p = 3.0 + _score_np(table, src_w, ho.source_user, ho.target_user)[np.arange(len(ho)), ho.item]
    for chunk_size in (1, 7, 8192):
        out = ranking.rating_eval(pred, ho, chunk_size=chunk_size)
        assert out["mae"] == pytest.approx(np.mean(np.abs(p - ho.rating)), rel=1e-5)
        assert out["rmse"] == pytest.approx(np.sqrt(np.mean((p - ho.rating) ** 2)), rel=1e-5)


def test_jitted_model_functions_trace_once():
    table, src_w, ho, ex = _fixture(2)
    base, items_fn = _score_fn(table, src_w), _items_fn(table, src_w)
    score = jax.jit(chex.assert_max_traces(lambda s, t: base(s, t), n=1))
    ranking.full_ranking(score, ho, exclude=ex, n_items=N_ITEMS, ks=(5,), chunk_size=4)
    ranking.full_ranking_ranks(score, ho, exclude=ex, n_items=N_ITEMS, chunk_size=4)
    sampled = jax.jit(chex.assert_max_traces(lambda s, t, i: items_fn(s, t, i), n=1))
    ranking.sampled_ranking(sampled, ho, chunk_size=7)  # 7 does not divide len(ho)
    predict = jax.jit(
        chex.assert_max_traces(lambda s, t, i: base(s, t)[jnp.arange(s.shape[0]), i], n=1)
    )
    ranking.rating_eval(predict, ho, chunk_size=7)


def test_bad_inputs():
    table, src_w, ho, ex = _fixture(0)
    fn = _score_fn(table, src_w)
    no_neg = HeldOut(pairs=ho.pairs, row=ho.row, item=ho.item, rating=ho.rating)
    with pytest.raises(ValueError, match="negatives is None"):
        ranking.sampled_ranking(_items_fn(table, src_w), no_neg)
    with pytest.raises(ValueError, match="shape"):
        ranking.full_ranking(lambda s, t: fn(s, t)[:, :-1], ho, exclude=ex, n_items=N_ITEMS)
    with pytest.raises(ValueError, match="NaN"):
        ranking.full_ranking(lambda s, t: fn(s, t) * jnp.nan, ho, exclude=ex, n_items=N_ITEMS)
    with pytest.raises(ValueError, match="NaN"):
        ranking.full_ranking_ranks(lambda s, t: fn(s, t) * jnp.nan, ho, exclude=ex, n_items=N_ITEMS)
    with pytest.raises(ValueError, match="exceeds"):
        ranking.full_ranking(fn, ho, exclude=ex, n_items=N_ITEMS, ks=(N_ITEMS + 1,))
    with pytest.raises(ValueError, match="ties"):
        ranking.full_ranking_ranks(fn, ho, exclude=ex, n_items=N_ITEMS, ties="mean")
    with pytest.raises(ValueError, match="chunk_size"):
        ranking.rating_eval(lambda s, t, i: t, ho, chunk_size=0)


def test_minus_inf_items_never_count_as_hits():
    # fewer finite scores than K: top_k fills the list with -inf items, which are not hits
    table = np.array([[1.0, -np.inf, 0.5, -np.inf]], np.float32)
    ho = HeldOut(pairs=[[-1, 0]], row=[0], item=[1], rating=[1.0])
    fn = _score_fn(table, np.zeros(1, np.float32))
    out = ranking.full_ranking(fn, ho, exclude=None, n_items=4, ks=(4,))
    assert out["hr@4"] == 0.0 and out["mrr"] == 0.0
    # its filtered rank counts every competitor (pessimistic), including the other -inf item
    assert ranking.full_ranking_ranks(fn, ho, exclude=None, n_items=4).tolist() == [3]
