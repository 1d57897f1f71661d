"""Tests for transferjax.data.protocols: split invariants, negatives, published/warm splits."""

import time

import numpy as np
import pytest

from transferjax.data.protocols import (
    cold_start_split,
    describe,
    published_split,
    sample_negatives,
    warm_loo_split,
    warm_ratio_split,
)
from transferjax.data.synthetic import make_synthetic
from transferjax.data.types import CrossDomainData, DataError, Interactions


@pytest.fixture(scope="module")
def synth():
    data, _ = make_synthetic(
        n_overlap=200,
        n_source_only=50,
        n_target_only=60,
        n_items_source=120,
        n_items_target=100,
        seed=0,
    )
    return data


def _rows(inter_user, item, rating):
    return sorted(zip(inter_user.tolist(), item.tolist(), rating.tolist(), strict=True))


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.8])
def test_cold_start_invariants(synth, beta):
    split = cold_start_split(synth, beta=beta, seed=1)
    tgt = synth.target
    valid_u, test_u = split.valid.pairs[:, 1], split.test.pairs[:, 1]
    cold = np.concatenate([valid_u, test_u])
    # Disjoint cold-valid / cold-test users, none of them in target_train.
    assert len(np.intersect1d(valid_u, test_u)) == 0
    assert not np.isin(split.target_train.user, cold).any()
    # beta of the overlap users with target rows are cold; valid_frac = 0.5 of them to valid.
    assert len(cold) == round(beta * 200)
    assert len(valid_u) == round(0.5 * len(cold))
    # Held-out rows are exactly all target rows of cold users.
    is_cold = np.isin(tgt.user, cold)
    held_user = np.concatenate([split.valid.target_user, split.test.target_user])
    held_item = np.concatenate([split.valid.item, split.test.item])
    held_rating = np.concatenate([split.valid.rating, split.test.rating])
    assert _rows(held_user, held_item, held_rating) == _rows(
        tgt.user[is_cold], tgt.item[is_cold], tgt.rating[is_cold]
    )
    # Warm users keep all their target rows; source_train is the whole source.
    assert len(split.target_train) == int((~is_cold).sum())
    assert len(split.source_train) == len(synth.source)
    # Pairs use the overlap's (different) integers; warm pairs exclude cold users.
    ov = {int(t): int(s) for s, t in synth.overlap}
    for part in (split.valid, split.test):
        assert all(ov[int(t)] == int(s) for s, t in part.pairs)
    assert not np.isin(split.warm_pairs[:, 1], cold).any()
    assert len(split.warm_pairs) == 200 - len(cold)
    assert split.info["beta"] == beta and split.info["seed"] == 1
    assert split.protocol == "cold_start"


def test_cold_start_deterministic_and_seeded(synth):
    a = cold_start_split(synth, seed=3, n_negatives=10)
    b = cold_start_split(synth, seed=3, n_negatives=10)
    c = cold_start_split(synth, seed=4, n_negatives=10)
    np.testing.assert_array_equal(a.test.pairs, b.test.pairs)
    np.testing.assert_array_equal(a.test.negatives, b.test.negatives)
    assert not np.array_equal(a.test.pairs, c.test.pairs)
    assert a.info["n_negatives"] == 10


def _assert_valid_negatives(neg, users, positives, n_items):
    pos = set(zip(positives.user.tolist(), positives.item.tolist(), strict=True))
    assert neg.dtype == np.int32 and neg.min() >= 0 and neg.max() < n_items
    for u, row in zip(users.tolist(), neg, strict=True):
        assert len(np.unique(row)) == len(row)
        assert not any((u, int(i)) in pos for i in row)


def test_cold_start_negatives_avoid_all_positives(synth):
    split = cold_start_split(synth, seed=0, n_negatives=20)
    for part in (split.valid, split.test):
        assert part.negatives.shape == (len(part), 20)
        _assert_valid_negatives(part.negatives, part.target_user, synth.target, 100)


def test_sample_negatives_uniform_deterministic_and_errors():
    pos = Interactions(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 5]), np.ones(4), 2, 20)
    users = np.zeros(3000, np.int32)
    neg = sample_negatives(positives=pos, users=users, n_items=20, n_negatives=4, seed=0)
    _assert_valid_negatives(neg, users, pos, 20)
    counts = np.bincount(neg.ravel(), minlength=20)
    assert counts[:3].sum() == 0
    expect = 3000 * 4 / 17
    assert np.all(np.abs(counts[3:] - expect) < 0.12 * expect)
    again = sample_negatives(positives=pos, users=users, n_items=20, n_negatives=4, seed=0)
    other = sample_negatives(positives=pos, users=users, n_items=20, n_negatives=4, seed=1)
    np.testing.assert_array_equal(neg, again)
    assert not np.array_equal(neg, other)
    with pytest.raises(DataError, match="user 0"):
        sample_negatives(positives=pos, users=users, n_items=20, n_negatives=18, seed=0)


