"""phi: the user encoder of the phi-family methods, one model with three kinds of first layer.

phi maps each user's bag of entries of one domain, a padded batch `items i32[b, L]`,
`rating f32[b, L]`, `mask bool[b, L]` (True: a real entry), to `z f32[b, dims[-1]]`:

    z = MLP(relu(h))    (z = h when dims has one entry)

where h f32[b, dims[0]] is the first layer and MLP the FC+ReLU stack `dims[0] -> ... ->
dims[-1]` with a linear last layer (the common space is signed). First layers, by `kind`:

- "bag": `h = x @ W1 + b1` over the user's interest vector x f32[n_items], the shrunk mean of
  the bag's n real entries (`interest`), like a ridge estimate (short bags give a smaller x):

      explicit ratings:  x_i = (r_ui - mu) / (n + SHRINK)   (mu: the domain's mean rating)
      implicit feedback: x_i = 1 / (n + SHRINK)

  `x @ W1` takes one of two exact forms (`first_layer`), picked per batch shape by one cost
  rule (`choose_layer`): "dense" scatters the bags into f32[b, n_items] and multiplies;
  "packed" gathers only the rows of the batch's real entries, packed into `capacity` slots
  (the most entries the b rows can hold), sums them per row, and its gradient scatter-adds
  those rows. One packed slot, forward and backward, costs about PACKED_COST cells of the
  dense product (a constant chosen by `python -m benchmarks.phi_layer`), so batches of
  long-tailed bags (few entries next to the longest) pack and long, dense bags do not.
- "attention": an additive-attention pool of the embeddings of the bag's items (ratings unused).
- "id": an embedding of the user index (it memorises and cannot encode unseen users).

`encoder(kind=..., ...)` gives the pair `(init, apply)`. Padded slots may hold any item id:
ids are clipped into range and padded slots weigh nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from transferjax.models.mlp import dense_init, mlp_apply, mlp_init

__all__ = [
    "KINDS",
    "LAYERS",
    "PACKED_COST",
    "SHRINK",
    "bag_to_dense",
    "choose_layer",
    "encoder",
    "first_layer",
    "interest",
    "packed_matmul",
]

SHRINK = 5.0  # pseudo-count of the shrunk mean (module docstring)
PACKED_COST = 100  # dense cells one packed slot costs: `python -m benchmarks.phi_layer`
KINDS = ("bag", "attention", "id")
LAYERS = ("dense", "packed")


def interest(
    rating: jax.Array, mask: jax.Array, *, mu: float = 0.0, explicit: bool = False
) -> jax.Array:
    """Interest weights f32[b, L] of the bags' entries: the shrunk mean (module docstring)."""
    m = mask.astype(jnp.float32)
    w = m / (jnp.sum(m, axis=1, keepdims=True) + SHRINK)
    return (rating - mu) * w if explicit else w


def bag_to_dense(items, weights, mask, *, n_items: int) -> jax.Array:
    """The bags as dense vectors f32[b, n_items] (repeated items add their weights)."""
    b = items.shape[0]
    w = jnp.where(mask, weights.astype(jnp.float32), 0.0)
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], items.shape)
    cols = jnp.clip(items, 0, n_items - 1)
    return jnp.zeros((b, n_items), jnp.float32).at[rows, cols].add(w)


def packed_matmul(
    table, items, weights, mask, *, capacity: int, overflow: str = "dense"
) -> jax.Array:
    """`bag_to_dense(items, weights, mask) @ table` f32[b, d], reading only the real entries.

    The real entries (row-major) go to slots 0, 1, ... of `capacity` slots (the others point
    past the table and read zeros); the slots' rows of `table` f32[n_items, d] are weighted and
    `segment_sum`-ed into their rows, so the gradient w.r.t. `table` is a scatter-add of
    `capacity` rows. `overflow`: what a batch with more than `capacity` entries gets: "dense"
    the dense product (`lax.cond`; under `vmap` with a batched mask both forms run), "nan" a
    NaN result, for batches that fit by construction (distinct users) so a broken promise
    shows instead of dropping entries.
    """
    if overflow not in ("dense", "nan"):
        raise ValueError(f"packed_matmul: overflow={overflow!r}; valid: dense, nan")
    b, L = mask.shape
    n_items = table.shape[0]
    m = mask.reshape(-1)

    def packed():
        flat = jnp.arange(b * L, dtype=jnp.int32)  # unused entries go to distinct dropped slots
        dest = jnp.where(m, jnp.cumsum(m, dtype=jnp.int32) - 1, capacity + flat)

        def put(fill, values):
            return (
                jnp.full((capacity,), fill, values.dtype)
                .at[dest]
                .set(values.reshape(-1), mode="drop", unique_indices=True)
            )

        row = put(b, jnp.repeat(jnp.arange(b, dtype=jnp.int32), L))
        item = put(n_items, jnp.clip(items, 0, n_items - 1).astype(jnp.int32))
        w = put(0, weights.astype(table.dtype))
        rows = table.at[item].get(mode="fill", fill_value=0)
        return jax.ops.segment_sum(rows * w[:, None], row, num_segments=b, indices_are_sorted=True)

    if capacity >= b * L:
        return packed()
    fits = jnp.sum(m, dtype=jnp.int32) <= capacity
    if overflow == "nan":
        return jnp.where(fits, packed(), jnp.nan)

    def dense():
        return bag_to_dense(items, weights, mask, n_items=n_items).astype(table.dtype) @ table

    return jax.lax.cond(fits, packed, dense)


