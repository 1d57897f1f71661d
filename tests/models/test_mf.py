"""Biased MF: scores and losses against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models.mf import (
    bce_loss,
    bpr_loss,
    mf_init,
    mf_score,
    mf_score_all,
    mse_loss,
    sample_negatives,
)


def _params():
    p = mf_init(jax.random.key(0), n_users=5, n_items=7, dim=3, mu=3.5)
    p["user_bias"] = jnp.arange(5, dtype=jnp.float32) * 0.1
    p["item_bias"] = -jnp.arange(7, dtype=jnp.float32) * 0.05
    return p


def test_scores_match_numpy():
    p = _params()
    P, Q = np.asarray(p["user"]), np.asarray(p["item"])
    bu, bi = np.asarray(p["user_bias"]), np.asarray(p["item_bias"])
    ref = 3.5 + bu[:, None] + bi[None] + P @ Q.T
    u = jnp.array([0, 3, 4], jnp.int32)
    got_all = mf_score_all(p["user"][u], p["user_bias"][u], p)
    np.testing.assert_allclose(got_all, ref[[0, 3, 4]], rtol=1e-5, atol=1e-6)
    items = jnp.array([[1, 2], [6, 0], [3, 3]], jnp.int32)
    got = mf_score(p["user"][u], p["user_bias"][u], p, items)
    np.testing.assert_allclose(
        got, np.take_along_axis(ref[[0, 3, 4]], np.asarray(items), 1), rtol=1e-5, atol=1e-6
    )
    one = mf_score(p["user"][u], p["user_bias"][u], p, jnp.array([2, 5, 1], jnp.int32))
    np.testing.assert_allclose(one, ref[[0, 3, 4], [2, 5, 1]], rtol=1e-5, atol=1e-6)


def test_mse_loss_masks_padding_and_matches_numpy():
    p = _params()
    batch = {
        "user": jnp.array([0, 1, 2, 0], jnp.int32),
        "item": jnp.array([1, 2, 3, 0], jnp.int32),
        "rating": jnp.array([4.0, 2.0, 5.0, 100.0]),
        "mask": jnp.array([True, True, True, False]),
    }
    loss, aux = mse_loss(p, batch, reg=0.1)
    P, Q = np.asarray(p["user"]), np.asarray(p["item"])
    bu, bi = np.asarray(p["user_bias"]), np.asarray(p["item_bias"])
    u, i, r = [0, 1, 2], [1, 2, 3], np.array([4.0, 2.0, 5.0])
    pred = 3.5 + bu[u] + bi[i] + np.sum(P[u] * Q[i], 1)
    reg = np.sum(P[u] ** 2, 1) + np.sum(Q[i] ** 2, 1) + bu[u] ** 2 + bi[i] ** 2
    np.testing.assert_allclose(aux["mse"], np.mean((r - pred) ** 2), rtol=1e-5)
    np.testing.assert_allclose(loss, np.mean((r - pred) ** 2 + 0.1 * reg), rtol=1e-5)
    g = jax.grad(lambda q: mse_loss(q, batch, reg=0.1)[0])(p)
    assert float(jnp.abs(g["user"][3]).sum()) == 0.0  # untouched row gets no gradient
    assert float(jnp.abs(g["user"][0]).sum()) > 0.0


@pytest.mark.slow
def test_bpr_prefers_positive_after_training():
    p = mf_init(jax.random.key(1), n_users=4, n_items=6, dim=4)
    batch = {
        "user": jnp.array([0, 1, 2, 3], jnp.int32),
        "item": jnp.array([0, 0, 1, 1], jnp.int32),
        "rating": jnp.ones(4),
        "mask": jnp.ones(4, bool),
    }
    grad = jax.jit(jax.grad(lambda q, k: bpr_loss(q, batch, reg=0.0, key=k)[0]))
    for t in range(200):
        g = grad(p, jax.random.key(t))
        p = jax.tree.map(lambda a, b: a - 0.5 * b, p, g)
    s = mf_score_all(p["user"], p["user_bias"], p)
    assert bool(jnp.all(jnp.argmax(s, 1) == jnp.array([0, 0, 1, 1])))


@pytest.mark.parametrize("kind", ["bpr", "bce"])
def test_pair_losses_match_numpy(kind):
    """BPR: -log sigmoid(s_ui - s_uj); BCE: (-log sigmoid(s_ui) - log(1 - sigmoid(s_uj))) / 2,
    the mean over positives and their negatives; both + reg (rows of u, i and j), masked."""
    p = _params()
    batch = {
        "user": jnp.array([0, 1, 2, 4], jnp.int32),
        "item": jnp.array([1, 2, 3, 0], jnp.int32),
        "rating": jnp.ones(4),
        "mask": jnp.array([True, True, True, False]),
    }
    key = jax.random.key(3)
    loss_fn = bpr_loss if kind == "bpr" else bce_loss
    loss, aux = loss_fn(p, batch, reg=0.1, key=key)
    j = np.asarray(sample_negatives(p, key, batch["item"]))[:3]  # the loss's own draw
    P, Q = np.asarray(p["user"], np.float64), np.asarray(p["item"], np.float64)
    bu, bi = np.asarray(p["user_bias"], np.float64), np.asarray(p["item_bias"], np.float64)
    u, i = np.array([0, 1, 2]), np.array([1, 2, 3])
    s_i = 3.5 + bu[u] + bi[i] + np.sum(P[u] * Q[i], 1)
    s_j = 3.5 + bu[u] + bi[j] + np.sum(P[u] * Q[j], 1)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    if kind == "bpr":
        nll = -np.log(sig(s_i - s_j))
    else:
        nll = -(np.log(sig(s_i)) + np.log(1 - sig(s_j))) / 2
    reg = (
        np.sum(P[u] ** 2, 1)
        + np.sum(Q[i] ** 2, 1)
        + bu[u] ** 2
        + bi[i] ** 2
        + np.sum(Q[j] ** 2, 1)
        + bi[j] ** 2
    )
    np.testing.assert_allclose(aux[kind], np.mean(nll), rtol=1e-5)
    np.testing.assert_allclose(loss, np.mean(nll + 0.1 * reg), rtol=1e-5)


def test_unseen_negatives_avoid_each_users_positives_and_uniform_draws_are_unchanged():
    """`sample_negatives` with a positive index equals a numpy reference on the same 8 draws
    per row: the first draw that is not a positive of its row's user, the first draw when all
    are (user 4 has seen every item); from a shared table's pool, only the pool's rows. Without
    an index, the draws are the plain uniform ones of the key (the stream of every existing
    run)."""
    from transferjax.models.pointwise import positive_index

    p = _params()
    u = np.array([0, 0, 0, 1, 1, 2, 3, *[4] * 7], np.int64)
    i = np.array([0, 1, 5, 2, 3, 4, 0, *range(7)], np.int64)
    index = {k: jnp.asarray(v) for k, v in positive_index(u, i, 5).items()}
    seen = {(int(a), int(b)) for a, b in zip(u, i, strict=True)}
    users = jnp.asarray(np.repeat(np.arange(5), 50), jnp.int32)
    key = jax.random.key(3)

    def reference(draws):
        out = []
        for r, a in enumerate(np.asarray(users)):
            fresh = [int(d) for d in draws[:, r] if (int(a), int(d)) not in seen]
            out.append(fresh[0] if fresh else int(draws[0, r]))
        return np.array(out)

    draws = np.asarray(jax.random.randint(key, (8, *users.shape), 0, 7, dtype=jnp.int32))
    neg = np.asarray(sample_negatives({**p, "positives": index}, key, users, users))
    np.testing.assert_array_equal(neg, reference(draws))
    assert not any((int(a), int(b)) in seen for a, b in zip(users, neg, strict=True) if a != 4)
    pool = jnp.asarray([2, 4, 6], jnp.int32)  # a shared table: the domain's own rows
    view = {**p, "neg_items": pool, "positives": index}
    from_pool = np.asarray(sample_negatives(view, key, users, users))
    pool_draws = np.asarray(pool)[np.asarray(jax.random.randint(key, draws.shape, 0, 3, jnp.int32))]
    np.testing.assert_array_equal(from_pool, reference(pool_draws))
    plain = sample_negatives(p, key, users)
    np.testing.assert_array_equal(plain, jax.random.randint(key, users.shape, 0, 7, jnp.int32))
