"""Top-k over items split across devices: each device's top k, then one merge.

`merged_top_k(x, k, mesh=..., axis=...)` equals `jax.lax.top_k(x, k)` over the last axis of
`x` f32[..., n] (the same values and indices, ties to the lower index) while `x` stays split
by items over the mesh axis `axis`: each of the N devices ranks its block of n/N items
(`jax.shard_map`), shifts the indices by its block's offset, and the N*k candidates (in block
order, so lower indices come first among equal values) are ranked once more. Only the
candidates, [..., N*k], cross devices; no device holds a whole row of scores.

A row count not divisible by N is padded with -inf columns at the end; they rank after every
real item, -inf ones included (lower index first among ties), and never reach the first k
when k <= n.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P


def merged_top_k(
    x: jax.Array, k: int, *, mesh: jax.sharding.Mesh, axis: str
) -> tuple[jax.Array, jax.Array]:
    """(values f32[..., k], indices i32[..., k]) of the k largest entries of each row of `x`,
    as `jax.lax.top_k`, computed per block of items over the mesh axis `axis`."""
    shards, n = mesh.shape[axis], x.shape[-1]
    block = -(-n // shards)
    if block * shards != n:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, block * shards - n)]
        x = jnp.pad(x, pad, constant_values=-jnp.inf)
    local_k = min(k, block)
    spec = P(*([None] * (x.ndim - 1)), axis)

    def per_block(xb):
        vals, idx = jax.lax.top_k(xb, local_k)
        return vals, idx + jax.lax.axis_index(axis) * block

    vals, idx = jax.shard_map(per_block, mesh=mesh, in_specs=spec, out_specs=spec)(x)
    top, pos = jax.lax.top_k(vals, k)
    return top, jnp.take_along_axis(idx, pos, axis=-1)
