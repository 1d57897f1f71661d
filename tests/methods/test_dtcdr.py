"""DTCDR: the max-pooled NeuMF forward and the stage loss against numpy, dropout only while
training, cold users scored by the target tower on their source-trained embedding, the item
baseline for a user no training row reaches, shared items, and a short training run lowering
the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import view0
from tests.methods import dual_data as D
from transferjax.errors import ConfigError
from transferjax.methods.registry import get_method
from transferjax.models.neumf import neumf_init, neumf_logits


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def np_neumf(p, domain, user, item):
    """z_d, numpy float64, without dropout (the module docstring's formulas)."""
    s, t = p["source"], p["target"]
    user, item = np.broadcast_arrays(user, item)
    e = np.concatenate(
        [
            np.maximum(s["user"][user], t["user"][user]),
            np.maximum(s["item"][item], t["item"][item]),
        ],
        -1,
    )
    tower = p[domain]
    for layer in tower["mlp"]:
        e = np.maximum(e @ layer["w"] + layer["b"], 0)
    return e @ tower["out"]["w"][:, 0] + tower["out"]["b"][0]


def _params():
    p = neumf_init(jax.random.key(2), n_users=9, n_items=7, dim=3, layers=(5, 2))
    return jax.tree.map(lambda a: a + 0.05 if a.ndim == 1 else a, p)


@pytest.mark.slow
def test_forward_matches_numpy_and_dropout_only_with_a_key():
    p = _params()
    user, item = np.array([0, 3, 8, 5, 1]), np.array([6, 0, 2, 2, 4])
    for d in ("source", "target"):
        z = neumf_logits(p, d, jnp.asarray(user), jnp.asarray(item), dropout=0.5)
        np.testing.assert_allclose(z, np_neumf(_np(p), d, user, item), rtol=1e-5, atol=1e-6)
    grid = neumf_logits(p, "target", jnp.asarray(user)[:, None], jnp.arange(7)[None])
    uu, ii = np.meshgrid(user, np.arange(7), indexing="ij")
    np.testing.assert_allclose(grid, np_neumf(_np(p), "target", uu, ii), rtol=1e-5, atol=1e-6)
    # dropout: different draws with a key, the no-dropout values on average (inverted scaling
    # of the first layer's input; a wide tower makes the average tight)
    wide = neumf_init(jax.random.key(5), n_users=4, n_items=4, dim=64, layers=(64,))
    u, i = jnp.zeros(4000, jnp.int32), jnp.ones(4000, jnp.int32)
    z0 = neumf_logits(wide, "target", u[:1], i[:1])
    z = neumf_logits(wide, "target", u, i, dropout=0.1, key=jax.random.key(0))
    assert len(np.unique(np.asarray(z))) > 100 and not np.allclose(z, z0)
    assert abs(float(jnp.mean(z)) - float(z0[0])) < 0.1 * float(jnp.std(z)) + 0.05


@pytest.fixture(scope="module")
def cold():
    conf = D.cfg("dtcdr", **{"dtcdr.dropout": 0.0, "dtcdr.alpha": 0.3})
    return conf, D.cold_split(conf)


def test_stage_loss_matches_numpy(cold):
    conf, split = cold
    built = get_method("dtcdr").build(conf, split)
    v, batch, key = view0(built), D.first_batch(built), jax.random.key(5)
    loss, aux = built.stages[0].loss(v, batch, key)
    rows = D.stage_rows(built, split, batch, key)
    p = _np(v["dtcdr"])
    want = {n: D.np_bce(np_neumf(p, n, u, i), y, m) for n, (u, i, y, m) in rows.items()}
    np.testing.assert_allclose(aux["source_loss"], want["source"], rtol=1e-5)
    np.testing.assert_allclose(aux["target_loss"], want["target"], rtol=1e-5)
    np.testing.assert_allclose(loss, 0.3 * want["source"] + 0.7 * want["target"], rtol=1e-5)


@pytest.mark.slow
def test_cold_users_get_the_target_tower_on_their_source_trained_embedding(cold):
    conf, split = cold
    built = get_method("dtcdr").build(D.cfg("dtcdr"), split)  # with dropout while training
    _, v = D.train(built, 1)
    pairs = split.test.pairs
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    assert np.all(split.target_train.user_counts()[pairs[:, 1]] == 0)
    rows = np.asarray(built.data["dual_rows"]["target"]["user"])[pairs[:, 1]]
    np.testing.assert_array_equal(
        rows, np.asarray(built.data["dual_rows"]["source"]["user"])[pairs[:, 0]]
    )
    before, after = view0(built)["dtcdr"], v["dtcdr"]
    e0 = np.maximum(before["source"]["user"], before["target"]["user"])[rows]
    e1 = np.maximum(after["source"]["user"], after["target"]["user"])[rows]
    assert np.all(np.any(e1 != e0, axis=1))  # trained by their source examples
    got = jax.jit(built.scorer.score_all)(v, src, tgt)
    items = np.asarray(built.data["dual_rows"]["target"]["item"])
    want = np_neumf(_np(after), "target", rows[:, None], items[None])  # no dropout
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, np.asarray(v["item_base"])[None])


