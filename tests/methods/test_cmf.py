"""CMF: the loss against numpy, the joint user index, cold users scored with the shared factor,
no recompilation across epochs, and transfer beating target-only MF at a small shift."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import train_stage, view0
from tests.faults import SMALL
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.methods.cmf import (
    CMFConfig,
    cmf_init,
    cmf_loss,
    joint_user_index,
    source_batch_size,
)
from transferjax.methods.mf import MFConfig
from transferjax.methods.registry import get_method
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_epoch_fn, make_train


def _cfg(method="cmf", **over):
    cfg = C.RunConfig(
        method=method,
        data=C.DataConfig(name="synthetic", synthetic=SMALL),
        protocol=C.ProtocolConfig(beta=0.3, seed=1),
        # CMF needs a real L2 weight: with reg=1e-3 the 13 free parameters of a user's shared
        # row fit its ~10 target ratings exactly and nothing transfers to cold users.
        trainer=C.TrainerConfig(lr=1e-2, batch_size=128, epochs=30),
        mf=MFConfig(dim=12, reg=0.1, epochs=20, lr=1e-2, batch_size=256),
        cmf=CMFConfig(source_weight=0.8),
    )
    return C.apply_overrides(cfg, [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def small_split():
    cfg = _cfg()
    return build_split(cfg.protocol, build_dataset(cfg.data))


def _hand_params():
    p = cmf_init(
        jax.random.key(0),
        n_joint=4,
        n_source=5,
        n_target=6,
        dim=3,
        init_std=0.5,
        mu_source=3.0,
        mu_target=3.5,
    )
    p["user_bias"] = jnp.array([0.1, -0.2, 0.3, 0.0], jnp.float32)
    p["source"]["item_bias"] = jnp.arange(5, dtype=jnp.float32) * 0.1
    p["target"]["item_bias"] = -jnp.arange(6, dtype=jnp.float32) * 0.05
    return p


def _np_mse(p, dom, batch, reg):
    P, bu = np.asarray(p["user"]), np.asarray(p["user_bias"])
    Q, bi, mu = (np.asarray(p[dom][k]) for k in ("item", "item_bias", "mu"))
    m = np.asarray(batch["mask"])
    u, i, r = (np.asarray(batch[k])[m] for k in ("user", "item", "rating"))
    pred = mu + bu[u] + bi[i] + np.sum(P[u] * Q[i], -1)
    l2 = np.sum(P[u] ** 2, -1) + np.sum(Q[i] ** 2, -1) + bu[u] ** 2 + bi[i] ** 2
    return np.mean((r - pred) ** 2 + reg * l2)


TB = {
    "user": jnp.array([0, 1, 3, 2], jnp.int32),
    "item": jnp.array([5, 0, 2, 1], jnp.int32),
    "rating": jnp.array([4.0, 2.0, 5.0, 100.0]),
    "mask": jnp.array([True, True, True, False]),
}
SB = {
    "user": jnp.array([0, 2, 2, 1, 0, 3], jnp.int32),
    "item": jnp.array([4, 0, 1, 3, 3, 2], jnp.int32),
    "rating": jnp.array([1.0, 5.0, 3.0, 4.0, 2.0, 3.0]),
    "mask": jnp.ones((6,), bool),
}


@pytest.mark.slow
def test_cmf_loss_matches_numpy():
    p, w, reg = _hand_params(), 0.3, 0.1
    loss, aux = cmf_loss(p, TB, SB, source_weight=w, reg=reg, key=jax.random.key(0))
    l_s, l_t = _np_mse(p, "source", SB, reg), _np_mse(p, "target", TB, reg)
    np.testing.assert_allclose(aux["source_loss"], l_s, rtol=1e-5)
    np.testing.assert_allclose(aux["target_loss"], l_t, rtol=1e-5)
    np.testing.assert_allclose(loss, w * l_s + (1 - w) * l_t, rtol=1e-5)


@pytest.mark.slow
def test_cmf_gradients_follow_the_weight():
    p = _hand_params()

    def grads(w):
        f = lambda q: cmf_loss(q, TB, SB, source_weight=w, reg=0.1, key=jax.random.key(0))[0]
        return jax.grad(f)(p)

    g1, g0, gh = grads(1.0), grads(0.0), grads(0.5)
    assert not np.any(np.asarray(g1["target"]["item"])) and np.any(np.asarray(g1["source"]["item"]))
    assert not np.any(np.asarray(g0["source"]["item"])) and np.any(np.asarray(g0["target"]["item"]))
    # the shared row of user 0 (in both batches) gets gradient from both domains
    np.testing.assert_allclose(gh["user"][0], 0.5 * (g1["user"][0] + g0["user"][0]), rtol=1e-5)
    assert float(gh["source"]["mu"]) == 0.0 and float(gh["target"]["mu"]) == 0.0  # fixed means


def test_joint_user_index_hand_made():
    s2j, t2j, n = joint_user_index(5, 4, np.array([[3, 0], [1, 2]]))
    assert n == 5 + 4 - 2
    assert s2j[3] == t2j[0] and s2j[1] == t2j[2]
    others = np.concatenate([s2j[[0, 2, 4]], t2j[[1, 3]]])
    assert len(np.unique(others)) == 5 and not set(others) & {s2j[3], s2j[1]}
    assert sorted(np.concatenate([s2j, t2j[[1, 3]]])) == list(range(n))
    with pytest.raises(ValueError, match="distinct"):
        joint_user_index(5, 4, np.array([[3, 0], [3, 2]]))
    with pytest.raises(ValueError, match="outside"):
        joint_user_index(5, 4, np.array([[5, 0]]))


def test_joint_user_index_on_split(small_split):
    d = small_split.data
    s2j, t2j, n = joint_user_index(d.source.n_users, d.target.n_users, d.overlap)
    np.testing.assert_array_equal(s2j[d.overlap[:, 0]], t2j[d.overlap[:, 1]])
    in_ov_s = np.zeros(d.source.n_users, bool)
    in_ov_s[d.overlap[:, 0]] = True
    in_ov_t = np.zeros(d.target.n_users, bool)
    in_ov_t[d.overlap[:, 1]] = True
    rows = np.concatenate([s2j, t2j[~in_ov_t]])
    assert len(np.unique(rows)) == len(rows) == n
    assert n == d.source.n_users + d.target.n_users - len(d.overlap)


@pytest.mark.slow
def test_cold_user_scored_with_shared_factor(small_split):
    built = get_method("cmf").build(_cfg(), small_split)
    p, d = view0(built)["cmf"], small_split.data
    s2j, _, _ = joint_user_index(d.source.n_users, d.target.n_users, d.overlap)
    te = small_split.test
    src, tgt, items = (jnp.asarray(a[:64]) for a in (te.source_user, te.target_user, te.item))
    got = built.scorer.rating(view0(built), src, tgt, items)
    row = s2j[np.asarray(src)]  # the cold user's SOURCE row is the one that scores its target items
    t = p["target"]
    want = (
        t["mu"]
        + p["user_bias"][row]
        + t["item_bias"][items]
        + jnp.sum(p["user"][row] * t["item"][items], -1)
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, t["mu"] + t["item_bias"][items])  # not the item baseline


@pytest.mark.slow
def test_cmf_epochs_do_not_recompile(small_split):
    cfg = _cfg()
    built = get_method("cmf").build(cfg, small_split)
    (stage,) = built.stages
    n_s, n_t = len(small_split.source_train), len(small_split.target_train)
    assert len(stage.examples["user"]) == n_t
    assert source_batch_size(128, n_s, n_t) == -(-128 * n_s // n_t)
    chex.clear_trace_counter()
    stage = dataclasses.replace(stage, loss=chex.assert_max_traces(stage.loss, n=1))
    _, stats = train_stage(stage, view0(built), 3)
    losses = [s["loss"] for s in stats]
    assert all(np.isfinite(s["loss"]) and np.isfinite(s["source_loss"]) for s in stats)
    assert losses[-1] < losses[0]


def _best_test(cfg, split):
    train = make_train(cfg, split, evaluate=make_evaluate(cfg, split))
    return train(jax.random.key(cfg.seed)).best["test"]


@pytest.mark.slow
def test_cmf_beats_target_only_at_small_shift(small_split):
    cmf, mf = _best_test(_cfg("cmf"), small_split), _best_test(_cfg("mf"), small_split)
    assert cmf["rmse"] < mf["rmse"] - 0.05, (cmf, mf)
    assert cmf["mae"] < mf["mae"], (cmf, mf)


def _item_overlap_split(implicit: bool):
    """Two domains with disjoint users and 30 shared items (source items 0..29 = target items
    10..39); warm 8:1:1 split of the target."""
    from transferjax.data.types import CrossDomainData, Interactions

    rng = np.random.default_rng(4)

    def dom(n_users, n_items, n, name):
        pairs = np.unique(
            np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], 1), axis=0
        )
        r = np.ones(len(pairs)) if implicit else rng.integers(1, 6, len(pairs))
        return Interactions(
            user=pairs[:, 0].astype(np.int32),
            item=pairs[:, 1].astype(np.int32),
            rating=r.astype(np.float32),
            n_users=n_users,
            n_items=n_items,
            name=name,
        )

    data = CrossDomainData(
        source=dom(80, 50, 1500, "source"),
        target=dom(60, 45, 700, "target"),
        overlap=np.zeros((0, 2), np.int32),
        item_overlap=np.stack([np.arange(30), np.arange(10, 40)], 1),
        name="items",
    )
    pc = C.ProtocolConfig(name="warm_ratio", seed=0)
    return build_split(pc, data)


def _items_cfg(**kw):
    return C.apply_overrides(
        C.RunConfig(method="cmf"),
        ["trainer.batch_size=64", "mf.dim=4", *[f"{k}={v}" for k, v in kw.items()]],
    )


@pytest.mark.slow
@pytest.mark.parametrize("implicit", [False, True], ids=["mse", "bpr"])
def test_item_shared_cmf_routes_gradients_and_negatives(implicit):
    split = _item_overlap_split(implicit)
    built = get_method("cmf").build(_items_cfg(), split)
    p = view0(built)
    assert set(p["cmf"]) == {"item", "item_bias", "source", "target"}
    assert p["cmf"]["item"].shape[0] == 50 + 45 - 30  # joint items
    assert p["cmf"]["source"]["user"].shape[0] == 80
    assert p["cmf"]["target"]["user"].shape[0] == 60
    stage = built.stages[0]
    batch = {k: jnp.asarray(v[:64]) for k, v in stage.examples.items()}
    batch["mask"] = jnp.ones((64,), bool)
    frozen = {k: v for k, v in p.items() if k != "cmf"}
    g = jax.grad(lambda c: stage.loss({**frozen, "cmf": c}, batch, jax.random.key(1))[0])(p["cmf"])
    t2j = np.asarray(p["neg_items"]["target"])
    s2j = np.asarray(p["neg_items"]["source"])
    assert np.all(t2j[10:40] == s2j[:30])  # the shared items map to one joint row
    touched = np.flatnonzero(np.any(np.asarray(g["item"]) != 0, axis=1))
    target_only = set(t2j[:10]) | set(t2j[40:])
    shared = set(s2j[:30])
    if not implicit:  # a target-only item row moves only when the target batch has it
        assert set(touched) & target_only <= set(np.asarray(batch["item"]))
    assert set(touched) & shared  # shared rows take gradients (from either domain)
    assert np.any(np.asarray(g["source"]["user"]) != 0)  # the source batch trains its users
    from transferjax.models.mf import sample_negatives

    neg = sample_negatives(
        {"neg_items": jnp.asarray(t2j)}, jax.random.key(2), jnp.zeros((2000,), jnp.int32)
    )
    assert set(np.asarray(neg)) <= set(t2j) and len(set(np.asarray(neg))) > 35


@pytest.mark.slow
@pytest.mark.parametrize("implicit", [False, True], ids=["mse", "bpr"])
def test_item_shared_cmf_sparse_first_step_equals_dense(implicit):
    split = _item_overlap_split(implicit)
    out = []
    for sparse in (True, False):
        cfg = _items_cfg(**{"mf.sparse": str(sparse).lower(), "cmf.share": "items"})
        built = get_method("cmf").build(cfg, split)
        one = {k: v[:64] for k, v in built.stages[0].examples.items()}
        stage = dataclasses.replace(built.stages[0], examples=one)
        frozen = {k: v for k, v in view0(built).items() if k != "cmf"}
        ex = {k: jnp.asarray(v) for k, v in one.items()}
        part = view0(built)["cmf"]
        out.append(
            make_epoch_fn(stage)(part, stage.optimizer.init(part), frozen, ex, jax.random.key(5))
        )
    (ps, _, s_stats), (pd, _, d_stats) = out
    np.testing.assert_allclose(s_stats["loss"], d_stats["loss"], rtol=1e-6)
    chex.assert_trees_all_close(ps, pd, rtol=1e-5, atol=1e-6)


def test_item_shared_cmf_needs_overlapping_items():
    split = _item_overlap_split(False)
    with pytest.raises(ValueError, match="no overlapping users"):
        get_method("cmf").build(_items_cfg(**{"cmf.share": "users"}), split)


@pytest.mark.slow
@pytest.mark.parametrize("share,sparse", [("users", False), ("items", True)])
def test_unseen_negatives_index_the_rows_each_domain_trains(share, sparse, small_split):
    """`mf.negatives=unseen`: each domain's positive index holds exactly its training pairs in
    the rows CMF's params index (joint users, or joint items), and training runs on it, dense
    or row-sparse; on explicit ratings (mse), where no negative is drawn, the setting is a
    ConfigError."""
    from transferjax.errors import ConfigError
    from transferjax.models.pointwise import contains

    if share == "users":
        split, cfg = small_split, C.apply_overrides(_cfg(), ["mf.loss=bpr"])
    else:
        split, cfg = _item_overlap_split(True), _items_cfg()
    cfg = C.apply_overrides(cfg, ["mf.negatives=unseen", f"mf.sparse={str(sparse).lower()}"])
    built = get_method("cmf").build(cfg, split)
    index = built.data["mf_positives"]
    stage = built.stages[0]
    rows = {"source": built.data["source_rows"], "target": stage.examples}
    for dom in ("source", "target"):
        u, i = np.asarray(rows[dom]["user"]), np.asarray(rows[dom]["item"])
        assert len(index[dom]["items"]) == len(np.unique(np.stack([u, i], 1), axis=0))
        assert bool(jnp.all(contains(index[dom], jnp.asarray(u), jnp.asarray(i))))
    _, stats = train_stage(stage, view0(built), 2)
    assert np.isfinite([s["loss"] for s in stats]).all()
    with pytest.raises(ConfigError, match="mf.negatives=unseen"):
        get_method("cmf").build(C.apply_overrides(_cfg(), ["mf.negatives=unseen"]), small_split)


# mf in the quick loop (`-m "not slow"`); the two-domain pre-training stages in the full suite
@pytest.mark.parametrize(
    "method", ["mf", *(pytest.param(m, marks=pytest.mark.slow) for m in ("emcdr", "ptupcdr"))]
)
def test_unseen_negatives_reach_every_mf_stage(method):
    """`mf.negatives=unseen` in the other MF stages: target-only `mf` indexes the target's
    training pairs, EMCDR's and PTUPCDR's pre-training both domains'; every MF stage trains on
    it (its loss reads the index, so a builder that forgot it would fail, not fall back)."""
    from transferjax.models.pointwise import contains

    split = _item_overlap_split(True)
    cfg = C.apply_overrides(
        _items_cfg(), [f"method={method}", "mf.negatives=unseen", "emcdr.share=items"]
    )
    if method == "ptupcdr":  # a user bridge: needs overlapping users
        split = build_split(_cfg().protocol, build_dataset(_cfg().data))
        cfg = C.apply_overrides(_cfg(), ["method=ptupcdr", "mf.loss=bpr", "mf.negatives=unseen"])
    built = get_method(method).build(cfg, split)
    parts = (
        {"target": split.target_train}
        if method == "mf"
        else {"source": split.source_train, "target": split.target_train}
    )
    index = built.data["mf_positives"]
    assert set(index) == set(parts)
    for part, d in parts.items():
        assert bool(jnp.all(contains(index[part], jnp.asarray(d.user), jnp.asarray(d.item))))
    view = view0(built)
    for stage in built.stages:
        if stage.name.endswith("mf"):
            view, stats = train_stage(stage, view, 1)
            assert np.isfinite(stats[0]["loss"]), stage.name
