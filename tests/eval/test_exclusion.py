"""What full and sampled ranking rank, per protocol, against a brute-force numpy reference that
ranks every candidate of every user by hand: valid leaves out the user's training items, test
its training and valid items (RecBole's full-sort mask); sampled negatives are none of the
user's items at all; cold-start users have nothing to leave out."""

import numpy as np
import pytest

from transferjax import config as C
from transferjax.data.protocols import cold_start_split, warm_loo_split, warm_ratio_split
from transferjax.data.types import CrossDomainData, HeldOut, Interactions
from transferjax.eval.ranking import full_ranking
from transferjax.methods.api import Scorer
from transferjax.train.evaluate import make_evaluator

N_USERS, N_ITEMS, KS = 7, 16, (1, 3, 5)


def _data(seed=0, timestamps=False):
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(N_USERS):
        chosen = rng.choice(N_ITEMS, size=5 + u % 5, replace=False)
        users += [u] * len(chosen)
        items += chosen.tolist()
    n = len(users)
    ts = rng.permutation(n) if timestamps else None
    tgt = Interactions(users, items, np.full(n, 4.0), N_USERS, N_ITEMS, timestamp=ts)
    src = Interactions([0, 1, 2], [0, 1, 2], np.ones(3), 3, 3)
    return CrossDomainData(src, tgt, np.array([[0, 0], [1, 3], [2, 5]]), name="tiny")


def _scorer():
    def score_items(p, src, tgt, items):
        return p["S"][tgt[:, None], items] if items.ndim == 2 else p["S"][tgt, items]

    return Scorer(score_items=score_items, score_all=lambda p, src, tgt: p["S"][tgt])


def _items_of(inter_users, inter_items, u):
    return set(np.asarray(inter_items)[np.asarray(inter_users) == u].tolist())


def _reference_full(S, held: HeldOut, seen: list[tuple], ks):
    """Mean top-K metrics over the users of `held`, ranking by hand every item except the
    user's `seen` items that are not its held-out ones; ties: lower item index first."""
    rows = {k: [] for k in ["mrr"] + [f"{m}@{k}" for k in ks for m in ("hr", "ndcg", "recall")]}
    for u in np.unique(held.target_user):
        pos = _items_of(held.target_user, held.item, u)
        excluded = set().union(*(_items_of(us, it, u) for us, it in seen)) - pos
        cand = [i for i in range(S.shape[1]) if i not in excluded]
        ranked = sorted(cand, key=lambda i: (-S[u, i], i))
        hits = [i in pos for i in ranked]
        first = next((r for r, h in enumerate(hits[: max(ks)]) if h), None)
        rows["mrr"].append(0.0 if first is None else 1.0 / (first + 1))
        for k in ks:
            top = hits[:k]
            idcg = sum(1 / np.log2(r + 2) for r in range(min(len(pos), k)))
            rows[f"hr@{k}"].append(float(any(top)))
            rows[f"recall@{k}"].append(sum(top) / len(pos))
            rows[f"ndcg@{k}"].append(sum(1 / np.log2(r + 2) for r, h in enumerate(top) if h) / idcg)
    return {k: float(np.mean(v)) for k, v in rows.items()}


def _reference_sampled(S, held: HeldOut, ks):
    """Mean metrics of each held-out item against its own negatives (ties count against it)."""
    ranks = np.array(
        [
            int(np.sum(S[u, neg] >= S[u, p]))
            for u, p, neg in zip(held.target_user, held.item, held.negatives, strict=True)
        ]
    )
    out = {"mrr": float(np.mean(1.0 / (ranks + 1)))}
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = float(np.mean(hit))
        out[f"ndcg@{k}"] = float(np.mean(np.where(hit, 1 / np.log2(ranks + 2), 0.0)))
    return out


def _evaluate(split, S):
    cfg = C.RunConfig(eval=C.EvalConfig(ranking="both", rating="off", ks=KS, chunk_size=3))
    ev = make_evaluator(cfg, split)
    return {name: ev(_scorer(), {"S": S}, name) for name in ("valid", "test")}


def _check(split, S):
    got = _evaluate(split, S)
    tgt = split.data.target
    train = (split.target_train.user, split.target_train.item)
    valid = (split.valid.target_user, split.valid.item)
    for name, held, seen in (("valid", split.valid, [train]), ("test", split.test, [train, valid])):
        ref = _reference_full(S, held, seen, KS)
        for k, v in ref.items():
            assert got[name][f"full_{k}"] == pytest.approx(v, abs=1e-6), (name, k)
        for u, neg in zip(held.target_user, held.negatives, strict=True):
            assert not set(neg.tolist()) & _items_of(tgt.user, tgt.item, u)  # no item of u
            assert len(set(neg.tolist())) == neg.size
        ref = _reference_sampled(S, held, KS)
        for k, v in ref.items():
            assert got[name][k] == pytest.approx(v, abs=1e-6), (name, k)
    return got


