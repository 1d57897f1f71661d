"""DisenCDR: the encoders, KL terms and loss against a dense numpy transcription of the official
code (github.com/cjx96/DisenCDR, 4e6d60b), the sampling, the joint user space, gradients in and
after the warm-up, no users x items array, cold users, and training that lowers the loss."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import view0
from tests.methods.dual_data import train, user_overlap_split
from tests.methods.graph_checks import assert_no_users_by_items
from tests.methods.test_lightgcn import SMALL
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.data.types import CrossDomainData, Interactions
from transferjax.methods.disencdr import joint_users
from transferjax.methods.registry import get_method
from transferjax.models.disencdr import (
    bce_terms,
    disencdr_forward,
    disencdr_init,
    kl_normal,
    kl_prior,
    sample,
)
from transferjax.models.vbge import dropout, row_normalized_edges

# Two tiny domains over the same 5 users (the official setting: same id = same person, every
# user and item with training rows); (3, 1) is a repeated row of the source.
S_U = np.array([0, 0, 1, 1, 2, 3, 3, 4, 4, 3])
S_I = np.array([0, 1, 2, 5, 3, 4, 1, 0, 5, 1])
T_U = np.array([0, 1, 1, 2, 3, 4, 4, 2])
T_I = np.array([1, 0, 2, 3, 3, 1, 2, 0])
N_U, N_SI, N_TI, D, ALPHA = 5, 6, 4, 3, 0.1


def _dense(u, i, nu, ni):
    """UV and VU as `GraphMaker` builds them: coo (repeats summed), row-normalised."""
    r = np.zeros((nu, ni))
    np.add.at(r, (u, i), 1.0)
    return r / r.sum(1, keepdims=True), r.T / r.T.sum(1, keepdims=True)


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _gcn(p, x, a):
    y = a @ (x @ p["w"]) + p["b"]
    return np.where(y > 0, y, ALPHA * y)


def _lin(p, a, b):
    return np.concatenate([a, b], 1) @ p["w"] + p["b"]


def _relu(x):
    return np.maximum(x, 0.0)


def _layers(p):
    return [p[f"layer_{k}"] for k in range(len(p) - 1)] + [p["last"]]


def np_single(p, u, v, uv, vu):
    """`singleVBGE.forward` in eval mode: ((mu_u, ls_u), (mu_v, ls_v))."""
    *plain, last = _layers(p)
    for lp in plain:
        user_ho = _gcn(lp["gc3"], _gcn(lp["gc1"], u, vu), uv)
        item_ho = _gcn(lp["gc4"], _gcn(lp["gc2"], v, uv), vu)
        u, v = _relu(_lin(lp["user_union"], user_ho, u)), _relu(_lin(lp["item_union"], item_ho, v))
    return np_last_user(last, u, uv, vu), (
        _lin(last["item_union_mean"], _gcn(last["gc4_mean"], _gcn(last["gc2"], v, uv), vu), v),
        _lin(last["item_union_logstd"], _gcn(last["gc4_logstd"], _gcn(last["gc2"], v, uv), vu), v),
    )


def np_last_user(lp, u, uv, vu):
    h = _gcn(lp["gc1"], u, vu)
    return (
        _lin(lp["user_union_mean"], _gcn(lp["gc3_mean"], h, uv), u),
        _lin(lp["user_union_logstd"], _gcn(lp["gc3_logstd"], h, uv), u),
    )


def np_share(p, u, uv, vu):
    """`singleVBGE.forward_user_share`."""
    *plain, last = _layers(p)
    for lp in plain:
        u = _relu(_lin(lp["user_union"], _gcn(lp["gc3"], _gcn(lp["gc1"], u, vu), uv), u))
    return np_last_user(last, u, uv, vu)


def np_cross(p, su, tu, s_adj, t_adj, rate):
    """`crossVBGE.forward`: (mean, logstd)."""
    (suv, svu), (tuv, tvu) = s_adj, t_adj
    *plain, last = _layers(p)
    for lp in plain:
        s = _relu(_lin(lp["source_user_union"], _gcn(lp["gc3"], _gcn(lp["gc1"], su, svu), suv), su))
        t = _relu(_lin(lp["target_user_union"], _gcn(lp["gc4"], _gcn(lp["gc2"], tu, tvu), tuv), tu))
        su = tu = rate * s + (1 - rate) * t
    sh, th = _gcn(last["gc1"], su, svu), _gcn(last["gc2"], tu, tvu)
    out = []
    for stat in ("mean", "logstd"):
        s = _lin(last[f"source_user_union_{stat}"], _gcn(last[f"gc3_{stat}"], sh, suv), su)
        t = _lin(last[f"target_user_union_{stat}"], _gcn(last[f"gc4_{stat}"], th, tuv), tu)
        out.append(rate * s + (1 - rate) * t)
    return tuple(out)


def np_kl(m1, l1, m2, l2):
    """torch's kl_divergence(Normal(m1, s1), Normal(m2, s2)).mean(0).sum(), s = exp(0.1 +
    0.9 softplus(l)) (`_kld_gauss`)."""
    s1, s2 = np.exp(0.1 + 0.9 * np.logaddexp(0, l1)), np.exp(0.1 + 0.9 * np.logaddexp(0, l2))
    var_ratio = (s1 / s2) ** 2
    t1 = ((m1 - m2) / s2) ** 2
    return np.sum(np.mean(0.5 * (var_ratio + t1 - 1 - np.log(var_ratio)), 0))


def np_model(p, rate, beta):
    """`DisenCDR.forward` (eval) and the KL part of `reconstruct_graph`'s loss."""
    e = p["emb"]
    s_adj, t_adj = _dense(S_U, S_I, N_U, N_SI), _dense(T_U, T_I, N_U, N_TI)
    (sum_, sul), (sim, sil) = np_single(
        p["source_specific"], e["source_user"], e["source_item"], *s_adj
    )
    (tum, tul), (tim, til) = np_single(
        p["target_specific"], e["target_user"], e["target_item"], *t_adj
    )
    ssm, ssl = np_share(p["source_share"], e["source_user"], *s_adj)
    tsm, tsl = np_share(p["target_share"], e["target_user"], *t_adj)
    mu, ls = np_cross(
        p["cross"], e["source_user_share"], e["target_user_share"], s_adj, t_adj, rate
    )
    z0, o = np.zeros_like(mu), np.ones_like(mu)
    kld = (1 - beta) * np_kl(mu, ls, z0, o) + beta * (
        np_kl(mu, ls, ssm, ssl) + np_kl(mu, ls, tsm, tsl)
    )
    spec = sum(
        np_kl(m, s, np.zeros_like(m), np.ones_like(s))
        for m, s in ((sum_, sul), (sim, sil), (tum, tul), (tim, til))
    )
    tables = {"source": (mu + sum_, sim), "target": (mu + tum, tim)}
    return tables, spec + kld


