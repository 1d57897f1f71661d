"""transferjax.eval.groups: the group tables, and the evaluator's metrics by group, coverage
and novelty against brute force (the same evaluator on each group's subset of the held-out
rows; numpy top-K lists for full ranking's item groups)."""

import dataclasses

import jax
import numpy as np
import pytest

from tests.eval.test_evaluator import SYN
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.data.types import HeldOut
from transferjax.eval import groups as G
from transferjax.eval.metrics import topk_metrics_per_user
from transferjax.methods.mf import MFConfig
from transferjax.methods.registry import get_method
from transferjax.train.evaluate import make_evaluate

K = 10


def test_source_activity_buckets_and_names():
    counts = np.array([1, 2, 2, 3, 5, 8, 13, 40, 0])
    test_sources = np.array([0, 1, 2, 3, 4, 5, 6, 7, -1, 7])
    table, names = G.source_activity_groups(counts, test_sources, n_buckets=4)
    # quantiles ("higher") of [1, 2, 2, 3, 5, 8, 13, 40] at 1/4 .. 1: 2, 5, 13, 40
    assert names == ("0-2", "3-5", "6-13", "14-40", "none")
    assert table.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 0, 4]  # user 8 (no rows) -> first
    # tied quantiles merge buckets
    _, names = G.source_activity_groups(np.array([3, 3, 3, 3]), np.arange(4), n_buckets=4)
    assert names == ("0-3", "none")


def test_item_popularity_thirds_of_the_interactions():
    counts = np.array([0, 50, 10, 30, 5, 5])  # 100 rows; sorted: 1 (50), 3 (30), 2, 4, 5, 0
    table, names = G.item_popularity_groups(counts)
    assert names == ("head", "torso", "tail")
    # before each: item 1: 0 -> head; 3: 50 -> torso (>= 33.3); 2: 80 -> tail; 4, 5, 0: tail
    assert table.tolist() == [2, 0, 2, 1, 2, 2]


@pytest.fixture(scope="module")
def setup():
    cfg = C.RunConfig(
        method="mf",
        data=C.DataConfig(name="synthetic", synthetic=SYN),
        protocol=C.ProtocolConfig(beta=0.3, n_negatives=20, seed=1),
        eval=C.EvalConfig(ranking="both", ks=(1, 5, K), chunk_size=16, group_buckets=3),
        mf=MFConfig(dim=8),
    )
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    built = get_method("mf").build(cfg, split)
    params = []
    for i in range(2):  # cold users score mu + b_i: random item biases make their ranks differ
        v = built.view(built.init(jax.random.key(i)))
        bias = jax.random.normal(jax.random.key(10 + i), v["target"]["item_bias"].shape)
        params.append({**v, "target": {**v["target"], "item_bias": bias}})
    off = make_evaluate(
        dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, groups="off")), split
    )
    return cfg, split, built.scorer, params, make_evaluate(cfg, split), off


def _subset(h: HeldOut, keep: np.ndarray) -> HeldOut:
    neg = None if h.negatives is None else h.negatives[keep]
    return HeldOut(h.pairs, h.row[keep], h.item[keep], h.rating[keep], neg, h.exclude)


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@pytest.mark.slow
def test_rows_by_group_equal_the_evaluator_on_each_subset(setup):
    cfg, split, scorer, params, on, off = setup
    test = split.test
    got = on(scorer, params[0], "test")
    assert set(on(scorer, params[0], "valid")) == set(off(scorer, params[0], "valid"))
    g = on.groups
    tables = {
        "source_activity": (np.asarray(g.user)[test.pairs[test.row, 0]], g.user_names),
        "item_popularity": (np.asarray(g.item)[test.item], g.item_names),
    }
    seen = 0
    for grouping, (gid, names) in tables.items():
        for j, name in enumerate(names):
            keep = gid == j
            prefix = f"by_{grouping}/{name}/"
            if not keep.any():
                assert not any(k.startswith(prefix) for k in got)
                continue
            ref = off(scorer, params[0], _subset(test, keep))
            assert got[prefix + "n"] == keep.sum()
            for m in ("mae", "rmse", "mrr", f"hr@{K}", f"ndcg@{K}", f"recall@{K}"):
                _close(got[prefix + m], ref[m])
                seen += ref[m] > 0
            if grouping == "source_activity":  # users by group: full ranking on the subset too
                assert got[prefix + "full_n"] == ref["full_n_users"]
                for m in ("mrr", f"hr@{K}", f"ndcg@{K}", f"recall@{K}"):
                    _close(got[prefix + "full_" + m], ref["full_" + m])
    assert seen >= 6 * 4  # several groups of each grouping are populated


def _top_lists(split, scorer, params):
    """numpy: each evaluated test user's top-K (ties: lower index) and held-out item set."""
    test, n_items = split.test, split.target_train.n_items
    rows = np.unique(test.row)
    src, tgt = test.pairs[rows, 0], test.pairs[rows, 1]
    scores = np.asarray(scorer.score_all(params, src, tgt), np.float64)
    held = [set(test.item[test.row == r].tolist()) for r in rows]
    ex = test.exclude
    for u, t in enumerate(tgt):
        seen = set(ex.item[ex.user == t].tolist()) - held[u]
        scores[u, list(seen)] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return top, held, n_items


@pytest.mark.slow
def test_full_ranking_item_groups_coverage_and_novelty_against_numpy(setup):
    cfg, split, scorer, params, on, _ = setup
    got = on(scorer, params[1], "test")
    top, held, n_items = _top_lists(split, scorer, params[1])
    g = on.groups
    item_group = np.asarray(g.item)
    for j, name in enumerate(g.item_names):
        rel = np.array([sum(item_group[i] == j for i in h) for h in held])
        hits = np.array([[i in h and item_group[i] == j for i in row] for row, h in zip(top, held)])
        ok = rel > 0
        prefix = f"by_item_popularity/{name}/full_"
        assert got[prefix + "n"] == ok.sum()
        ref = topk_metrics_per_user(hits[ok], rel[ok], ks=(K,))
        for m in ("mrr", f"hr@{K}", f"ndcg@{K}", f"recall@{K}"):
            _close(got[prefix + m], np.mean(ref[m]))
    info = np.asarray(g.info, np.float64)
    for k in (1, 5, K):
        _close(got[f"full_coverage@{k}"], len(np.unique(top[:, :k])) / n_items)
        _close(got[f"full_novelty@{k}"], info[top[:, :k]].mean())
    tr = split.target_train
    users_per_item = [len(set(tr.user[tr.item == i].tolist())) for i in range(3)]
    _close(info[:3], -np.log2(np.maximum(users_per_item, 1) / tr.n_users))


@pytest.mark.slow
def test_batched_trials_give_each_trials_groups(setup):
    cfg, split, scorer, params, on, _ = setup
    stacked = jax.tree.map(lambda *x: np.stack(x), *params)
    batched = on.batched(scorer, stacked, "test")
    for got, p in zip(batched, params, strict=True):
        one = on(scorer, p, "test")
        assert list(got) == list(one)
        for k in one:
            _close(got[k], one[k])