@pytest.mark.parametrize("protocol", ["warm_ratio", "warm_loo"])
@pytest.mark.slow
def test_warm_ranking_excludes_train_and_valid_items(protocol):
    data = _data(timestamps=protocol == "warm_loo")
    if protocol == "warm_ratio":
        split = warm_ratio_split(data, ratios=(0.6, 0.2, 0.2), seed=3, n_negatives=4)
    else:
        split = warm_loo_split(data, seed=3, n_negatives=4)
    # valid items score highest, then training, then test items: test ranks its positives
    # first only when the valid items are left out
    S = np.random.default_rng(1).random((N_USERS, N_ITEMS)).astype(np.float32)
    S[split.test.target_user, split.test.item] += 1.5
    S[split.target_train.user, split.target_train.item] += 3.0
    S[split.valid.target_user, split.valid.item] += 5.0
    got = _check(split, S)
    assert got["test"]["full_hr@1"] == 1.0 and got["test"]["full_mrr"] == 1.0
    assert got["valid"]["full_hr@1"] == 1.0
    train = (split.target_train.user, split.target_train.item)
    train_only = _reference_full(S, split.test, [train], KS)  # the mask before: train only
    assert train_only["hr@1"] == 0.0 and train_only["ndcg@5"] < got["test"]["full_ndcg@5"]


def test_warm_exclude_sets_hold_the_users_earlier_rows():
    data = _data(seed=4)
    split = warm_ratio_split(data, seed=0, n_negatives=2)
    tr, va = split.target_train, split.valid
    for held, parts in ((split.valid, [tr]), (split.test, [tr, va])):
        for u in np.unique(held.target_user):
            want = set()
            for p in parts:
                us = p.user if isinstance(p, Interactions) else p.target_user
                want |= _items_of(us, p.item, u)
            assert _items_of(held.exclude.user, held.exclude.item, u) == want
        assert set(np.unique(held.exclude.user)) <= set(held.target_user.tolist())


def test_min_rating_rows_are_seen_not_ranked():
    data = _data(seed=2)
    tgt = data.target
    rating = np.where(np.arange(len(tgt)) % 3 == 0, 2.0, 4.0).astype(np.float32)
    low = CrossDomainData(
        data.source,
        Interactions(tgt.user, tgt.item, rating, N_USERS, N_ITEMS),
        data.overlap,
        name="low",
    )
    split = warm_ratio_split(low, ratios=(0.5, 0.25, 0.25), seed=1, min_rating=3)
    t = split.test
    for u in np.unique(t.target_user):
        # everything of u but its test positives: train, valid and every rating below 3
        want = _items_of(tgt.user, tgt.item, u) - _items_of(t.target_user, t.item, u)
        assert _items_of(t.exclude.user, t.exclude.item, u) == want
    v = split.valid
    for u in np.unique(v.target_user):
        got = _items_of(v.exclude.user, v.exclude.item, u)
        assert _items_of(split.target_train.user, split.target_train.item, u) <= got
        assert not got & _items_of(v.target_user, v.item, u)


@pytest.mark.slow
def test_cold_start_users_have_nothing_excluded():
    data = _data(seed=5)
    split = cold_start_split(data, beta=0.67, seed=0, n_negatives=3)
    assert len(split.valid.exclude) == 0 and len(split.test.exclude) == 0
    assert not set(split.valid.target_user.tolist()) & set(split.test.target_user.tolist())
    S = np.random.default_rng(2).random((N_USERS, N_ITEMS)).astype(np.float32)
    _check(split, S)


def test_an_excluded_item_held_out_for_the_user_is_ranked_as_a_positive():
    """A (user, item) in both train and test (repeated rows, kept as RecBole keeps them) is a
    test positive and a candidate, as RecBole's history = used - positive."""
    held = HeldOut(pairs=[[-1, 0]], row=[0, 0], item=[2, 5], rating=[1.0, 1.0])
    seen = Interactions([0, 0, 0], [2, 3, 4], np.ones(3), 1, 8)
    S = np.array([[0.0, 0.1, 0.9, 0.8, 0.7, 0.6, 0.2, 0.3]], np.float32)
    got = full_ranking(
        lambda s, t: S[np.asarray(t)], held, exclude=seen, n_items=8, ks=(2,), chunk_size=1
    )
    # ranked: 2 (positive, in train too), 5; items 3 and 4 left out
    assert got["hr@2"] == 1.0 and got["recall@2"] == 1.0 and got["ndcg@2"] == pytest.approx(1.0)
