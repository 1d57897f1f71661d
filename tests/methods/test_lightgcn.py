"""LightGCN: propagation and BPR loss against numpy over a dense normalised adjacency, cold users
scored by the item baseline, no users x items array while training, and training that beats
popularity on a small synthetic implicit task."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import train_stage, view0
from tests.faults import SMALL_IMPLICIT as SMALL
from tests.methods.graph_checks import jaxpr_shapes
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.methods.lightgcn import LightGCNConfig
from transferjax.methods.registry import get_method
from transferjax.models.graph import (
    graph_arrays,
    lightgcn_bpr_loss,
    lightgcn_init,
    normalized_edges,
    propagate,
)
from transferjax.models.mf import sample_negatives
from transferjax.models.pointwise import sample_unseen

# 6 users, 5 items; user 5 and item 4 are isolated; (0, 1) appears twice.
USERS = np.array([0, 0, 0, 1, 1, 2, 3, 3, 4, 0])
ITEMS = np.array([0, 1, 2, 1, 3, 0, 2, 3, 1, 1])
NU, NI, D = 6, 5, 3


def _dense_norm_adj() -> np.ndarray:
    """The (NU + NI) square normalised adjacency D^-1/2 A D^-1/2 (Eq. 7), numpy float64."""
    r = np.zeros((NU, NI))
    r[USERS, ITEMS] = 1.0
    a = np.block([[np.zeros((NU, NU)), r], [r.T, np.zeros((NI, NI))]])
    deg = a.sum(1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1)), 0.0)
    return inv[:, None] * a * inv[None]


def _np_final(eu, ei, k):
    a, e = _dense_norm_adj(), np.concatenate([eu, ei]).astype(np.float64)
    layers = [e]
    for _ in range(k):
        layers.append(a @ layers[-1])
    f = np.mean(layers, axis=0)
    return f[:NU], f[NU:]


def _ego(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(NU, D)).astype(np.float32), rng.normal(size=(NI, D)).astype(np.float32)


def _edges():
    return graph_arrays(USERS, ITEMS, NU, NI)


def test_normalized_edges_dedupe_and_weights():
    u, i, w = normalized_edges(USERS, ITEMS, NU, NI)
    assert len(u) == 9 and list(u) == sorted(u)
    k = np.flatnonzero((u == 0) & (i == 1))[0]
    np.testing.assert_allclose(w[k], 1 / np.sqrt(3 * 3), rtol=1e-6)  # |N_0| = 3, |N_1| = 3


@pytest.mark.parametrize("k", [0, 1, 2])
def test_propagation_matches_dense_numpy(k):
    eu, ei = _ego()
    fu, fi = propagate(jnp.asarray(eu), jnp.asarray(ei), _edges(), k)
    wu, wi = _np_final(eu, ei, k)
    np.testing.assert_allclose(fu, wu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fi, wi, rtol=1e-5, atol=1e-6)
    # an isolated node keeps only its ego row, scaled by alpha_0 = 1 / (K + 1)
    np.testing.assert_allclose(fu[5], eu[5] / (k + 1), rtol=1e-6)


BATCH = {
    "user": jnp.array([0, 1, 3, 4, 2]),
    "item": jnp.array([1, 3, 2, 1, 0]),
    "rating": jnp.ones(5),
    "mask": jnp.array([True, True, True, True, False]),
}


def _np_bpr(eu, ei, j, k, reg, reg_form="squared"):
    fu, fi = _np_final(eu, ei, k)
    u, i, m = (np.asarray(BATCH[c]) for c in ("user", "item", "mask"))
    diff = np.sum(fu[u] * fi[i], -1) - np.sum(fu[u] * fi[j], -1)
    nll = np.log1p(np.exp(-diff))
    if reg_form == "norms":  # RecBole's EmbLoss over the unmasked rows: Frobenius norms / n
        rows = [eu[u[m]], ei[i[m]], ei[j[m]]]
        return np.mean(nll[m]) + reg * sum(np.sqrt(np.sum(x**2)) for x in rows) / m.sum()
    r = np.sum(eu[u] ** 2, -1) + np.sum(ei[i] ** 2, -1) + np.sum(ei[j] ** 2, -1)
    return np.sum((nll + reg * r) * m) / m.sum()


@pytest.mark.parametrize("k,reg_form", [(0, "squared"), (2, "squared"), (2, "norms")])
def test_bpr_loss_and_gradient_match_numpy(k, reg_form):
    eu, ei = _ego(1)
    reg, key = 0.05, jax.random.key(3)
    params = {"user": jnp.asarray(eu), "item": jnp.asarray(ei)}
    j = np.asarray(sample_negatives(params, key, BATCH["item"]))
    given = {"negatives": jnp.asarray(j)} if reg_form == "norms" else {"key": key}

    def f(p):
        return lightgcn_bpr_loss(
            p, _edges(), BATCH, n_layers=k, reg=reg, reg_form=reg_form, **given
        )[0]

    np.testing.assert_allclose(f(params), _np_bpr(eu, ei, j, k, reg, reg_form), rtol=1e-5)
    g = jax.grad(f)(params)
    eu64, ei64, eps = eu.astype(np.float64), ei.astype(np.float64), 1e-6
    for name in ("user", "item"):
        x = eu64 if name == "user" else ei64
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            hi, lo = x.copy(), x.copy()
            hi[idx] += eps
            lo[idx] -= eps
            pair = ((hi, ei64), (lo, ei64)) if name == "user" else ((eu64, hi), (eu64, lo))
            hi_lo = [_np_bpr(*q, j, k, reg, reg_form) for q in pair]
            num[idx] = (hi_lo[0] - hi_lo[1]) / (2 * eps)
        np.testing.assert_allclose(g[name], num, rtol=1e-4, atol=1e-6, err_msg=name)


def _cfg(protocol="cold_start", **over):
    cfg = C.RunConfig(
        method="lightgcn",
        data=C.DataConfig(name="synthetic", synthetic=SMALL),
        protocol=C.ProtocolConfig(name=protocol, beta=0.3, seed=1),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=256, epochs=20),
        lightgcn=LightGCNConfig(dim=16, n_layers=2, reg=1e-4),
    )
    return C.apply_overrides(cfg, [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def cold_split():
    cfg = _cfg()
    return build_split(cfg.protocol, build_dataset(cfg.data))


@pytest.mark.parametrize("loss", ["bpr", "mse"])
@pytest.mark.slow
def test_cold_users_get_the_item_baseline(cold_split, loss):
    built = get_method("lightgcn").build(_cfg(**{"lightgcn.loss": loss}), cold_split)
    v = view0(built)
    p = dict(v["lightgcn"])
    if loss == "mse":  # a trained-looking item baseline
        p["mu"] = jnp.asarray(3.2)
        p["item_bias"] = jnp.linspace(-1, 1, p["item_bias"].shape[0])
    v = {**v, "lightgcn": p}
    pairs = cold_split.test.pairs
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    counts = cold_split.target_train.user_counts()
    assert np.all(counts[pairs[:, 1]] == 0)  # the cold-start test users have no training row
    base = p["mu"] + p["item_bias"] if loss == "mse" else cold_split.target_train.item_counts()
    s = jax.jit(built.scorer.score_all)(v, src, tgt)
    np.testing.assert_allclose(s, np.broadcast_to(base, s.shape), rtol=1e-6)
    items = jnp.asarray(np.random.default_rng(0).integers(0, s.shape[1], (len(pairs), 3)))
    np.testing.assert_allclose(
        built.scorer.score_items(v, src, tgt, items), np.asarray(base)[np.asarray(items)], 1e-6
    )
    # a warm user is scored by its propagated embedding, not by the baseline
    warm = jnp.asarray([int(np.flatnonzero(counts > 0)[0])])
    assert not np.allclose(built.scorer.score_all(v, jnp.asarray([-1]), warm)[0], base)


def test_xavier_uniform_init_bounds_and_spread():
    p = lightgcn_init(
        jax.random.key(0),
        n_users=500,
        n_items=300,
        dim=40,
        init_std=0.1,
        biases=False,
        init="xavier_uniform",
    )
    for name, rows in (("user", 500), ("item", 300)):
        a = np.sqrt(6 / (rows + 40))  # torch.nn.init.xavier_uniform_ of a [rows, dim] table
        x = np.asarray(p[name])
        assert x.shape == (rows, 40) and np.abs(x).max() <= a
        np.testing.assert_allclose(x.std(), a / np.sqrt(3), rtol=0.02)  # U(-a, a)


@pytest.mark.slow
def test_unseen_negatives_and_norms_regulariser_in_the_method(cold_split):
    """`negatives=unseen`: the stage loss is `lightgcn_bpr_loss` on `sample_unseen`'s draws for
    the batch's users, none of which is a training item of its user."""
    over = {"lightgcn.negatives": "unseen", "lightgcn.reg_form": "norms", "lightgcn.reg": 0.5}
    built = get_method("lightgcn").build(_cfg(**over), cold_split)
    (stage,) = built.stages
    v, key = view0(built), jax.random.key(4)
    batch = {k: jnp.asarray(a[:200]) for k, a in stage.examples.items()}
    batch["mask"] = jnp.arange(200) < 190
    index = v["lightgcn_positives"]
    tr = cold_split.target_train
    neg = sample_unseen(key, index, batch["user"], n_items=tr.n_items, n=1)[:, 0]
    seen = set(zip(tr.user.tolist(), tr.item.tolist(), strict=True))
    pairs = zip(np.asarray(batch["user"]).tolist(), np.asarray(neg).tolist(), strict=True)
    assert not any(pair in seen for pair in pairs)
    want = lightgcn_bpr_loss(
        v["lightgcn"], v["graph"], batch, n_layers=2, reg=0.5, negatives=neg, reg_form="norms"
    )[0]
    np.testing.assert_allclose(stage.loss(v, batch, key)[0], want, rtol=1e-6)