def choose_layer(*, batch: int, capacity: int | None, n_items: int) -> str:
    """The first layer's form for a batch shape: "packed" when PACKED_COST * capacity <=
    batch * n_items (module docstring), else "dense"; `capacity` None: always "dense"."""
    if capacity is not None and PACKED_COST * capacity <= batch * n_items:
        return "packed"
    return "dense"


def first_layer(
    table, items, weights, mask, *, layer: str, capacity: int = 0, overflow: str = "dense"
) -> jax.Array:
    """`x @ table` f32[b, d] of the bags' interest vectors in form `layer` (LAYERS).

    Args:
      table: f32[n_items, d]; items, weights, mask: the bags [b, L].
      capacity, overflow: of the packed form (`packed_matmul`).
    """
    if layer == "packed":
        return packed_matmul(table, items, weights, mask, capacity=capacity, overflow=overflow)
    if layer == "dense":
        return bag_to_dense(items, weights, mask, n_items=table.shape[0]) @ table
    raise ValueError(f"phi first layer {layer!r}; valid: {', '.join(LAYERS)}")


def attention_pool_init(key, *, n_items: int, dim: int) -> dict:
    """Item embeddings and the scorer `s = v . tanh(W e + c)` of additive attention."""
    k_e, k_w, k_v = jax.random.split(key, 3)
    return {
        "emb": jax.random.normal(k_e, (n_items, dim), jnp.float32) * 0.1,
        "w": jax.random.normal(k_w, (dim, dim), jnp.float32) / math.sqrt(dim),
        "c": jnp.zeros((dim,), jnp.float32),
        "v": jax.random.normal(k_v, (dim,), jnp.float32) / math.sqrt(dim),
    }


def attention_pool_apply(params: dict, items, mask) -> jax.Array:
    """`sum_l a_l e_l` f32[b, dim], `a = softmax(s)` over the real entries (an empty bag: 0)."""
    e = jnp.take(params["emb"], items, axis=0, mode="clip")  # [b, L, dim]
    s = jnp.tanh(e @ params["w"] + params["c"]) @ params["v"]
    a = jnp.where(mask, jax.nn.softmax(jnp.where(mask, s, -1e30), axis=-1), 0.0)
    return jnp.einsum("bl,bld->bd", a, jnp.where(mask[..., None], e, 0.0))


def encoder(
    *,
    kind: str,
    n_items: int,
    n_users: int,
    dims: Sequence[int],
    mu: float = 0.0,
    explicit: bool = False,
    capacity: Callable[[int], int] | None = None,
) -> tuple[Callable, Callable]:
    """phi of one domain as `(init, apply)`.

    Args:
      kind: "bag" | "attention" | "id" (module docstring).
      n_items, n_users: the domain's item and user counts.
      dims: layer widths; dims[0] is the first layer's, dims[-1] the output's.
      mu, explicit: the interest vector's centre and whether ratings are explicit ("bag").
      capacity: `capacity(b)`, the most real entries a batch of b rows holds ("bag"; None:
        the dense first layer only).

    Returns:
      `init(key) -> params` and `apply(params, items i32[b, L], rating f32[b, L],
      mask bool[b, L], users i32[b] | None = None, *, distinct=False) -> f32[b, dims[-1]]`;
      `users` is read by "id" only; `distinct` promises rows of distinct users (or empty), as a
      training batch, so the packed form needs no dense fallback (`packed_matmul` "nan").
    """
    dims = tuple(int(d) for d in dims)
    if kind not in KINDS:
        raise ValueError(f"phi encoder kind {kind!r}; valid: {', '.join(KINDS)}")
    if not dims or min(dims) <= 0 or n_items <= 0 or n_users <= 0:
        raise ValueError(
            f"phi encoder: need n_items, n_users > 0 and positive dims, got "
            f"{n_items}, {n_users}, {dims}"
        )

    def init(key) -> dict:
        k1, k2 = jax.random.split(key)
        if kind == "bag":
            k_emb, k_mlp = jax.random.split(k1)
            first = dense_init(k_emb, n_items, dims[0])  # W1 [n_items, dims[0]], b1
            return {
                "emb": first["w"],
                "b": first["b"],
                "mlp": mlp_init(k_mlp, dims) if len(dims) > 1 else [],
            }
        mlp = mlp_init(k2, dims) if len(dims) > 1 else []
        if kind == "attention":
            return {"pool": attention_pool_init(k1, n_items=n_items, dim=dims[0]), "mlp": mlp}
        emb = jax.random.normal(k1, (n_users, dims[0]), jnp.float32) * 0.1
        return {"id": {"emb": emb}, "mlp": mlp}

    def apply(params, items, rating, mask, users=None, *, distinct: bool = False):
        if kind == "bag":
            b = mask.shape[0]
            cap = capacity(b) if capacity is not None else None
            layer = choose_layer(batch=b, capacity=cap, n_items=n_items)
            w = interest(rating, mask, mu=mu, explicit=explicit)
            items = jnp.clip(items, 0, n_items - 1)
            h = (
                first_layer(
                    params["emb"],
                    items,
                    w,
                    mask,
                    layer=layer,
                    capacity=cap or 0,
                    overflow="nan" if distinct else "dense",
                )
                + params["b"]
            )
        elif kind == "attention":
            h = attention_pool_apply(params["pool"], items, mask)
        else:
            h = jnp.take(params["id"]["emb"], jnp.maximum(users, 0), axis=0, mode="clip")
        if not params["mlp"]:
            return h
        return mlp_apply(params["mlp"], jax.nn.relu(h), final_activation=False)

    return init, apply