def test_sample_negatives_at_cdrib_size():
    """At CDRIB's size: sorted rows of distinct items, none a positive of the row's user, fixed
    by the seed."""
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 25000, 157000), rng.integers(0, 12319, 157000)
    pos = Interactions(u, i, np.ones(len(u)), 25000, 12319)
    users = rng.integers(0, 25000, 1400)
    neg = sample_negatives(positives=pos, users=users, n_items=12319, n_negatives=999, seed=0)
    assert neg.shape == (1400, 999) and neg.min() >= 0 and neg.max() < 12319
    assert (np.diff(neg, axis=1) > 0).all()  # sorted, so distinct
    seen = set(zip(u.tolist(), i.tolist(), strict=True))
    assert not any((int(a), int(b)) in seen for a, row in zip(users, neg) for b in row)
    again = sample_negatives(positives=pos, users=users, n_items=12319, n_negatives=999, seed=0)
    np.testing.assert_array_equal(neg, again)


def test_cold_start_errors(synth):
    with pytest.raises(ValueError, match="beta"):
        cold_start_split(synth, beta=1.0)
    with pytest.raises(DataError, match="cold-valid"):
        cold_start_split(synth, beta=0.001)
    with pytest.raises(DataError, match="cold-test"):
        cold_start_split(synth, beta=0.005, valid_frac=0.9)
    no_users = CrossDomainData(
        synth.source, synth.target, np.zeros((0, 2)), item_overlap=np.array([[0, 0]])
    )
    with pytest.raises(DataError, match="overlap is empty"):
        cold_start_split(no_users)


def _published_fixture():
    """Source: 4 users; target: 5 users x 8 items. Target users 3, 4 have no source profile."""
    src = Interactions([0, 0, 1, 2, 3], [0, 1, 1, 2, 0], np.ones(5), 4, 3, name="src")
    train = Interactions([0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5], np.ones(6), 5, 8)
    valid = Interactions([1, 3], [6, 7], np.ones(2), 5, 8)
    test = Interactions([1, 4, 4], [7, 6, 0], np.ones(3), 5, 8)
    tgt = Interactions(
        np.concatenate([train.user, valid.user, test.user]),
        np.concatenate([train.item, valid.item, test.item]),
        np.ones(11),
        5,
        8,
    )
    overlap = np.array([[2, 0], [0, 1], [3, 2]])  # (source, target): different integers
    return CrossDomainData(src, tgt, overlap, published=dict(train=train, valid=valid, test=test))


def test_published_split_small_fixture():
    data = _published_fixture()
    split = published_split(data, n_negatives=3, seed=0)
    assert split.target_train is data.published["train"]
    np.testing.assert_array_equal(split.valid.pairs, [[0, 1], [-1, 3]])
    np.testing.assert_array_equal(split.test.pairs, [[0, 1], [-1, 4]])
    np.testing.assert_array_equal(split.test.target_user, [1, 4, 4])
    np.testing.assert_array_equal(split.test.item, [7, 6, 0])
    np.testing.assert_array_equal(split.warm_pairs, [[2, 0], [0, 1], [3, 2]])
    _assert_valid_negatives(split.test.negatives, split.test.target_user, data.target, 8)
    assert split.info["n_negatives"] == 3
    with pytest.raises(DataError, match="published"):
        published_split(CrossDomainData(data.source, data.target, data.overlap), n_negatives=3)


def _load_cdrib(root):
    cdrib = pytest.importorskip("transferjax.data.cdrib")
    for path in (root / "cdrib_game_video", root):
        try:
            return cdrib.load_cdrib(path, target="game")
        except (FileNotFoundError, OSError):
            continue
    pytest.skip("load_cdrib could not find the CDRIB files")