def test_training_step_has_no_users_by_items_array(cold_split):
    built = get_method("lightgcn").build(_cfg(), cold_split)
    (stage,) = built.stages
    n_u, n_i = cold_split.target_train.n_users, cold_split.target_train.n_items
    assert n_u != n_i
    v = view0(built)
    batch = {k: jnp.asarray(a[:64]) for k, a in stage.examples.items()}
    batch["mask"] = jnp.ones(64, bool)

    def step(part):
        return jax.value_and_grad(
            lambda q: stage.loss({**v, "lightgcn": q}, batch, jax.random.key(0))[0]
        )(part)

    shapes = set(jaxpr_shapes(jax.make_jaxpr(step)(v["lightgcn"]).jaxpr))
    assert (n_u, 16) in shapes  # the walk sees the propagation's tables
    bad = {s for s in shapes if n_u in s and n_i in s}
    assert not bad, bad


def test_loss_decreases(cold_split):
    built = get_method("lightgcn").build(_cfg(), cold_split)
    (stage,) = built.stages
    losses = [s["loss"] for s in train_stage(stage, view0(built), 5)[1]]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.05, losses


def _best_test(cfg):
    from transferjax.train.evaluate import make_evaluate
    from transferjax.train.trainer import make_train

    split = build_split(cfg.protocol, build_dataset(cfg.data))
    train = make_train(cfg, split, evaluate=make_evaluate(cfg, split))
    return train(jax.random.key(cfg.seed)).best["test"]


