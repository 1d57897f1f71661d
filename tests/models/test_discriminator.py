"""Domain discriminator and DANN loss: numpy BCE reference, masks, training, reversed gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import discriminator as disc

D = 4


def _feats(seed, n, shift):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, D)) + shift, jnp.float32)


def _np_bce(logit, y):
    logit = np.asarray(logit, np.float64)
    return np.maximum(logit, 0) - y * logit + np.log1p(np.exp(-np.abs(logit)))


def test_loss_and_accuracy_match_numpy_with_masks():
    p = disc.discriminator_init(jax.random.key(0), in_dim=D, hidden=(8,))
    zs, zt = _feats(0, 6, -1.0), _feats(1, 5, 1.0)
    ms = jnp.asarray([1, 1, 0, 1, 1, 1], bool)
    mt = jnp.asarray([1, 0, 1, 1, 1], bool)
    loss, aux = disc.dann_loss(p, zs, zt, lam=1.0, mask_source=ms, mask_target=mt)
    ls = np.asarray(disc.discriminator_apply(p, zs))[np.asarray(ms)]
    lt = np.asarray(disc.discriminator_apply(p, zt))[np.asarray(mt)]
    per = np.concatenate([_np_bce(ls, 0.0), _np_bce(lt, 1.0)])
    np.testing.assert_allclose(loss, per.mean(), rtol=1e-5)
    acc = np.concatenate([ls <= 0, lt > 0]).mean()
    np.testing.assert_allclose(aux["accuracy"], acc, rtol=1e-6)
    np.testing.assert_allclose(aux["accuracy_source"], np.mean(ls <= 0), rtol=1e-6)
    np.testing.assert_allclose(aux["loss_target"], _np_bce(lt, 1.0).mean(), rtol=1e-5)


@pytest.mark.slow
def test_bce_is_stable_for_huge_logits():
    p = disc.discriminator_init(jax.random.key(1), in_dim=D, hidden=(8,))
    big = jax.tree.map(lambda a: a * 1e4, p)
    loss, _ = disc.dann_loss(big, _feats(2, 4, -3.0), _feats(3, 4, 3.0), lam=1.0)
    g = jax.grad(lambda q: disc.dann_loss(q, _feats(2, 4, -3.0), _feats(3, 4, 3.0), lam=1.0)[0])(
        big
    )
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))


def test_discriminator_learns_with_lam_zero():
    p = disc.discriminator_init(jax.random.key(2), in_dim=D, hidden=(16,))
    zs, zt = _feats(4, 32, -0.7), _feats(5, 24, 0.7)

    @jax.jit
    def step(p):
        (loss, aux), g = jax.value_and_grad(
            lambda q: disc.dann_loss(q, zs, zt, lam=0.0), has_aux=True
        )(p)
        return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), loss, aux["accuracy"]

    losses, accs = [], []
    for _ in range(30):
        p, loss, acc = step(p)
        losses.append(float(loss))
        accs.append(float(acc))
    assert losses[-1] < 0.7 * losses[0], losses
    assert accs[-1] > 0.85


@pytest.mark.slow
@pytest.mark.parametrize("lam", [0.0, 0.5, 2.0])
def test_encoder_receives_reversed_gradient(lam):
    p = disc.discriminator_init(jax.random.key(3), in_dim=D, hidden=(8,))
    xs, xt = _feats(6, 5, 0.0), _feats(7, 3, 0.5)
    w = jax.random.normal(jax.random.key(4), (D, D))

    def loss(w, lam, dp, reverse=True):
        zs, zt = xs @ w, xt @ w
        if reverse:
            return disc.dann_loss(dp, zs, zt, lam=lam)[0]
        # the same loss without reversal, written out: mean BCE, source 0, target 1
        ls, lt = disc.discriminator_apply(dp, zs), disc.discriminator_apply(dp, zt)
        per = jnp.concatenate([jax.nn.softplus(ls), jax.nn.softplus(-lt)])
        return jnp.mean(per)

    gw, glam, gd = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(w, jnp.float32(lam), p)
    gw_plain, _, gd_plain = jax.grad(loss, argnums=(0, 1, 2))(w, jnp.float32(lam), p, False)
    np.testing.assert_allclose(gw, -lam * np.asarray(gw_plain), rtol=1e-5, atol=1e-7)
    assert float(glam) == 0.0
    # the discriminator's own gradient is not reversed
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), gd, gd_plain)
    assert float(jnp.abs(gw_plain).sum()) > 0
