"""CDRIB: the encoders, KL terms, critic and loss against a dense numpy transcription of the
official code (github.com/cjx96/CDRIB, bd98945), the clamp and the sampling, the user links,
no users x items array, cold users scored from their source side, and training that lowers
the loss."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import view0
from tests.methods.dual_data import train, user_overlap_split
from tests.methods.graph_checks import assert_no_users_by_items
from tests.methods.test_disencdr import ALPHA, _dense, _gcn, _lin, _np, _relu, np_bce
from tests.methods.test_lightgcn import SMALL
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.data.types import CrossDomainData, Interactions
from transferjax.methods.cdrib import link_users
from transferjax.methods.registry import get_method
from transferjax.models.cdrib import cdrib_draws, cdrib_init, cdrib_loss, kl_prior, sample
from transferjax.models.vbge import row_normalized_edges

# Users 0..2 are shared (same id in both domains, every one with rows in both); source user 3
# and target users 3, 4 are private. (3, 1) is a repeated source row.
S_U = np.array([0, 0, 1, 1, 2, 3, 3, 2, 3])
S_I = np.array([0, 1, 2, 4, 3, 4, 1, 0, 1])
T_U = np.array([0, 1, 1, 2, 3, 4, 4, 2])
T_I = np.array([1, 0, 2, 3, 3, 1, 2, 0])
SIZES = {"source": (4, 5), "target": (5, 4)}
N_SHARED, D, K = 3, 4, 2


def np_sigma(ls):
    return np.exp(0.1 + 0.9 * np.logaddexp(0, np.minimum(ls, 0.4)))


def np_kl_prior(m, ls):
    """`LastLayer._kld_gauss(mean, logstd, 0, 1)`: torch's Normal KL, .mean(0).sum()."""
    s1, s2 = np_sigma(ls), np_sigma(np.ones_like(ls))
    return np.sum(np.mean(np.log(s2 / s1) + (s1**2 + m**2) / (2 * s2**2) - 0.5, 0))


def np_vbge(p, u, v, uv, vu, eps, beta):
    """`VBGE.forward` in training (dropout 0) with noise eps: (users, items, kld_loss)."""
    *plain, last = [p[f"layer_{k}"] for k in range(len(p) - 1)] + [p["last"]]
    us, vs = [], []
    for lp in plain:
        u_ho = _gcn(lp["gc3"], _gcn(lp["gc1"], u, vu), uv)
        v_ho = _gcn(lp["gc4"], _gcn(lp["gc2"], v, uv), vu)
        u, v = _relu(_lin(lp["user_union"], u_ho, u)), _relu(_lin(lp["item_union"], v_ho, v))
        us, vs = us + [u], vs + [v]
    hu, hv = _gcn(last["gc1"], u, vu), _gcn(last["gc2"], v, uv)
    stat = {}
    for s in ("mean", "logstd"):
        stat["u", s] = _lin(last[f"user_union_{s}"], _gcn(last[f"gc3_{s}"], hu, uv), u)
        stat["v", s] = _lin(last[f"item_union_{s}"], _gcn(last[f"gc4_{s}"], hv, vu), v)
    zu = stat["u", "mean"] + eps["user"] * np_sigma(stat["u", "logstd"])
    zv = stat["v", "mean"] + eps["item"] * np_sigma(stat["v", "logstd"])
    kl = beta * np_kl_prior(stat["u", "mean"], stat["u", "logstd"])
    kl += np_kl_prior(stat["v", "mean"], stat["v", "logstd"])
    return np.concatenate(us + [zu], 1), np.concatenate(vs + [zv], 1), kl


