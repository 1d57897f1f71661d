"""Random draws equal to `jax.random`'s bit for bit, written so XLA fuses them into their use.

`jax.random.bits` with a threefry2x32 key (JAX's default) in its default partitionable mode
hashes each output's flat index, a 64-bit counter held as two uint32 words (hi, lo), with the
key through threefry2x32 (five groups of four add-rotate-xor rounds, a key injection after
each group) and returns the XOR of the hash's two words. On CPU, JAX lowers those five groups
as a rolled loop (it compiles faster); the loop keeps XLA from fusing the hash into the
elementwise work that uses it, so a dropout mask is hashed into a buffer, copied, then read
again. Here the same hash is written out as uint32 arithmetic, which XLA fuses with the mask
and the multiply that follow it: the same bits without the buffer and its copies (an op profile
of a method's epoch, `benchmarks.op_profile.profile` on `benchmarks.method_steps.MethodSteps`,
shows what each form spends), and no slower to compile.

`bits`, `uniform` and `bernoulli` return exactly what `jax.random.bits`, `jax.random.uniform`
(float32 on [0, 1)) and `jax.random.bernoulli` return for the same key and shape, vmapped keys
included (`tests/models/test_draws.py`). Where that equality is not certain they call
`jax.random` itself: a key of another implementation, `jax_threefry_partitionable` switched
off, or 2**32 draws or more (the counter's high word no longer zero).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

# Rotation distances of threefry2x32's rounds, alternating by group (Salmon et al., 2011).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x: jax.Array, d: int) -> jax.Array:
    return lax.shift_left(x, jnp.uint32(d)) | lax.shift_right_logical(x, jnp.uint32(32 - d))


def threefry2x32(k0, k1, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """threefry2x32 of the counter words (x0, x1) u32[...] under the key words k0, k1 u32[]:
    20 rounds, unrolled. Returns the two hashed words, u32[...] each."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_PARITY))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotl(x1, r)
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + jnp.uint32(group + 1)
    return x0, x1


def _fused(key: jax.Array, shape: tuple[int, ...]) -> bool:
    """Whether the written-out hash gives jax.random's bits for this key and shape."""
    return (
        str(jax.random.key_impl(key)) == "threefry2x32"
        and bool(jax.config.jax_threefry_partitionable)
        and math.prod(shape) < 2**32
    )


def bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """u32[*shape]: `jax.random.bits(key, shape, jnp.uint32)` for a key, typed or raw uint32
    (one key, or vmapped keys)."""
    shape = tuple(int(d) for d in shape)
    if not _fused(key, shape):
        return jax.random.bits(key, shape, jnp.uint32)
    k = jax.random.key_data(key)
    lo = lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    h0, h1 = threefry2x32(k[0], k[1], jnp.zeros(shape, jnp.uint32), lo)
    return h0 ^ h1


def uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """f32[*shape] on [0, 1): `jax.random.uniform(key, shape)` (23 random mantissa bits with
    the exponent of 1, minus 1)."""
    mantissa = lax.shift_right_logical(bits(key, shape), jnp.uint32(9))
    one = lax.bitcast_convert_type(mantissa | jnp.uint32(0x3F800000), jnp.float32)
    return one - jnp.float32(1.0)


def bernoulli(key: jax.Array, p, shape: tuple[int, ...]) -> jax.Array:
    """bool[*shape], True with probability p (a float32 scalar, traced or not):
    `jax.random.bernoulli(key, p, shape)`."""
    return uniform(key, shape) < jnp.asarray(p, jnp.float32)
