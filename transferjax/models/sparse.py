"""Row-sparse (lazy) optimizers for embedding tables.

Dense Adam over a whole table reads and writes every row and both moments every step. Here a
step touches only the rows a batch uses, as large-scale recommenders do (TF `LazyAdam`,
PyTorch `SparseAdam`, FBGEMM row-wise Adagrad):

  1. coalesce: duplicate indices of a table are merged and their gradients summed (fixed
     shapes; leaves given the same index array, such as a table and its bias column, share
     one coalescing plan); indices outside [0, n_rows) are padding and change nothing;
  2. gather the touched rows of the optimizer slots;
  3. apply the update rule to those rows only: new slots and a weight change dw (neither
     rule reads the weights);
  4. scatter the new slot rows back and scatter-add dw into the table (`mode="drop"`
     discards the padding slots).

Rows a step does not touch stay bit-identical, params and slots alike. Leaves given as dense
gradients (e.g. the global offset mu) get the same rule on the whole leaf; leaves in neither
dict are left alone.

Lazy Adam (`lazy_adam`), step t = the global step count (1 at the first step), for a touched
row r with coalesced gradient g_r:

    m_r <- b1 m_r + (1 - b1) g_r,        v_r <- b2 v_r + (1 - b2) g_r^2
    w_r <- w_r - lr * (m_r / (1 - b1^t)) / (sqrt(v_r / (1 - b2^t)) + eps)

Untouched rows keep w, m and v (no decay). This is PyTorch SparseAdam / TF LazyAdam, except eps
is added to the bias-corrected sqrt(v_hat) as in `optax.adam` (those add eps to sqrt(v), i.e.
eps differs by a factor sqrt(1 - b2^t)), so with every row touched every step and no
duplicates it equals `optax.adam` exactly.

Row-wise Adagrad (`rowwise_adagrad`; FBGEMM's EXACT_ROWWISE_ADAGRAD): one accumulator per row
of a leaf with ndim >= 2 (per element of 1-D leaves and scalars):

    G_r <- G_r + mean_d g_{r,d}^2,       w_r <- w_r - lr * g_r / sqrt(G_r + eps)

with G initialised to `initial_accumulator_value` (on 1-D leaves this is `optax.adagrad`).

The state is a `SparseState` whose `hyperparams["learning_rate"]` is a traced f32[] (as
`optax.inject_hyperparams` keeps it), so learning-rate sweeps and vmapped trials work as with
the dense optimizers of `transferjax.train.trainer.make_optimizer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class SparseState(NamedTuple):
    """count: i32[] steps taken; slots: a dict shaped like the params with a tuple of slot
    arrays per leaf; hyperparams: {"learning_rate": f32[]}."""

    count: jax.Array
    slots: dict
    hyperparams: dict


class SparseOptimizer(NamedTuple):
    """An optax-compatible pair (init, update) plus `sparse_update`.

    `init(params) -> SparseState`; `update` raises NotImplementedError (use `sparse_update`);
    `sparse_update(params, state, row_grads, dense_grads) -> (params, state)`.
    """

    init: Callable
    update: Callable
    sparse_update: Callable


class Rule(NamedTuple):
    """A per-row update rule: `slots(leaf) -> tuple` of zero/initial slot arrays, and
    `delta(g, slots, *, t, lr) -> (dw, slots)` over rows (leading axis) or a whole leaf: the
    new weights are w + dw. Neither rule reads w, so a row update is one scatter-add of dw
    instead of a gather of w and a scatter of the new rows."""

    slots: Callable
    delta: Callable


def _adam_rule(*, b1: float, b2: float, eps: float) -> Rule:
    def slots(x):
        return (jnp.zeros_like(x), jnp.zeros_like(x))

    def delta(g, s, *, t, lr):
        m = b1 * s[0] + (1.0 - b1) * g
        v = b2 * s[1] + (1.0 - b2) * g * g
        tf = t.astype(g.dtype)
        m_hat = m / (1.0 - b1**tf)
        v_hat = v / (1.0 - b2**tf)
        return -(lr * m_hat / (jnp.sqrt(v_hat) + eps)), (m, v)  # w + (-x) == w - x exactly

    return Rule(slots, delta)


def _adagrad_rule(*, initial_accumulator_value: float, eps: float) -> Rule:
    def slots(x):
        shape = x.shape[:1] if x.ndim >= 2 else x.shape
        return (jnp.full(shape, initial_accumulator_value, x.dtype),)

    def delta(g, s, *, t, lr):
        # On gathered rows, a leaf with ndim >= 2 has g: [k, ...] and s[0]: [k].
        sq = g * g
        if g.ndim > s[0].ndim:
            sq = jnp.mean(sq.reshape(g.shape[0], -1), axis=-1)
        acc = s[0] + sq
        scale = jax.lax.rsqrt(acc + eps).reshape(acc.shape + (1,) * (g.ndim - acc.ndim))
        return -(lr * g * scale), (acc,)

    return Rule(slots, delta)


# Tables up to this many rows per index coalesce through a scratch table of n_rows + 1 slots
# (one scatter-min, no sort); larger ones sort, since the scratch table's memset grows with
# n_rows. Chosen by `python -m benchmarks.sparse_step` (its `plan` part times both forms).
SCRATCH_ROWS_PER_INDEX = 64


def coalesce_plan(idx: jax.Array, n_rows: int) -> tuple[jax.Array, jax.Array]:
    """Where each entry's gradient goes once duplicates are merged; fixed shapes.

    Args:
      idx: i32[k] row indices; entries outside [0, n_rows) are padding.
      n_rows: rows of the table.
    Returns:
      uidx: i32[k] each distinct valid index once, `n_rows` (a sentinel that gathers as
        padding and is dropped by the scatter) in the other slots.
      slot: i32[k] the slot of `uidx` that entry j's row went to (padding entries go to a
        sentinel slot), so `gsum = segment_sum(g, slot, k)`.
    """
    k = idx.shape[0]
    valid = (idx >= 0) & (idx < n_rows)
    idx = jnp.where(valid, idx, n_rows).astype(jnp.int32)
    pos = jnp.arange(k, dtype=jnp.int32)
    if n_rows <= SCRATCH_ROWS_PER_INDEX * k:
        # first position of each row: scatter-min into a scratch table, read back per entry
        slot = jnp.full((n_rows + 1,), k, jnp.int32).at[idx].min(pos)[idx]
        return jnp.where((slot == pos) & valid, idx, n_rows), slot
    if (n_rows + 1) * k <= 2**31 - 1:
        # One single-operand sort of (index, position) packed in an int32, in place of
        # argsort's (key, payload) sort.
        packed = jnp.sort(idx * k + pos)
        s, order = packed // k, packed % k
    else:
        order = jnp.argsort(idx)
        s = idx[order]
    new = jnp.concatenate([jnp.ones((1,), bool), s[1:] != s[:-1]])
    seg = jnp.cumsum(new.astype(jnp.int32)) - 1
    uidx = jnp.full((k,), n_rows, jnp.int32).at[seg].set(s)
    return uidx, jnp.zeros((k,), jnp.int32).at[order].set(seg)


def coalesce(idx: jax.Array, g: jax.Array, n_rows: int) -> tuple[jax.Array, jax.Array]:
    """Merges duplicate indices, summing their gradients (`coalesce_plan`).

    Args:
      idx: i32[k] row indices; entries outside [0, n_rows) are padding.
      g: f32[k, ...] gradient of each entry's row.
      n_rows: rows of the table.
    Returns:
      uidx: i32[k] distinct valid indices, each once, and `n_rows` (a sentinel) in the
        unused slots.
      gsum: f32[k, ...] summed gradient per slot (padding gradients go to sentinel slots and
        are discarded with them).
    """
    uidx, slot = coalesce_plan(idx, n_rows)
    return uidx, jax.ops.segment_sum(g, slot, num_segments=idx.shape[0])


def _flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": x}} -> {"a/b": x}."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for path, v in flat.items():
        *head, last = path.split("/")
        d = out
        for h in head:
            d = d.setdefault(h, {})
        d[last] = v
    return out


def sparse_update(
    params: dict, state: SparseState, row_grads: dict, dense_grads: dict, *, rule: Rule
) -> tuple[dict, SparseState]:
    """One optimizer step that reads and writes only the touched rows of row-updated leaves.

    Args:
      params: dict of arrays, possibly nested (tables have rows on axis 0); leaves are named
        by their "/"-joined path ("user", "source/item").
      state: from the optimizer's `init(params)`.
      row_grads: {name: (idx i32[k], g f32[k, *row_shape])}: gradient w.r.t. the gathered rows
        `params[name][idx]`; duplicates are summed, idx outside [0, n_rows) is padding.
      dense_grads: {name: g with params[name]'s shape} updated as a whole.
      rule: the update rule (see `lazy_adam`, `rowwise_adagrad`).

    Returns:
      (params, state) with count + 1; leaves in neither dict are returned unchanged.
    """
    overlap = set(row_grads) & set(dense_grads)
    if overlap:
        raise ValueError(f"sparse_update: leaves {sorted(overlap)} given both as rows and dense")
    params, slots = _flatten(params), _flatten(state.slots)
    unknown = (set(row_grads) | set(dense_grads)) - set(params)
    if unknown:
        raise ValueError(f"sparse_update: no params named {sorted(unknown)}; have {sorted(params)}")
    t = state.count + 1
    lr = state.hyperparams["learning_rate"]
    plans: dict = {}  # leaves given the same index array (table and bias) share one plan
    for name, (idx, g) in row_grads.items():
        table = params[name]
        n = table.shape[0]
        plan_key = (id(idx), n)
        if plan_key not in plans:
            plans[plan_key] = (idx, coalesce_plan(idx, n))  # idx kept alive: ids stay unique
        uidx, slot = plans[plan_key][1]
        gsum = jax.ops.segment_sum(g.astype(table.dtype), slot, num_segments=idx.shape[0])
        s = tuple(a.at[uidx].get(mode="clip") for a in slots[name])
        dw, s = rule.delta(gsum, s, t=t, lr=lr)
        params[name] = table.at[uidx].add(dw, mode="drop")  # uidx holds each row once
        slots[name] = tuple(
            a.at[uidx].set(b, mode="drop") for a, b in zip(slots[name], s, strict=True)
        )
    for name, g in dense_grads.items():
        dw, slots[name] = rule.delta(g.astype(params[name].dtype), slots[name], t=t, lr=lr)
        params[name] = params[name] + dw
    return _unflatten(params), SparseState(
        count=t, slots=_unflatten(slots), hyperparams=state.hyperparams
    )


def _optimizer(rule: Rule, lr: float) -> SparseOptimizer:
    def init(params: dict) -> SparseState:
        if not isinstance(params, dict):
            raise ValueError("sparse optimizers take a dict of arrays (possibly nested) as params")
        return SparseState(
            count=jnp.zeros((), jnp.int32),
            slots=_unflatten({k: rule.slots(jnp.asarray(v)) for k, v in _flatten(params).items()}),
            hyperparams={"learning_rate": jnp.asarray(lr, jnp.float32)},
        )

    def update(grads, state, params=None):
        raise NotImplementedError(
            "row-sparse optimizer: call sparse_update(params, state, "
            "row_grads, dense_grads) from a Stage.step"
        )

    def update_rows(params, state, row_grads, dense_grads):
        return sparse_update(params, state, row_grads, dense_grads, rule=rule)

    return SparseOptimizer(init=init, update=update, sparse_update=update_rows)


def lazy_adam(
    *, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> SparseOptimizer:
    """Lazy Adam over row-updated tables (formula in the module docstring)."""
    return _optimizer(_adam_rule(b1=b1, b2=b2, eps=eps), lr)


def rowwise_adagrad(
    *, lr: float, initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> SparseOptimizer:
    """Row-wise Adagrad: one accumulator per table row (formula in the module docstring)."""
    return _optimizer(
        _adagrad_rule(initial_accumulator_value=initial_accumulator_value, eps=eps), lr
    )


def make_sparse_optimizer(name: str, *, lr: float) -> SparseOptimizer:
    """The row-sparse counterpart of a dense optimizer name: adam -> lazy Adam, adagrad ->
    row-wise Adagrad."""
    if name == "adam":
        return lazy_adam(lr=lr)
    if name == "adagrad":
        return rowwise_adagrad(lr=lr)
    raise ValueError(f"mf.sparse supports optimizer adam or adagrad, got {name!r}")