def _identity_joint(rate):
    ar = jnp.arange(N_U, dtype=jnp.int32)
    w = jnp.full((N_U,), rate, jnp.float32)
    return {"src": ar, "tgt": ar, "ws": w, "wt": 1.0 - w, "of_src": ar, "of_tgt": ar}


def _model_args(rate):
    graphs = {
        "source": {k: jnp.asarray(a) for k, a in row_normalized_edges(S_U, S_I, N_U, N_SI).items()},
        "target": {k: jnp.asarray(a) for k, a in row_normalized_edges(T_U, T_I, N_U, N_TI).items()},
    }
    ones = {
        "source": {"user": jnp.ones(N_U), "item": jnp.ones(N_SI)},
        "target": {"user": jnp.ones(N_U), "item": jnp.ones(N_TI)},
        "joint": jnp.ones(N_U),
    }
    return graphs, _identity_joint(rate), ones


def _params(n_layers, seed=0):
    sizes = {"source": (N_U, N_SI), "target": (N_U, N_TI)}
    return disencdr_init(jax.random.key(seed), sizes=sizes, dim=D, n_layers=n_layers)


def np_bce(tab_u, tab_i, u, pos, neg):
    yp, yn = np.sum(tab_u[u] * tab_i[pos], -1), np.sum(tab_u[u] * tab_i[neg], -1)
    return np.mean(np.logaddexp(0, -yp)) + np.mean(np.logaddexp(0, yn))


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.slow
def test_forward_kl_and_loss_match_the_official_code_in_numpy(n_layers):
    rate, beta = 0.3, 0.9
    p = _params(n_layers)
    graphs, joint, known = _model_args(rate)
    tables, kl = disencdr_forward(p, graphs, joint, known, alpha=ALPHA, beta=beta)
    want_tables, want_kl = np_model(_np(p), rate, beta)
    for d in ("source", "target"):
        for got, want in zip(tables[d], want_tables[d], strict=True):
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(kl["kl"], want_kl, rtol=2e-4)
    # the full loss on a fixed batch: four mean BCE terms plus the KL terms
    u = np.array([0, 1, 3, 4, 2])
    batch = {
        "source": (u, np.array([1, 2, 4, 0, 3]), np.array([5, 4, 0, 1, 2])),
        "target": (u, np.array([1, 2, 3, 1, 0]), np.array([0, 3, 2, 3, 1])),
    }
    got = kl["kl"] + sum(
        bce_terms(*tables[d], *(jnp.asarray(a) for a in batch[d]), jnp.ones(5, bool)) for d in batch
    )
    want = want_kl + sum(np_bce(*_np(want_tables[d]), *batch[d]) for d in batch)
    np.testing.assert_allclose(got, want, rtol=2e-4)


