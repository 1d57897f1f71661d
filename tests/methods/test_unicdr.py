"""UniCDR: the aggregators, the interaction masking and the loss against numpy transcriptions of
the official code (github.com/cjx96/UniCDR, b216bc0), the gradient, no users x items array,
cold users scored from their shared half, and training that lowers the loss."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from tests import view0
from tests.methods.dual_data import train, user_overlap_split
from tests.methods.graph_checks import assert_no_users_by_items
from tests.methods.test_lightgcn import SMALL
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.methods.registry import get_method
from transferjax.methods.unicdr import context_sizes, pair_rows
from transferjax.models.pointwise import positive_index
from transferjax.models.unicdr import (
    agg_init,
    aggregate,
    critic_loss,
    floyd_subset,
    sample_context,
    unicdr_init,
    unicdr_loss,
    user_sides,
)

D, MAXLEN, LA, LL = 4, 3, 0.5, 0.4


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def np_aggregate(p, e, h_pad, kind, lambda_a):
    """`BehaviorAggregator.forward` on padded rows h_pad f32[b, W, d] (pads all zero)."""
    if kind == "mean":
        mask = h_pad.sum(-1) != 0
        pooled = h_pad.sum(1) / (mask.sum(-1, keepdims=True) + 1e-12)
    else:
        key = np.tanh(h_pad @ p["w_att"] + p["b_att"])
        a = np.einsum("bld,bd->bl", key, e)
        a[h_pad.sum(-1) == 0] = 0  # masked_fill_
        ex = np.exp(a)
        pooled = np.einsum("bl,bld->bd", ex / (ex.sum(1, keepdims=True) + 1e-12), h_pad)
    return lambda_a * e + (1 - lambda_a) * pooled @ p["w_agg"]


def _pad(table, items, mask, width):
    """The official padded sequence: the rows of the real items, then zero rows to width."""
    out = np.zeros((items.shape[0], width, table.shape[1]))
    for r in range(items.shape[0]):
        real = table[items[r][mask[r]]]
        out[r, : len(real)] = real
    return out


def np_bce(z, label):
    return np.mean(np.logaddexp(0, -z) if label else np.logaddexp(0, z))


def np_loss(p, batch, kind):
    """`CrossTrainer.reconstruct_graph` summed over both domains (dropout 0)."""
    total = 0.0
    for d, o in (("source", "target"), ("target", "source")):
        r = batch[d]
        spec = np_aggregate(
            p["agg"][d], p["user"][d][r["user"]],
            _pad(p["item"][d], *r["ctx"], MAXLEN), kind, LA,
        )  # fmt: skip
        share = np_aggregate(
            p["agg"]["shared"], p["shared_user"][r["joint"]],
            _pad(p["item"][o], *r["glob"], 2 * MAXLEN), kind, LA,
        )  # fmt: skip
        z = spec + share
        y_pos = np.sum(z * p["item"][d][r["pos"]], -1)
        y_neg = np.einsum("bd,bnd->bn", z, p["item"][d][r["neg"]])
        b = len(r["user"])
        label = (np.arange(b) + r["shift"]) % b
        w, c = p["dis"][d]["w"], p["dis"][d]["b"]
        pos = np.einsum("bi,ij,bj->b", spec, w, share) + c
        neg = np.einsum("bi,ij,bj->b", spec[label], w, share) + c
        critic = np_bce(pos, 1) + np_bce(neg, 0)
        total += LL * (np_bce(y_pos, 1) + np_bce(y_neg, 0)) + (1 - LL) * critic
    return total


SIZES = {"source": (5, 7), "target": (4, 6)}


def _batch(rng):
    """Rows of both domains with hand-made contexts (some padded, one empty)."""
    out = {}
    for d, (nu, ni) in SIZES.items():
        o = "target" if d == "source" else "source"
        b = 4
        mask = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]], bool)
        out[d] = {
            "user": rng.integers(0, nu, b),
            "joint": rng.integers(0, 5, b),
            "ctx": (rng.integers(0, ni, (b, MAXLEN)), mask),
            "glob": (rng.integers(0, SIZES[o][1], (b, MAXLEN)), mask[::-1]),
            "pos": rng.integers(0, ni, b),
            "neg": rng.integers(0, ni, (b, 2)),
            "mask": np.ones(b, bool),
            "shift": 1 + int(rng.integers(0, b - 1)),
        }
    return out


def _dev(batch):
    return jax.tree.map(jnp.asarray, batch)


@pytest.mark.parametrize("kind", ["mean", "user_attention"])
def test_aggregators_match_the_official_padding_arithmetic(kind):
    rng = np.random.default_rng(0)
    p = agg_init(jax.random.key(0), D, kind)
    table = rng.normal(size=(6, D))
    items = rng.integers(0, 6, (3, 4))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    e = rng.normal(size=(3, D))
    for width in (4, 8):  # the attention's pads add exp(0) each; the mean ignores them
        got = aggregate(p, e, table[items], mask, kind=kind, lambda_a=0.3, width=width)
        want = np_aggregate(_np(p), e, _pad(table, items, mask, width), kind, 0.3)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["mean", "user_attention"])
@pytest.mark.slow
def test_loss_matches_the_official_code_in_numpy(kind):
    p = unicdr_init(jax.random.key(1), sizes=SIZES, n_joint=5, dim=D, aggregator=kind)
    batch = _batch(np.random.default_rng(1))
    got, aux = unicdr_loss(p, _dev(batch), kind=kind, lambda_a=LA, lambda_loss=LL, maxlen=MAXLEN)
    np.testing.assert_allclose(got, np_loss(_np(p), batch, kind), rtol=1e-5)
    assert all(float(aux[f"{d}_critic"]) > 0 for d in SIZES)


def test_evaluation_shared_half_reads_both_domains():
    """The official evaluation fills the own-domain block of `global_item` (training pads it):
    the shared aggregator's padded sequence is [own block of W | other block of W]."""
    kind, width = "user_attention", 5
    p = unicdr_init(jax.random.key(4), sizes=SIZES, n_joint=5, dim=D, aggregator=kind)
    rng = np.random.default_rng(4)
    m_own = np.array([[1, 1, 0], [0, 0, 0]], bool)
    m_oth = np.array([[1, 0, 0], [1, 1, 1]], bool)
    rows = {
        "user": np.array([0, 3]),
        "joint": np.array([2, 4]),
        "ctx": (rng.integers(0, 7, (2, 3)), m_own),
        "glob": (rng.integers(0, 6, (2, 3)), m_oth),
        "glob_own": (rng.integers(0, 7, (2, 3)), m_own[::-1]),
    }
    spec, share = user_sides(
        p, "source", _dev(rows), kind=kind, lambda_a=LA, widths=(width, 2 * width)
    )
    q = _np(p)
    seq = np.concatenate(
        [
            _pad(q["item"]["source"], *rows["glob_own"], width),
            _pad(q["item"]["target"], *rows["glob"], width),
        ],
        1,
    )
    want = np_aggregate(q["agg"]["shared"], q["shared_user"][rows["joint"]], seq, kind, LA)
    np.testing.assert_allclose(share, want, rtol=1e-5, atol=1e-6)
    ctx = _pad(q["item"]["source"], *rows["ctx"], width)
    want = np_aggregate(q["agg"]["source"], q["user"]["source"][rows["user"]], ctx, kind, LA)
    np.testing.assert_allclose(spec, want, rtol=1e-5, atol=1e-6)