def test_a_user_without_any_training_row_gets_popularity():
    split = D.user_overlap_split()
    built = get_method("dtcdr").build(D.cfg("dtcdr"), split)
    v = view0(built)
    s = jax.jit(built.scorer.score_all)(v, jnp.array([-1, -1]), jnp.array([39, 3]))
    np.testing.assert_allclose(s[0], split.target_train.item_counts())
    assert not np.allclose(s[1], split.target_train.item_counts())


@pytest.mark.slow
def test_shared_items_share_one_embedding_across_the_towers():
    split = D.item_overlap_split()
    built = get_method("dtcdr").build(D.cfg("dtcdr"), split)
    rows = built.data["dual_rows"]
    np.testing.assert_array_equal(rows["source"]["item"][:12], rows["target"]["item"][8:20])
    (stage,) = built.stages
    v = view0(built)
    batch = D.first_batch(built)

    def grads(which):
        return jax.grad(
            lambda q: stage.loss({**v, "dtcdr": q}, batch, jax.random.key(1))[1][which]
        )(v["dtcdr"])

    shared = np.asarray(rows["source"]["item"][:12])
    g = grads("source_loss")
    moved = np.flatnonzero(
        np.any(np.asarray(g["source"]["item"]) != 0, 1)
        | np.any(np.asarray(g["target"]["item"]) != 0, 1)
    )
    assert set(moved) & set(shared)  # the source loss reaches the shared items' rows
    assert not np.any(np.asarray(g["target"]["mlp"][0]["w"]))  # not the target tower
    with pytest.raises(ConfigError, match="no overlapping users"):
        get_method("dtcdr").build(D.cfg("dtcdr", **{"dtcdr.share": "users"}), split)


@pytest.mark.slow
def test_training_lowers_the_loss(cold):
    conf, split = cold
    stats, _ = D.train(get_method("dtcdr").build(D.cfg("dtcdr"), split), 6)
    losses = [s["loss"] for s in stats]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.03, losses


def test_rating_variant_on_explicit_data():
    split = D.item_overlap_split(explicit=True)
    built = get_method("dtcdr").build(D.cfg("dtcdr", **{"eval.select": "mae"}), split)
    assert "positives" not in built.data
    v = view0(built)
    mu = float(split.target_train.rating.mean())
    users, items = jnp.array([0, 1]), jnp.array([2, 3])
    got = built.scorer.rating(v, jnp.array([-1, -1]), users, items)
    rows = built.data["dual_rows"]["target"]
    z = neumf_logits(v["dtcdr"], "target", rows["user"][users], rows["item"][items])
    np.testing.assert_allclose(got, mu + z, rtol=1e-5)
