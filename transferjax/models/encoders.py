"""User encoders phi: MLP, embedding-bag over a user's items, id embedding, attention pooling.

Every encoder is a pair of pure functions `*_init(key, *, ...) -> params` and
`*_apply(params, ...) -> f32[batch, dim]`; params are dicts (and lists) of arrays.

The embedding-bag encoder is the sparse form of an FC+ReLU tower over a user's dense interest
vector `x: f32[batch, n_items]`: its first layer `relu(x @ W1 + b1)` is computed as
`relu(sum_l w_l * W1[item_l] + b1)` by gathering only the rows of the items the user touched.
`dense_encoder_apply` is the same model evaluated the dense way (reference and benchmarks).
`packed_bag_matmul` is the first layer over a padded batch whose bags are mostly padding: it
packs the real entries into a fixed number of slots first, so it gathers and scatters only
those.

Padded positions in `items: i32[batch, L]` are marked by `mask: bool[batch, L]`; their ids are
clipped into range before the gather and their contribution is zeroed, so any padding id is
safe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Params = dict
MLPParams = list

__all__ = [
    "attention_pool_apply",
    "attention_pool_init",
    "bag_encoder_apply",
    "bag_encoder_init",
    "bag_to_dense",
    "dense_encoder_apply",
    "packed_bag_matmul",
    "id_encoder_apply",
    "id_encoder_init",
    "mlp_apply",
    "mlp_init",
]


def _dense_init(key, fan_in: int, fan_out: int, lead: tuple = ()) -> dict:
    """He-normal weights f32[*lead, fan_in, fan_out] and zero bias f32[*lead, fan_out]."""
    w = jax.random.normal(key, (*lead, fan_in, fan_out), jnp.float32) * math.sqrt(2.0 / fan_in)
    return {"w": w, "b": jnp.zeros((*lead, fan_out), jnp.float32)}


def mlp_init(key, sizes: Sequence[int], *, lead: Sequence[int] = ()) -> MLPParams:
    """Initialise a fully connected stack `sizes[0] -> sizes[1] -> ... -> sizes[-1]`.

    Args:
      key: `jax.random.key`.
      sizes: layer widths including the input width; at least two entries.
      lead: leading stack shape, e.g. `(n_experts,)` for independent MLPs stored stacked
        (apply them with `jax.vmap(mlp_apply)`); empty for one MLP.

    Returns:
      list of `{"w": f32[*lead, in, out], "b": f32[*lead, out]}`, one per layer (He-normal
      weights, zero bias).
    """
    sizes = tuple(int(s) for s in sizes)
    lead = tuple(int(n) for n in lead)
    if len(sizes) < 2 or min(sizes) <= 0:
        raise ValueError(f"mlp_init: sizes needs >= 2 positive widths, got {sizes}")
    keys = jax.random.split(key, len(sizes) - 1)
    return [_dense_init(k, i, o, lead) for k, i, o in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def mlp_apply(
    params: MLPParams,
    x: jax.Array,
    *,
    activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
    final_activation: bool = True,
) -> jax.Array:
    """Apply an MLP: `h <- activation(h @ w + b)` per layer.

    Args:
      params: output of `mlp_init`.
      x: f32[..., sizes[0]].
      activation: elementwise non-linearity.
      final_activation: apply `activation` after the last layer too (False: linear output).

    Returns:
      f32[..., sizes[-1]].
    """
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1 or final_activation:
            h = activation(h)
    return h


# ----------------------------------------------------------------------------- embedding bag


def bag_encoder_init(key, *, n_items: int, dims: Sequence[int] = (256, 128)) -> Params:
    """Initialise the embedding-bag encoder `n_items -> dims[0] -> ... -> dims[-1]`.

    Returns:
      `{"emb": f32[n_items, dims[0]], "b": f32[dims[0]], "mlp": mlp params for dims}`; `emb` is
      the first layer's weight matrix W1 (He-normal with fan-in `n_items`, like a dense layer).
    """
    dims = tuple(int(d) for d in dims)
    if not dims or n_items <= 0:
        raise ValueError(f"bag_encoder_init: need n_items > 0 and >= 1 dim, got {n_items}, {dims}")
    k_emb, k_mlp = jax.random.split(key)
    first = _dense_init(k_emb, n_items, dims[0])
    rest = mlp_init(k_mlp, dims) if len(dims) > 1 else []
    return {"emb": first["w"], "b": first["b"], "mlp": rest}


def bag_encoder_apply(
    params: Params, items: jax.Array, weights: jax.Array, mask: jax.Array
) -> jax.Array:
    """Encode a padded bag of items: `relu(sum_l m_l w_l E[i_l] + b)`, then FC+ReLU layers.

    Equals `dense_encoder_apply(params, bag_to_dense(items, weights, mask, n_items=...))`
    (repeated items add their weights) at a cost of O(L * dims[0]) per user instead of
    O(n_items * dims[0]).

    Args:
      params: output of `bag_encoder_init`.
      items: i32[batch, L] item ids (padding ids are ignored).
      weights: f32[batch, L] interest weights (e.g. ratings or 1.0).
      mask: bool[batch, L] True for real entries.

    Returns:
      f32[batch, dims[-1]].
    """
    emb = params["emb"]
    rows = jnp.take(emb, items, axis=0, mode="clip")  # [b, L, d0]
    w = jnp.where(mask, weights.astype(emb.dtype), jnp.zeros((), emb.dtype))
    h = jax.nn.relu(jnp.einsum("bl,bld->bd", w, rows) + params["b"])
    return mlp_apply(params["mlp"], h)


def dense_encoder_apply(params: Params, x: jax.Array) -> jax.Array:
    """Dense reference path of the bag encoder: `relu(x @ emb + b)`, then FC+ReLU layers.

    Args:
      params: output of `bag_encoder_init`.
      x: f32[batch, n_items] dense interest vectors.

    Returns:
      f32[batch, dims[-1]].
    """
    h = jax.nn.relu(x @ params["emb"] + params["b"])
    return mlp_apply(params["mlp"], h)


def bag_to_dense(
    items: jax.Array, weights: jax.Array, mask: jax.Array, *, n_items: int
) -> jax.Array:
    """Scatter a padded bag into dense interest vectors f32[batch, n_items] (repeats add)."""
    b = items.shape[0]
    w = jnp.where(mask, weights.astype(jnp.float32), 0.0)
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], items.shape)
    cols = jnp.clip(items, 0, n_items - 1)
    return jnp.zeros((b, n_items), jnp.float32).at[rows, cols].add(w)


def packed_bag_matmul(
    table: jax.Array, items: jax.Array, weights: jax.Array, mask: jax.Array, *, capacity: int,
    overflow: str = "dense",
) -> jax.Array:
    """`bag_to_dense(items, weights, mask) @ table`, reading only the bags' real entries.

    The real entries of the padded batch (row-major order) are packed into `capacity` slots
    (unused slots point past the table and are dropped); the slots' table rows are gathered,
    weighted and `segment_sum`-ed into their rows, so the gradient w.r.t. `table` is a
    scatter-add of `capacity` rows rather than a [batch, n_items] product. Cost O(capacity * d +
    batch * L) instead of O(batch * n_items * d): the form for batches whose bags are short next
    to the longest one (e.g. CDRIB's users: 6 items on average, 167 at most).

    Args:
      table: f32[n_items, d].
      items: i32[batch, L] item ids (clipped into range, as in `bag_to_dense`).
      weights: f32[batch, L].
      mask: bool[batch, L] True for real entries.
      capacity: slots (static), e.g. the total length of the `batch` longest bags.
      overflow: what a batch with more real entries than `capacity` gets. "dense": the dense
        product (`lax.cond`), so the result never depends on the capacity; but under `vmap`
        with a batched mask the cond becomes a select and both forms run. "nan": no fallback,
        the whole result is NaN, for callers whose batches fit by construction (distinct
        users, capacity from the longest bags), so a broken promise shows instead of dropping
        entries.

    Returns:
      f32[batch, d].
    """
    if overflow not in ("dense", "nan"):
        raise ValueError(f"packed_bag_matmul: overflow={overflow!r}; valid: dense, nan")
    b, L = mask.shape
    n_items = table.shape[0]
    m = mask.reshape(-1)

    def packed():
        # Real entries go to slots 0, 1, ...; the others to distinct slots past the end
        # (dropped), so the scatter's indices are unique whenever the batch fits.
        flat = jnp.arange(b * L, dtype=jnp.int32)
        dest = jnp.where(m, jnp.cumsum(m, dtype=jnp.int32) - 1, capacity + flat)

        def put(fill, values):
            return jnp.full((capacity,), fill, values.dtype).at[dest].set(
                values.reshape(-1), mode="drop", unique_indices=True)

        row = put(b, jnp.repeat(jnp.arange(b, dtype=jnp.int32), L))
        item = put(n_items, jnp.clip(items, 0, n_items - 1).astype(jnp.int32))
        w = put(0, weights.astype(table.dtype))
        rows = table.at[item].get(mode="fill", fill_value=0)
        return jax.ops.segment_sum(rows * w[:, None], row, num_segments=b,
                                   indices_are_sorted=True)

    if capacity >= b * L:
        return packed()
    fits = jnp.sum(m, dtype=jnp.int32) <= capacity
    if overflow == "nan":
        return jnp.where(fits, packed(), jnp.nan)

    def dense():
        return bag_to_dense(items, weights, mask, n_items=n_items).astype(table.dtype) @ table

    return jax.lax.cond(fits, packed, dense)


# ----------------------------------------------------------------------------- id embedding


def id_encoder_init(key, *, n_users: int, dim: int, scale: float = 0.1) -> Params:
    """User-id embedding table `{"emb": f32[n_users, dim]}` drawn from N(0, scale^2)."""
    if n_users <= 0 or dim <= 0:
        raise ValueError(f"id_encoder_init: need n_users, dim > 0, got {n_users}, {dim}")
    return {"emb": jax.random.normal(key, (n_users, dim), jnp.float32) * scale}


def id_encoder_apply(params: Params, user: jax.Array) -> jax.Array:
    """Look up user embeddings: user i32[batch] -> f32[batch, dim] (ids clipped into range)."""
    return jnp.take(params["emb"], user, axis=0, mode="clip")


# ----------------------------------------------------------------------------- attention pool


def attention_pool_init(key, *, n_items: int, dim: int, hidden: int | None = None) -> Params:
    """Initialise attention pooling over item embeddings.

    Scores come from a one-hidden-layer MLP `s = v . tanh(W e + c)` (additive attention).

    Returns:
      `{"emb": f32[n_items, dim], "w": f32[dim, hidden], "c": f32[hidden], "v": f32[hidden]}`.
    """
    hidden = dim if hidden is None else int(hidden)
    if n_items <= 0 or dim <= 0 or hidden <= 0:
        raise ValueError(
            f"attention_pool_init: need n_items, dim, hidden > 0, got {n_items}, {dim}, {hidden}"
        )
    k_e, k_w, k_v = jax.random.split(key, 3)
    return {
        "emb": jax.random.normal(k_e, (n_items, dim), jnp.float32) * 0.1,
        "w": jax.random.normal(k_w, (dim, hidden), jnp.float32) / math.sqrt(dim),
        "c": jnp.zeros((hidden,), jnp.float32),
        "v": jax.random.normal(k_v, (hidden,), jnp.float32) / math.sqrt(hidden),
    }


def attention_pool_apply(params: Params, items: jax.Array, mask: jax.Array) -> jax.Array:
    """Attention-weighted average of a user's item embeddings.

    `a = softmax_l(s_l)` over unmasked positions, `out = sum_l a_l e_l`, with
    `e_l = emb[items_l]` and `s_l = v . tanh(W e_l + c)`. Masked positions get exactly zero
    weight (their ids and embeddings do not affect the output); a fully masked row gives zeros.

    Args:
      params: output of `attention_pool_init`.
      items: i32[batch, L] item ids.
      mask: bool[batch, L] True for real entries.

    Returns:
      f32[batch, dim].
    """
    e = jnp.take(params["emb"], items, axis=0, mode="clip")  # [b, L, d]
    s = jnp.tanh(e @ params["w"] + params["c"]) @ params["v"]  # [b, L]
    s = jnp.where(mask, s, -1e30)
    a = jax.nn.softmax(s, axis=-1)
    a = jnp.where(mask, a, 0.0)
    e = jnp.where(mask[..., None], e, 0.0)
    return jnp.einsum("bl,bld->bd", a, e)