def test_critic_rotates_within_the_valid_rows():
    rng = np.random.default_rng(2)
    p = {"w": jnp.asarray(rng.normal(size=(D, D))), "b": jnp.asarray(0.1)}
    spec, share = rng.normal(size=(6, D)), rng.normal(size=(6, D))
    mask = np.array([1, 1, 1, 1, 0, 0], bool)  # a padded last batch: rows 0..3
    got = critic_loss(p, jnp.asarray(spec), jnp.asarray(share), jnp.asarray(mask), 3)
    s, q = spec[:4], share[:4]
    w, c = np.asarray(p["w"]), 0.1
    pos = np.einsum("bi,ij,bj->b", s, w, q) + c
    neg = np.einsum("bi,ij,bj->b", s[(np.arange(4) + 3) % 4], w, q) + c
    np.testing.assert_allclose(got, np_bce(pos, 1) + np_bce(neg, 0), rtol=1e-5)


@pytest.mark.slow
def test_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        p = unicdr_init(
            jax.random.key(2), sizes=SIZES, n_joint=5, dim=D, aggregator="user_attention"
        )
        p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), p)
        batch = _dev(_batch(np.random.default_rng(3)))

        def f(q):
            kw = dict(kind="user_attention", lambda_a=LA, lambda_loss=LL, maxlen=MAXLEN)
            return unicdr_loss(q, batch, **kw)[0]

        check_grads(jax.jit(f), (p,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_masking_sizes_and_uniform_subsets():
    # min(maxlen, int(n (1 - mask_rate))) with Python's floats
    n = np.array([0, 1, 2, 9, 10, 11, 30])
    want = [min(10, int(x * (1 - 0.1))) for x in n.tolist()]
    np.testing.assert_array_equal(context_sizes(n, maxlen=10, mask_rate=0.1), want)
    assert want == [0, 0, 1, 8, 9, 9, 10]
    # Floyd's k-subset: distinct, in range, every 2-subset of 5 about equally often
    keys = jax.random.split(jax.random.key(0), 5000)
    subs = np.asarray(jax.vmap(lambda k: floyd_subset(k, 5, 2, 3))(keys))
    assert np.all(subs[:, 2] == -1) and np.all(subs[:, 0] != subs[:, 1])
    counts = {s: 0 for s in itertools.combinations(range(5), 2)}
    for a, b in subs[:, :2]:
        counts[tuple(sorted((int(a), int(b))))] += 1
    freq = np.array(list(counts.values())) / len(subs)
    np.testing.assert_allclose(freq, 0.1, atol=0.02)
    # the context: the user's own items, the positive left out, users -1 empty
    index = jax.tree.map(
        jnp.asarray, positive_index(np.array([0, 0, 0, 0, 1, 1]), np.array([1, 3, 4, 6, 2, 5]), 3)
    )
    user, k = jnp.array([0, 1, -1, 2]), jnp.array([4, 1, 3, 2])
    items, mask = sample_context(
        jax.random.split(jax.random.key(1), 4),
        index,
        user,
        k,
        width=4,
        drop=jnp.array([3, 9, 0, 0]),
    )
    items, mask = np.asarray(items), np.asarray(mask)
    assert sorted(items[0][mask[0]]) == [1, 4, 6]  # all 4 drawn, the positive 3 dropped
    assert mask[1].sum() == 1 and items[1][mask[1]][0] in (2, 5)
    assert not mask[2].any() and not mask[3].any()  # no user; a user without items


def test_pair_rows_cover_both_domains():
    s, t = pair_rows(7, 3)
    np.testing.assert_array_equal(s, np.arange(7))
    assert len(t) == 7 and set(t[:3]) == set(t[3:6]) == {0, 1, 2}


def _cfg(protocol="warm_ratio", **over):
    cfg = C.RunConfig(
        method="unicdr",
        data=C.DataConfig(name="synthetic", synthetic=dataclasses.replace(SMALL, implicit=True)),
        protocol=C.ProtocolConfig(name=protocol, beta=0.3, seed=1),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=64, epochs=2),
    )
    small = {"unicdr.dim": 8, "unicdr.maxlen": 6, "unicdr.eval_len": 12}
    return C.apply_overrides(cfg, [f"{k}={v}" for k, v in {**small, **over}.items()])


@pytest.fixture(scope="module")
def cold():
    cfg = _cfg("cold_start", **{"unicdr.aggregator": "user_attention"})
    split = build_split(cfg.protocol, build_dataset(cfg.data))
    return split, get_method("unicdr").build(cfg, split)


def test_no_users_by_items_array_in_training_step_or_scorer(cold):
    split, built = cold
    train_shapes = assert_no_users_by_items(built, split, "unicdr")
    assert (64, 6, 8) in train_shapes  # the batch's context rows


def test_cold_users_scored_from_their_shared_half(cold):
    split, built = cold
    v = view0(built)
    pairs = split.test.pairs
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    assert not bool(jnp.any(v["unicdr_has_rows"]["target"][tgt]))  # cold: no target rows
    assert bool(jnp.all(v["unicdr_scored"][tgt]))
    score = jax.jit(built.scorer.score_all)
    direct = score(v, src, tgt)
    again = score(v, src, tgt)
    np.testing.assert_array_equal(direct, again)  # fixed evaluation contexts

    def moved(path, rows):
        q = jax.tree.map(lambda a: a, v["unicdr"])
        tab = q[path[0]] if len(path) == 1 else q[path[0]][path[1]]
        tab = tab.at[rows].add(5.0)
        if len(path) == 1:
            q[path[0]] = tab
        else:
            q[path[0]] = {**q[path[0]], path[1]: tab}
        return score({**v, "unicdr": q}, src, tgt)

    # their target ego rows are never read; their shared rows and source items are
    np.testing.assert_allclose(moved(("user", "target"), tgt), direct, rtol=1e-5, atol=1e-5)
    joint = v["unicdr_joint"]["target"][tgt]
    assert not np.allclose(moved(("shared_user",), joint), direct, atol=1e-3)
    assert not np.allclose(moved(("item", "source"), jnp.arange(5)), direct, atol=1e-3)


@pytest.mark.parametrize("kind", ["mean", "user_attention"])
@pytest.mark.slow
def test_training_lowers_the_loss(kind):
    built = get_method("unicdr").build(
        _cfg(**{"unicdr.aggregator": kind, "trainer.batch_size": 128}), user_overlap_split()
    )
    stats, _ = train(built, 2)
    losses = [s["loss"] for s in stats]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
