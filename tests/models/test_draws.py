"""transferjax.models.draws: jax.random's bits, uniforms and Bernoulli masks, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import draws

SHAPES = [(), (1,), (7,), (3, 5), (64, 33), (2, 3, 4)]


def _threefry2x32_numpy(k0: int, k1: int, x0: np.ndarray, x1: np.ndarray):
    """The threefry2x32 hash written from its definition (Salmon et al., 2011), in numpy."""
    m = np.uint64(0xFFFFFFFF)
    rot = lambda x, d: ((x << np.uint64(d)) | (x >> np.uint64(32 - d))) & m  # noqa: E731
    ks = [np.uint64(k0), np.uint64(k1), np.uint64(k0 ^ k1 ^ 0x1BD11BDA)]
    x0 = (x0.astype(np.uint64) + ks[0]) & m
    x1 = (x1.astype(np.uint64) + ks[1]) & m
    rotations = [(13, 15, 26, 6), (17, 29, 16, 24)]
    for g in range(5):
        for r in rotations[g % 2]:
            x0 = (x0 + x1) & m
            x1 = rot(x1, r) ^ x0
        x0 = (x0 + ks[(g + 1) % 3]) & m
        x1 = (x1 + ks[(g + 2) % 3] + np.uint64(g + 1)) & m
    return x0.astype(np.uint32), x1.astype(np.uint32)


def test_hash_matches_a_numpy_reference_and_its_known_answer():
    x0 = np.array([0, 0xFFFFFFFF, 0x243F6A88], np.uint32)
    x1 = np.array([0, 0xFFFFFFFF, 0x85A308D3], np.uint32)
    keys = [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0x13198A2E, 0x03707344)]
    c0, c1 = jnp.asarray(x0), jnp.asarray(x1)
    got = [np.asarray(draws.threefry2x32(jnp.uint32(a), jnp.uint32(b), c0, c1)) for a, b in keys]
    for (a, b), g in zip(keys, got, strict=True):
        np.testing.assert_array_equal(g, np.stack(_threefry2x32_numpy(a, b, x0, x1)))
    # The Random123 known-answer vectors of threefry2x32 with 20 rounds (one per key above).
    want = [(0x6B200159, 0x99BA4EFE), (0x1CB996FC, 0xBB002BE7), (0xC4923A9C, 0x483DF7A0)]
    np.testing.assert_array_equal([g[:, i] for i, g in enumerate(got)], np.array(want, np.uint32))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2**31 + 5])
def test_bits_uniform_and_bernoulli_equal_jax_random(shape, seed):
    key = jax.random.fold_in(jax.random.key(seed), 3)
    np.testing.assert_array_equal(draws.bits(key, shape), jax.random.bits(key, shape, jnp.uint32))
    np.testing.assert_array_equal(draws.uniform(key, shape), jax.random.uniform(key, shape))
    for p in (0.0, 0.1, 0.7, 1.0, np.float32(0.3)):
        np.testing.assert_array_equal(
            draws.bernoulli(key, p, shape), jax.random.bernoulli(key, p, shape)
        )


def test_equal_under_jit_with_a_traced_rate_and_vmapped_keys():
    keys = jax.random.split(jax.random.key(7), 5)
    rate = jnp.float32(0.25)
    ours = jax.jit(jax.vmap(lambda k, p: draws.bernoulli(k, p, (9, 4)), (0, None)))(keys, rate)
    theirs = jax.vmap(lambda k: jax.random.bernoulli(k, rate, (9, 4)))(keys)
    np.testing.assert_array_equal(ours, theirs)
    assert 0.1 < float(ours.mean()) < 0.4


def test_other_implementations_fall_back_to_jax_random():
    key = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(draws.bits(key, (6,)), jax.random.bits(key, (6,), jnp.uint32))
    np.testing.assert_array_equal(
        draws.bernoulli(key, 0.5, (6,)), jax.random.bernoulli(key, 0.5, (6,))
    )
    key = jax.random.key(3)
    with jax.threefry_partitionable(False):  # JAX's other threefry stream: drawn by JAX
        np.testing.assert_array_equal(draws.bits(key, (5, 4)), jax.random.bits(key, (5, 4)))


def test_raw_uint32_keys_give_the_same_draws():
    key = jax.random.PRNGKey(11)
    np.testing.assert_array_equal(draws.bits(key, (3, 4)), jax.random.bits(key, (3, 4), jnp.uint32))
    np.testing.assert_array_equal(
        draws.bernoulli(key, 0.4, (3, 4)), jax.random.bernoulli(key, 0.4, (3, 4))
    )
