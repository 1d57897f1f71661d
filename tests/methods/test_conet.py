"""CoNet: the cross-connected forward and the stage loss against numpy, the joint rows of
shared users and shared items, cold users scored through their source-trained rows, the item
baseline for a user no training row reaches, and a short training run lowering the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import view0
from tests.methods import dual_data as D
from transferjax.errors import ConfigError
from transferjax.methods.registry import get_method
from transferjax.models.crossnet import conet_init, conet_logits, cross_norm, single_logits


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def np_conet(p, user, item, cross):
    """Both networks' logits, numpy float64 (the module docstring's formulas)."""
    s, t = p["source"], p["target"]
    a_s = np.concatenate([s["user"][user], s["item"][item]], -1)
    a_t = np.concatenate([t["user"][user], t["item"][item]], -1)
    c = np.asarray(cross, np.float64)[:, None]
    for ws, wt, h in zip(s["layers"], t["layers"], p["cross"]):
        pre_s = a_s @ ws["w"] + ws["b"] + c * (a_t @ h["w"])
        pre_t = a_t @ wt["w"] + wt["b"] + c * (a_s @ h["w"])
        a_s, a_t = np.maximum(pre_s, 0), np.maximum(pre_t, 0)
    out = [a @ net["out"]["w"][:, 0] + net["out"]["b"][0] for a, net in ((a_s, s), (a_t, t))]
    return tuple(out)


def _params():
    p = conet_init(jax.random.key(3), n_users=9, n_items=7, dim=3, layers=(5, 4, 2))
    # non-zero biases, so that their place in the formula is checked
    return jax.tree.map(lambda a: a + 0.05 if a.ndim == 1 else a, p)


@pytest.mark.slow
def test_forward_matches_numpy():
    p = _params()
    user = np.array([0, 3, 8, 5, 1, 2])
    item = np.array([6, 0, 2, 2, 4, 1])
    cross = np.array([True, False, True, True, False, False])
    z_s, z_t = conet_logits(p, jnp.asarray(user), jnp.asarray(item), jnp.asarray(cross))
    w_s, w_t = np_conet(_np(p), user, item, cross)
    np.testing.assert_allclose(z_s, w_s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z_t, w_t, rtol=1e-5, atol=1e-6)
    # rows without cross units are each network alone
    for net, z in (("source", z_s), ("target", z_t)):
        alone = single_logits(p, net, jnp.asarray(user), jnp.asarray(item))
        np.testing.assert_allclose(np.asarray(alone)[~cross], np.asarray(z)[~cross], rtol=1e-6)
    # users against all items (broadcast rows) give the per-pair values
    uu, ii = np.meshgrid(user, np.arange(7), indexing="ij")
    grid = conet_logits(p, jnp.asarray(user)[:, None], jnp.arange(7)[None], jnp.asarray(uu) < 4)
    flat = conet_logits(p, jnp.asarray(uu.ravel()), jnp.asarray(ii.ravel()), uu.ravel() < 4)
    np.testing.assert_allclose(grid[1].ravel(), flat[1], rtol=1e-5, atol=1e-6)
    norms = sum(np.linalg.norm(np.asarray(h["w"])) for h in p["cross"])
    np.testing.assert_allclose(cross_norm(p), norms, rtol=1e-6)


@pytest.fixture(scope="module")
def cold():
    conf = D.cfg("conet", **{"conet.reg": 0.3})
    return conf, D.cold_split(conf)


@pytest.mark.slow
def test_stage_loss_matches_numpy(cold):
    conf, split = cold
    built = get_method("conet").build(conf, split)
    v, batch, key = view0(built), D.first_batch(built), jax.random.key(11)
    loss, aux = built.stages[0].loss(v, batch, key)
    rows = D.stage_rows(built, split, batch, key)
    p = _np(v["conet"])
    m = built.data["dual_rows"]
    n_overlap = len(split.data.overlap)
    want = {}
    for name, (u, i, y, mask) in rows.items():
        z_s, z_t = np_conet(p, u, i, u < n_overlap)
        want[name] = D.np_bce(z_s if name == "source" else z_t, y, mask)
    assert set(np.asarray(m["source"]["user"])[split.data.overlap[:, 0]]) == set(range(n_overlap))
    np.testing.assert_allclose(aux["source_loss"], want["source"], rtol=1e-5)
    np.testing.assert_allclose(aux["target_loss"], want["target"], rtol=1e-5)
    reg = 0.3 * sum(np.linalg.norm(h["w"]) for h in p["cross"])
    np.testing.assert_allclose(loss, want["source"] + want["target"] + reg, rtol=1e-5)


@pytest.mark.slow
def test_cross_units_get_no_gradient_without_overlap_rows():
    split = D.user_overlap_split()
    built = get_method("conet").build(D.cfg("conet"), split)
    v = view0(built)
    t_rows = np.asarray(built.data["dual_rows"]["target"]["user"])
    only = np.flatnonzero(t_rows[split.target_train.user] >= 20)[:8]  # target-only users
    batch = {k: jnp.asarray(a[only]) for k, a in built.stages[0].examples.items()}
    batch["mask"] = jnp.ones(len(only), bool)

    def target_loss(h):
        part = {**v["conet"], "cross": h}
        return built.stages[0].loss({**v, "conet": part}, batch, jax.random.key(0))[1]

    g = jax.grad(lambda h: target_loss(h)["target_loss"])(v["conet"]["cross"])
    assert all(not np.any(np.asarray(x["w"])) for x in g)
    g = jax.grad(lambda h: target_loss(h)["source_loss"])(v["conet"]["cross"])
    assert any(np.any(np.asarray(x["w"])) for x in g)  # source batches hold overlap users


@pytest.mark.parametrize("score_cross", [True, False])
@pytest.mark.slow
def test_cold_users_are_scored_through_their_source_trained_rows(cold, score_cross):
    conf, split = cold
    conf = D.cfg("conet", **{"conet.score_cross": str(score_cross).lower()})
    built = get_method("conet").build(conf, split)
    stats, v = D.train(built, 1)
    pairs = split.test.pairs
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    assert np.all(split.target_train.user_counts()[pairs[:, 1]] == 0)  # cold
    rows = np.asarray(built.data["dual_rows"]["target"]["user"])[pairs[:, 1]]
    s_rows = np.asarray(built.data["dual_rows"]["source"]["user"])[pairs[:, 0]]
    np.testing.assert_array_equal(rows, s_rows)  # one joint row: the overlap pair's
    assert np.all(rows < len(split.data.overlap)) and np.all(np.asarray(v["known_target"])[tgt])
    # the target network's rows of the cold users moved: their source examples train them
    before = np.asarray(view0(built)["conet"]["target"]["user"])[rows]
    assert np.all(np.any(np.asarray(v["conet"]["target"]["user"])[rows] != before, axis=1))
    got = jax.jit(built.scorer.score_all)(v, src, tgt)
    items = jnp.asarray(built.data["dual_rows"]["target"]["item"])
    if score_cross:
        want = conet_logits(v["conet"], jnp.asarray(rows)[:, None], items[None], True)[1]
    else:
        want = single_logits(v["conet"], "target", jnp.asarray(rows)[:, None], items[None])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, np.asarray(v["item_base"])[None])


@pytest.mark.slow
def test_a_user_without_any_training_row_gets_popularity():
    split = D.user_overlap_split()
    built = get_method("conet").build(D.cfg("conet"), split)
    v = view0(built)
    known = np.asarray(v["known_target"])
    assert not known[39] and known[:39].all()
    s = jax.jit(built.scorer.score_all)(v, jnp.array([-1, -1]), jnp.array([39, 30]))
    np.testing.assert_allclose(s[0], split.target_train.item_counts())
    assert not np.allclose(s[1], split.target_train.item_counts())
    cand = jnp.array([[3, 1, 4], [1, 5, 9]])
    got = built.scorer.score_items(v, jnp.array([-1, -1]), jnp.array([39, 30]), cand)
    np.testing.assert_allclose(got, np.take_along_axis(np.asarray(s), np.asarray(cand), 1), 1e-5)


def test_shared_items_are_the_overlap_rows():
    split = D.item_overlap_split()
    built = get_method("conet").build(D.cfg("conet"), split)
    rows = built.data["dual_rows"]
    s_items, t_items = np.asarray(rows["source"]["item"]), np.asarray(rows["target"]["item"])
    np.testing.assert_array_equal(s_items[:12], t_items[8:20])
    assert np.all(s_items[:12] < 12) and np.all(s_items[12:] >= 12) and np.all(t_items[:8] >= 12)
    users = np.concatenate([rows["source"]["user"], rows["target"]["user"]])
    assert len(np.unique(users)) == 40 + 30  # no user shared
    assert view0(built)["conet"]["source"]["user"].shape == (70, 4)
    with pytest.raises(ConfigError, match="no overlapping users"):
        get_method("conet").build(D.cfg("conet", **{"conet.share": "users"}), split)


@pytest.mark.slow
def test_training_lowers_the_loss(cold):
    conf, split = cold
    built = get_method("conet").build(conf, split)
    stats, _ = D.train(built, 6)
    bce = [s["source_loss"] + s["target_loss"] for s in stats]
    assert np.all(np.isfinite(bce)) and bce[-1] < bce[0] - 0.05, bce
    assert stats[-1]["loss"] < stats[0]["loss"]


@pytest.mark.slow
def test_loss_kind_follows_the_selection_and_needs_ratings_for_mse(cold):
    conf, split = cold
    built = get_method("conet").build(conf, split)
    assert "positives" in built.data  # implicit, ranking: bce
    explicit = D.item_overlap_split(explicit=True)
    built = get_method("conet").build(D.cfg("conet", **{"eval.select": "rmse"}), explicit)
    assert "positives" not in built.data  # rating selection: the rating variant
    loss, aux = built.stages[0].loss(view0(built), D.first_batch(built), jax.random.key(0))
    assert np.isfinite(float(loss))
    with pytest.raises(ConfigError, match="explicit ratings"):
        get_method("conet").build(D.cfg("conet", **{"conet.loss": "mse"}), split)