def np_loss(p, draws, batch, *, beta, margin, bce):
    """`CrossTrainer.reconstruct_graph`'s loss with `CDRIB.forward` (shared ids < N_SHARED)."""
    e, enc, kl = p["emb"], {}, 0.0
    for d, (u, i) in {"source": (S_U, S_I), "target": (T_U, T_I)}.items():
        adj = _dense(u, i, *SIZES[d])
        *enc[d], kl_d = np_vbge(p[d], e[f"{d}_user"], e[f"{d}_item"], *adj, draws["eps"][d], beta)
        kl += kl_d
    (su, si), (tu, ti) = enc["source"], enc["target"]

    def dis(a, b):
        h = np.concatenate([a, b], 1)
        for k, layer in enumerate(p["disc"]):
            h = h @ layer["w"] + layer["b"]
            h = _relu(h) if k < 2 else h
        return h[:, 0]

    stable = draws["pos"]
    pos = dis(su[stable], tu[stable])
    neg_1, neg_2 = dis(su[stable], tu[draws["neg_t"]]), dis(su[draws["neg_s"]], tu[stable])
    sig = 1 / (1 + np.exp(-np.stack([pos, neg_1, neg_2])))
    if bce:
        critic = np.mean(np.logaddexp(0, -pos))
        critic += sum(np.mean(np.logaddexp(0, n)) for n in (neg_1, neg_2))
    else:
        critic = sum(np.mean(np.maximum(margin - sig[0] + sig[k], 0)) for k in (1, 2))
    s_tab = np.concatenate([tu[:N_SHARED], su[N_SHARED:]])
    t_tab = np.concatenate([su[:N_SHARED], tu[N_SHARED:]])
    rec = np_bce(s_tab, si, *batch["source"][:3]) + np_bce(t_tab, ti, *batch["target"][:3])
    return rec + kl + critic


def _link():
    ids = {d: np.arange(SIZES[d][0]) for d in SIZES}
    link = {d: jnp.asarray(np.where(ids[d] < N_SHARED, ids[d], -1)) for d in SIZES}
    link["pairs"] = jnp.asarray(np.stack([np.arange(N_SHARED)] * 2, 1))
    return link


@pytest.mark.parametrize("n_layers,critic", [(1, "hinge"), (3, "bce")])
@pytest.mark.slow
def test_loss_matches_the_official_code_in_numpy(n_layers, critic):
    p = cdrib_init(jax.random.key(0), sizes=SIZES, dim=D, n_layers=n_layers)
    draws = cdrib_draws(jax.random.key(1), sizes=SIZES, dim=D, n_linked=N_SHARED, k=K)
    graphs = {
        d: {k: jnp.asarray(a) for k, a in row_normalized_edges(u, i, *SIZES[d]).items()}
        for d, (u, i) in {"source": (S_U, S_I), "target": (T_U, T_I)}.items()
    }
    batch = {
        "source": (np.array([0, 3, 2, 1]), np.array([1, 4, 3, 2]), np.array([3, 0, 1, 0])),
        "target": (np.array([4, 0, 2]), np.array([2, 1, 0]), np.array([0, 3, 1])),
    }
    rows = {d: (*map(jnp.asarray, b), jnp.ones(len(b[0]), bool)) for d, b in batch.items()}
    kw = dict(beta=1.5, margin=0.3)
    loss = jax.jit(
        jax.value_and_grad(cdrib_loss, has_aux=True), static_argnames=("alpha", "critic")
    )
    (got, aux), grads = loss(p, graphs, _link(), rows, draws, alpha=ALPHA, critic=critic, **kw)
    # finite gradients; nonzero for the tables, the critic and the last layers' heads (a plain
    # layer of these tiny widths can be a dead ReLU)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(grads))
    heads = [f"{t}_union_{s}" for t in ("user", "item") for s in ("mean", "logstd")]
    modules = [*grads["emb"].values(), *grads["disc"]]
    modules += [grads[d]["last"][h] for d in ("source", "target") for h in heads]
    assert all(sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(m)) > 0 for m in modules)
    drawn = jax.tree.map(np.asarray, {k: a for k, a in draws.items() if k != "drop"})
    want = np_loss(_np(p), drawn, batch, bce=critic == "bce", **kw)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert float(aux["critic"]) > 0 and float(aux["kl"]) > 0


@pytest.mark.slow
def test_kl_clamp_and_sampling():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(6, 4)).astype(np.float32)
    ls = np.linspace(-1.5, 1.5, 24, dtype=np.float32).reshape(6, 4)
    np.testing.assert_allclose(kl_prior(mu, ls), np_kl_prior(mu, ls), rtol=1e-5)
    g = np.asarray(jax.grad(lambda x: kl_prior(mu, x))(jnp.asarray(ls)))
    assert np.all(g[ls > 0.4] == 0) and np.all(g[ls <= 0.4] != 0)  # torch's clamp_max
    eps = rng.normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_allclose(sample(mu, ls, eps), mu + eps * np_sigma(ls), rtol=1e-5)
    np.testing.assert_array_equal(sample(mu, ls, None), mu)


