"""Tests for transferjax.eval.metrics against hand-computed values and numpy loops."""

import math

import numpy as np
import pytest

from transferjax.eval import metrics


def _ref_rank_metrics(rank, ks):
    out = {"mrr": np.mean([1.0 / (r + 1) for r in rank])}
    for k in ks:
        hr = np.mean([1.0 if r < k else 0.0 for r in rank])
        out[f"hr@{k}"] = hr
        out[f"ndcg@{k}"] = np.mean([1.0 / math.log2(r + 2) if r < k else 0.0 for r in rank])
        p, rec = hr / k, hr
        out[f"precision@{k}"] = p
        out[f"recall@{k}"] = rec
        # per-row F1 averaged: each row has P = hit/k, R = hit
        out[f"f1@{k}"] = np.mean([2 * (1 / k) / (1 / k + 1) if r < k else 0.0 for r in rank])
    return out


def _ref_topk(hits, n_rel, ks):
    """Loop over users; F1 per user then averaged; MRR within max(ks)."""
    per = {}
    for h, r in zip(hits, n_rel, strict=True):
        for k in ks:
            hk = int(np.sum(h[:k]))
            p = hk / k
            rec = hk / r if r > 0 else 0.0
            f1 = 2 * p * rec / (p + rec) if p + rec > 0 else 0.0
            dcg = sum(1.0 / math.log2(i + 2) for i in range(k) if h[i])
            idcg = sum(1.0 / math.log2(i + 2) for i in range(min(r, k)))
            vals = {
                "precision": p,
                "recall": rec,
                "f1": f1,
                "hr": float(hk > 0),
                "ndcg": dcg / idcg if idcg > 0 else 0.0,
            }
            for name, v in vals.items():
                per.setdefault(f"{name}@{k}", []).append(v)
        first = [i for i in range(max(ks)) if h[i]]
        per.setdefault("mrr", []).append(1.0 / (first[0] + 1) if first else 0.0)
    return {k: float(np.mean(v)) for k, v in per.items()}


def test_rank_metrics_hand_example():
    # the positive ranked 2nd (rank 1): NDCG@2 = 1/log2(3), HR@1 = 0, MRR = 1/2
    out = metrics.rank_metrics_from_ranks(np.array([1]), ks=(1, 2))
    assert out["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert out["hr@1"] == 0.0 and out["ndcg@1"] == 0.0
    assert out["hr@2"] == 1.0 and out["recall@2"] == 1.0
    assert out["precision@2"] == pytest.approx(0.5)
    assert out["f1@2"] == pytest.approx(2 / 3)
    assert out["mrr"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_metrics_match_numpy(seed):
    rank = np.random.default_rng(seed).integers(0, 30, size=57).astype(np.int32)
    ks = (1, 5, 10)
    got = metrics.rank_metrics_from_ranks(rank, ks=ks)
    ref = _ref_rank_metrics(rank, ks)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-5), k


def test_topk_hand_example():
    hits = np.array([[False, True, False, True]])
    out = metrics.topk_metrics(hits, np.array([3]), ks=(2, 4))
    g = [1 / math.log2(i + 2) for i in range(4)]
    assert out["precision@2"] == pytest.approx(0.5)
    assert out["recall@2"] == pytest.approx(1 / 3)
    assert out["f1@2"] == pytest.approx(0.4)
    assert out["ndcg@2"] == pytest.approx(g[1] / (g[0] + g[1]))
    assert out["ndcg@4"] == pytest.approx((g[1] + g[3]) / (g[0] + g[1] + g[2]))
    assert out["hr@2"] == 1.0 and out["mrr"] == pytest.approx(0.5)


def test_topk_perfect_and_empty_lists():
    # all relevant items on top -> NDCG 1; a user with no hit -> zeros; n_rel = 0 -> zeros
    hits = np.array([[True, True, False], [False, False, False], [False, False, False]])
    per = metrics.topk_metrics_per_user(hits, np.array([2, 4, 0]), ks=(3,))
    np.testing.assert_allclose(per["ndcg@3"], [1.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(per["recall@3"], [1.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(per["mrr"], [1.0, 0.0, 0.0], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_match_numpy(seed):
    rng = np.random.default_rng(seed)
    u, k_max = 31, 12
    hits = rng.random((u, k_max)) < 0.3
    n_rel = np.maximum(hits.sum(1), rng.integers(1, 15, size=u))  # >= the hits seen
    ks = (1, 3, 10)
    got = metrics.topk_metrics(hits, n_rel.astype(np.int32), ks=ks)
    ref = _ref_topk(hits, n_rel, ks)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k


def test_topk_mrr_searches_only_up_to_max_k():
    hits = np.array([[False, False, True]])
    assert metrics.topk_metrics(hits, np.array([1]), ks=(2,))["mrr"] == 0.0
    assert metrics.topk_metrics(hits, np.array([1]), ks=(3,))["mrr"] == pytest.approx(1 / 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="exceeds"):
        metrics.topk_metrics(np.zeros((2, 3), bool), np.ones(2, np.int32), ks=(5,))
    with pytest.raises(ValueError, match="positive"):
        metrics.rank_metrics_from_ranks(np.zeros(3, np.int32), ks=(0,))
    with pytest.raises(ValueError, match="no ranks"):
        metrics.rank_metrics_from_ranks(np.zeros(0, np.int32))


@pytest.mark.parametrize("seed", [0, 1])
def test_rating_metrics_match_numpy(seed):
    rng = np.random.default_rng(seed)
    pred = rng.normal(3, 1, size=40).astype(np.float32)
    rating = rng.integers(1, 6, size=40).astype(np.float32)
    out = metrics.rating_metrics(pred, rating)
    assert out["mae"] == pytest.approx(np.mean(np.abs(pred - rating)), rel=1e-5)
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((pred - rating) ** 2)), rel=1e-5)
    mask = rng.random(40) < 0.5
    pred_bad = np.where(mask, pred, 1e6).astype(np.float32)  # masked-out rows must not count
    out = metrics.rating_metrics(pred_bad, rating, mask=mask)
    assert out["mae"] == pytest.approx(np.mean(np.abs(pred - rating)[mask]), rel=1e-5)
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean(((pred - rating) ** 2)[mask])), rel=1e-5)


def test_rating_metrics_hand_and_errors():
    out = metrics.rating_metrics(np.array([1.0, 3.0]), np.array([2.0, 1.0]))
    assert out["mae"] == pytest.approx(1.5) and out["rmse"] == pytest.approx(math.sqrt(2.5))
    with pytest.raises(ValueError, match="no rows"):
        metrics.rating_metrics(np.ones(2), np.ones(2), mask=np.zeros(2, bool))
    with pytest.raises(ValueError, match="shape"):
        metrics.rating_metrics(np.ones(2), np.ones(3))