@pytest.mark.slow
def test_warmup_program_without_the_shared_encoders_gives_the_traced_zero_values():
    """shared_on=0 as a Python number drops the share and cross encoders from the program; the
    tables, KL terms and gradients equal those of a traced 0 (dropout and samples on)."""
    p = _params(2)
    graphs, joint, known = _model_args(0.5)

    def run(on):
        def f(q):
            t, kl = disencdr_forward(
                q,
                graphs,
                joint,
                known,
                alpha=ALPHA,
                drop_rate=0.3,
                shared_on=on,
                key=jax.random.key(7),
            )
            return kl["kl"] + sum(jnp.sum(a**2) for d in t for a in t[d]), (t, kl)

        return jax.value_and_grad(f, has_aux=True)(p)

    (loss0, (t0, kl0)), g0 = run(0.0)
    (loss1, (t1, kl1)), g1 = run(jnp.zeros(()))
    np.testing.assert_allclose(loss0, loss1, rtol=1e-6)
    for d in ("source", "target"):
        for a, b in zip(t0[d], t1[d], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert float(kl0["kl_cross"]) == 0 and float(kl1["kl_cross"]) > 0  # computed, weighted 0
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_kl_terms_match_numpy_and_masks_leave_rows_out():
    rng = np.random.default_rng(0)
    m1, l1, m2, l2 = (rng.normal(size=(6, 4)) for _ in range(4))
    np.testing.assert_allclose(kl_normal(m1, l1, m2, l2), np_kl(m1, l1, m2, l2), rtol=1e-5)
    np.testing.assert_allclose(kl_prior(m1, l1), np_kl(m1, l1, 0 * m1, np.ones_like(l1)), rtol=1e-5)
    mask = np.array([1, 0, 1, 1, 0, 1], bool)
    np.testing.assert_allclose(
        kl_normal(m1, l1, m2, l2, jnp.asarray(mask)),
        np_kl(m1[mask], l1[mask], m2[mask], l2[mask]),
        rtol=1e-5,
    )
    assert float(kl_normal(m1, l1, m1, l1)) == pytest.approx(0.0, abs=1e-6)


def test_sampling_and_dropout():
    rng = np.random.default_rng(1)
    mu, ls = (rng.normal(size=(5, 3)).astype(np.float32) for _ in range(2))
    key = jax.random.key(3)
    eps = np.asarray(jax.random.normal(key, (5, 3)))
    sigma = np.exp(0.1 + 0.9 * np.logaddexp(0, ls))
    np.testing.assert_allclose(sample(mu, ls, key), mu + eps * np.exp(sigma), rtol=1e-5)
    np.testing.assert_allclose(sample(mu, ls, key, "kl"), mu + eps * sigma, rtol=1e-5)
    np.testing.assert_array_equal(sample(mu, ls, None), mu)
    x = jnp.ones((200, 10))
    assert dropout(x, 0.3, None) is x
    y = np.asarray(dropout(x, 0.3, jax.random.key(0)))
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7], rtol=1e-6)
    assert 0.25 < np.mean(y == 0) < 0.35


def _inter(u, i, nu, ni, name):
    return Interactions(np.asarray(u), np.asarray(i), np.ones(len(u)), nu, ni, name=name)