def test_published_split_real_cdrib(shared_datasets):
    data = _load_cdrib(shared_datasets)
    t0 = time.perf_counter()
    split = published_split(data, seed=0)
    elapsed = time.perf_counter() - t0
    assert len(split.target_train) + len(split.valid) + len(split.test) == len(data.target)
    # Cold Game users [1953, 2179) all overlap, so every evaluated user has a source profile.
    assert (split.valid.pairs[:, 0] >= 0).all() and (split.test.pairs[:, 0] >= 0).all()
    assert 1736 <= len(split.warm_pairs) <= 1953
    assert split.test.negatives.shape == (len(split.test), 999)
    assert elapsed < 5.0
    sub = np.arange(0, len(split.test), 50)
    _assert_valid_negatives(
        split.test.negatives[sub], split.test.target_user[sub], data.target, data.target.n_items
    )
    assert "published" in describe(data, split)


def _warm_fixture(timestamps=True):
    # Target user t has t+1 rows (0..9); ratings cycle 1..5; user 9's source partner is 0.
    user = np.repeat(np.arange(10), np.arange(1, 11))
    item = np.concatenate([np.arange(k) for k in range(1, 11)])
    rating = (np.arange(len(user)) % 5 + 1).astype(np.float32)
    ts = np.arange(len(user))[::-1] if timestamps else None
    tgt = Interactions(user, item, rating, 10, 12, timestamp=ts)
    src = Interactions([0, 1], [0, 1], np.ones(2), 2, 2)
    return CrossDomainData(src, tgt, np.array([[0, 9], [1, 5]]))


def test_warm_ratio_split_recbole_counts():
    data = _warm_fixture()
    split = warm_ratio_split(data, seed=0)
    tr = data.target.user.size
    assert len(split.target_train) + len(split.valid) + len(split.test) == tr
    cnt = lambda part: np.bincount(part, minlength=10)  # noqa: E731
    n_tr, n_v, n_t = (
        cnt(split.target_train.user),
        cnt(split.valid.target_user),
        cnt(split.test.target_user),
    )
    # RecBole: n=1 -> 1/0/0, n=2 -> 1/0/1, n=5 -> 3/1/1, n=10 -> 8/1/1.
    assert (n_tr[0], n_v[0], n_t[0]) == (1, 0, 0)
    assert (n_tr[1], n_v[1], n_t[1]) == (1, 0, 1)
    assert (n_tr[4], n_v[4], n_t[4]) == (3, 1, 1)
    assert (n_tr[9], n_v[9], n_t[9]) == (8, 1, 1)
    pairs = dict((int(t), int(s)) for s, t in split.test.pairs)
    assert pairs[9] == 0 and pairs[5] == 1 and pairs[1] == -1
    again = warm_ratio_split(data, seed=0)
    np.testing.assert_array_equal(split.test.item, again.test.item)
    assert split.info["ratios"] == (0.8, 0.1, 0.1) and split.protocol == "warm_ratio"


def test_warm_ratio_min_rating_filters_heldout_only():
    data = _warm_fixture()
    full = warm_ratio_split(data, seed=2)
    pos = warm_ratio_split(data, seed=2, min_rating=3)
    assert (pos.valid.rating >= 3).all() and (pos.test.rating >= 3).all()
    assert len(pos.target_train) == len(full.target_train)
    assert len(pos.test) == int((full.test.rating >= 3).sum())


def test_warm_loo_split_last_by_time_and_random():
    data = _warm_fixture(timestamps=True)
    split = warm_loo_split(data, seed=0, n_negatives=2)
    tgt = data.target
    # Timestamps decrease along rows, so a user's first row is its latest.
    first = np.searchsorted(tgt.user, np.arange(10))
    for part, offset in ((split.test, 0), (split.valid, 1)):
        np.testing.assert_array_equal(part.target_user, np.arange(2, 10))
        np.testing.assert_array_equal(part.item, tgt.item[first[2:] + offset])
    assert len(split.target_train) == len(tgt) - 16
    _assert_valid_negatives(split.test.negatives, split.test.target_user, tgt, 12)
    untimed = _warm_fixture(timestamps=False)
    a, b = warm_loo_split(untimed, seed=5), warm_loo_split(untimed, seed=5)
    np.testing.assert_array_equal(a.test.item, b.test.item)
    assert a.info["by_timestamp"] is False


def test_describe_lists_domains_and_parts(synth):
    split = cold_start_split(synth, seed=0)
    text = describe(synth, split)
    for word in ("source", "target", "target_train", "warm_pairs", "valid", "test", "200"):
        assert word in text
    assert str(len(split.target_train)) in text
    assert "split" not in describe(synth)