def _inter(u, i, nu, ni, name):
    return Interactions(np.asarray(u), np.asarray(i), np.ones(len(u)), nu, ni, name=name)


def test_links_need_rows_in_both_domains_for_training_and_the_source_for_scoring():
    """Overlap (source 1, target 0), (source 2, target 2), (source 3, target 1); target 1 has
    no target rows (cold), source 0 and target 3 are private."""
    src = _inter([0, 1, 1, 2, 3], [0, 1, 2, 0, 1], 4, 3, "s")
    tgt = _inter([0, 2, 3, 3], [0, 1, 1, 0], 4, 2, "t")
    data = CrossDomainData(src, tgt, overlap=np.array([[1, 0], [2, 2], [3, 1]]))
    split = types.SimpleNamespace(source_train=src, target_train=tgt, data=data)
    link, partner = link_users(split)
    np.testing.assert_array_equal(link["pairs"], [[1, 0], [2, 2]])
    np.testing.assert_array_equal(link["source"], [-1, 0, 2, -1])
    np.testing.assert_array_equal(link["target"], [1, -1, 2, -1])
    np.testing.assert_array_equal(partner, [1, 3, 2, -1])


def _cfg(protocol="warm_ratio", **over):
    cfg = C.RunConfig(
        method="cdrib",
        data=C.DataConfig(name="synthetic", synthetic=dataclasses.replace(SMALL, implicit=True)),
        protocol=C.ProtocolConfig(name=protocol, beta=0.3, seed=1),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=256, epochs=8),
    )
    small = {"cdrib.dim": 8, "cdrib.n_layers": 2, "cdrib.user_batch_size": 16}
    return C.apply_overrides(cfg, [f"{k}={v}" for k, v in {**small, **over}.items()])


@pytest.fixture(scope="module")
def cold():
    cfg = _cfg("cold_start")
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    return split, get_method("cdrib").build(cfg, split)


@pytest.mark.slow
def test_no_users_by_items_array_in_training_step_or_scorer(cold):
    split, built = cold
    train = assert_no_users_by_items(built, split, "cdrib", rows=slice(-64, None))
    assert (split.target_train.n_users, 16) in train and (split.source_train.n_items, 16) in train


@pytest.mark.slow
def test_cold_users_scored_from_their_source_side(cold):
    split, built = cold
    v = view0(built)
    pairs = split.test.pairs
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    np.testing.assert_array_equal(v["cdrib_partner"][tgt], src)  # every cold user: its source
    assert bool(jnp.all(v["cdrib_scored"][tgt]))
    score = jax.jit(built.scorer.score_all)
    direct = score(v, src, tgt)
    prepared = jax.jit(lambda view: score(built.scorer.prepared(view), src, tgt))(v)
    np.testing.assert_allclose(prepared, direct, rtol=1e-5, atol=1e-5)

    def moved(name, rows):
        emb = dict(v["cdrib"]["emb"])
        emb[name] = emb[name].at[rows].add(5.0)
        return score({**v, "cdrib": {**v["cdrib"], "emb": emb}}, src, tgt)

    # their target ego rows are never read; their source rows are
    np.testing.assert_allclose(moved("target_user", tgt), direct, rtol=1e-5, atol=1e-5)
    assert not np.allclose(moved("source_user", src), direct, atol=1e-3)
    # a target user with no row in either domain (user 39 of `user_overlap_split`) gets
    # training popularity
    other = get_method("cdrib").build(_cfg(), user_overlap_split())
    w = view0(other)
    assert not bool(w["cdrib_scored"][39]) and bool(w["cdrib_scored"][38])
    got = jax.jit(other.scorer.score_all)(w, jnp.array([-1, -1]), jnp.array([39, 38]))
    np.testing.assert_allclose(got[0], w["item_pop"])
    assert not np.allclose(got[1], w["item_pop"])


@pytest.mark.slow
def test_training_lowers_the_loss():
    built = get_method("cdrib").build(_cfg(**{"trainer.batch_size": 128}), user_overlap_split())
    stats, _ = train(built, 4)
    losses = [s["loss"] for s in stats]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