def test_joint_users_link_the_overlap_and_keep_one_side_alone():
    """Overlap (source 1, target 0), (source 2, target 2) and (source 3, target 1); source 0
    has no target copy, target 3 no source copy; target 1 has no target rows (cold)."""
    src = _inter([0, 1, 1, 2, 3], [0, 1, 2, 0, 1], 4, 3, "s")
    tgt = _inter([0, 2, 3, 3], [0, 1, 1, 0], 4, 2, "t")
    data = CrossDomainData(src, tgt, overlap=np.array([[1, 0], [2, 2], [3, 1]]))
    split = types.SimpleNamespace(source_train=src, target_train=tgt, data=data)
    j = joint_users(split, rate=0.3, per_user=False)
    np.testing.assert_array_equal(j["src"], [1, 2, 3, 0, -1])
    np.testing.assert_array_equal(j["tgt"], [0, 2, 1, -1, 3])
    np.testing.assert_allclose(j["ws"], [0.3, 0.3, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(j["wt"], [0.7, 0.7, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(j["of_src"], [3, 0, 1, 2])
    np.testing.assert_array_equal(j["of_tgt"], [0, 2, 1, 4])
    per_user = joint_users(split, rate=0.3, per_user=True)
    np.testing.assert_allclose(per_user["ws"][:2], [2 / 3, 1 / 2])


def _cfg(protocol="warm_ratio", **over):
    cfg = C.RunConfig(
        method="disencdr",
        data=C.DataConfig(name="synthetic", synthetic=dataclasses.replace(SMALL, implicit=True)),
        protocol=C.ProtocolConfig(name=protocol, beta=0.3, seed=1),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=256, epochs=8),
    )
    small = {"disencdr.dim": 8, "disencdr.warmup_epochs": 1}
    return C.apply_overrides(cfg, [f"{k}={v}" for k, v in {**small, **over}.items()])


@pytest.mark.slow
def test_examples_and_gradients_in_and_after_the_warmup():
    split = user_overlap_split()
    built = get_method("disencdr").build(_cfg(**{"trainer.batch_size": 32}), split)
    (stage,) = built.stages
    ex = stage.examples
    n_s, n_t = len(split.source_train), len(split.target_train)
    assert len(ex["source_user"]) == n_s + n_t
    np.testing.assert_array_equal(ex["source_item"][n_s:], -1)
    np.testing.assert_array_equal(ex["target_item"][:n_s], -1)
    t = ex["target_user"][n_s:]
    np.testing.assert_array_equal(ex["source_user"][n_s:], np.where(t < 20, t + 5, -1))
    v = view0(built)
    batch = {k: jnp.asarray(a[n_s - 16 : n_s + 16]) for k, a in ex.items()}
    batch["mask"] = jnp.ones(32, bool)
    steps = -(-(n_s + n_t) // 32)

    @jax.jit
    def grads(step):
        def f(q):
            view = {**v, "disencdr": q, "step": step}
            return stage.loss(view, batch, jax.random.key(0))[0]

        return jax.grad(f)(v["disencdr"])

    def norm(tree):
        return float(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree)))

    for step, shared in ((0, False), (steps, True)):
        g = grads(jnp.asarray(step, jnp.int32))
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g))
        for name in ("source_specific", "target_specific"):
            assert norm(g[name]) > 0
        for name in ("cross", "source_share", "target_share"):
            assert (norm(g[name]) > 0) == shared, (step, name)
        for name in ("source_user_share", "target_user_share"):
            assert (norm(g["emb"][name]) > 0) == shared, (step, name)


@pytest.fixture(scope="module")
def cold_split():
    cfg = _cfg("cold_start")
    return build_split(cfg.protocol, build_dataset(cfg.data))


@pytest.mark.slow
def test_no_users_by_items_array_in_training_step_or_scorer(cold_split):
    built = get_method("disencdr").build(_cfg("cold_start"), cold_split)
    train = assert_no_users_by_items(built, cold_split, "disencdr")
    n_src, n_tgt = cold_split.source_train.n_users, cold_split.target_train.n_users
    assert (n_tgt, 8) in train and (n_src, 8) in train


@pytest.mark.slow
def test_cold_users_scored_from_their_source_side_or_popularity(cold_split):
    built = get_method("disencdr").build(_cfg("cold_start"), cold_split)
    v = view0(built)
    pairs = cold_split.test.pairs
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    assert bool(jnp.all(v["disencdr_scored"][tgt]))  # every cold test user has a source side
    score = jax.jit(built.scorer.score_all)
    direct = score(v, src, tgt)
    prepared = jax.jit(lambda view: score(built.scorer.prepared(view), src, tgt))(v)
    np.testing.assert_allclose(prepared, direct, rtol=1e-5, atol=1e-5)
    # the cold users' target ego rows are held at zero: changing them changes nothing
    emb = dict(v["disencdr"]["emb"])
    for name in ("target_user", "target_user_share"):
        emb[name] = emb[name].at[tgt].add(5.0)
    moved = score({**v, "disencdr": {**v["disencdr"], "emb": emb}}, src, tgt)
    np.testing.assert_allclose(moved, direct, rtol=1e-5, atol=1e-5)
    # a target user with no row in either domain (user 39 of `user_overlap_split`) gets
    # training popularity
    other = get_method("disencdr").build(_cfg(), user_overlap_split())
    w = view0(other)
    assert not bool(w["disencdr_scored"][39]) and bool(w["disencdr_scored"][38])
    got = jax.jit(other.scorer.score_all)(w, jnp.array([-1, -1]), jnp.array([39, 38]))
    np.testing.assert_allclose(got[0], w["item_pop"])
    assert not np.allclose(got[1], w["item_pop"])


@pytest.mark.slow
def test_training_lowers_the_loss():
    split = user_overlap_split()
    built = get_method("disencdr").build(_cfg(**{"trainer.batch_size": 64}), split)
    stats, _ = train(built, 6)
    losses = [s["loss"] for s in stats]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[1], losses