@pytest.mark.slow
def test_beats_popularity_on_warm_implicit_task():
    ev = C.EvalConfig(select="full_ndcg@10", ranking="full", rating="off", ks=(10,))
    cfg = dataclasses.replace(_cfg("warm_ratio"), eval=ev)
    lg = _best_test(cfg)
    pop = _best_test(dataclasses.replace(cfg, method="popularity"))
    assert lg["full_ndcg@10"] > pop["full_ndcg@10"] + 0.01, (lg, pop)


def test_auto_loss_follows_the_selection_metric(cold_split):
    from transferjax.methods.lightgcn import lightgcn_loss_kind

    explicit = types.SimpleNamespace(target_train=types.SimpleNamespace(implicit=False))
    assert lightgcn_loss_kind(_cfg(), cold_split) == "bpr"  # implicit target
    assert lightgcn_loss_kind(_cfg(), explicit) == "mse"  # selects rmse
    for over, want in (
        ({"eval.ranking": "full"}, "bpr"),
        ({"eval.rating": "off"}, "bpr"),
        ({"eval.select": "mae", "eval.ranking": "full"}, "mse"),
        ({"lightgcn.loss": "bpr"}, "bpr"),
    ):
        assert lightgcn_loss_kind(_cfg(**over), explicit) == want, over
