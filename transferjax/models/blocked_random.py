"""Random draws over large tables, made in blocks of rows.

One `jax.random.normal(key, (n, d))` call on a CPU costs more per element the larger the array
(threefry's intermediates leave the cache). The graph methods draw dropout masks and
Gaussian noise over whole user and item tables every step (a DisenCDR step on Sport -> Phone
draws about 165,000 rows of 128), so the draw is made per block of `BLOCK` rows, each block
from its own key (`jax.random.split(key, n_blocks)`), and the blocks are stacked: a loop
(`lax.map`) on a CPU, so a block stays in cache, and one batched call (`vmap`) elsewhere. Both
give the same numbers, so a seed draws the same values on every backend; they are not the
values of one unblocked call with the same key (another, equally deterministic stream).

    python -m benchmarks.random_blocks     # the measurement ("Constants" in BENCHMARKS.md)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

BLOCK = 512  # rows per draw, chosen by `python -m benchmarks.random_blocks`


def _blocked(draw: Callable, key, shape: tuple) -> jax.Array:
    """draw(key, shape) per block of BLOCK rows (module docstring); one call when it fits."""
    n, rest = shape[0], tuple(shape[1:])
    if n <= BLOCK:
        return draw(key, shape)
    n_blocks = -(-n // BLOCK)
    keys = jax.random.split(key, n_blocks)
    one = lambda k: draw(k, (BLOCK, *rest))  # noqa: E731
    out = jax.lax.map(one, keys) if jax.default_backend() == "cpu" else jax.vmap(one)(keys)
    return out.reshape(n_blocks * BLOCK, *rest)[:n]


def normal(key, shape: tuple, dtype=jnp.float32) -> jax.Array:
    """N(0, 1) of `shape` (at least 1-D), drawn in blocks of rows."""
    return _blocked(lambda k, s: jax.random.normal(k, s, dtype), key, shape)


def bernoulli(key, p, shape: tuple) -> jax.Array:
    """bool of `shape` (at least 1-D), True with probability `p`, drawn in blocks of rows."""
    return _blocked(lambda k, s: jax.random.bernoulli(k, p, s), key, shape)
