"""Micro-benchmark of phi's first layer: `X @ table` in a chunked (ELL) layout.

Not part of the library: `transferjax.models.phi` computes phi's first layer densely or packed
(its cost rule picks one per batch shape). The ELL forms here were measured against those
inside the registered `dann` method's training step (`python -m benchmarks.dann_step --layers
dense packed ell`) and were not the fastest on either profile there, so they stay a
benchmark, kept to show what the library's forms were measured against:

- `bag_matmul(table, layout)`: `X @ table` for a sparse X f32[n_rows, n_items] given as
  host-built layouts (`bag_layout`, numpy, once per batch; `stack_layouts` pools batches for
  a `lax.scan`): the forward groups the entries by row into chunks of `width` entries whose
  `width` gathers are summed in one fused loop, then `segment_sum`s the chunk sums into rows;
  the backward `X^T @ g` is the same operation on the transposed layout (entries grouped by
  item), via `jax.custom_vjp`, so no [nnz, d] buffer and no scatter-add of nnz rows into the
  table. With `item_blocks` > 1 the forward chunks are grouped by item range, so each stretch
  of the loop reads one block of the table. `benchmarks.dann_bench` times a hand-written DANN
  step on it (a first-layer micro-benchmark, not the registered method).
- `graph_bag_matmul(table, items, weights, mask, capacity=...)`: the same ELL product with
  the layouts built inside the compiled step from padded bags, as a phi training step must
  (its input/label split is drawn in the graph): the real entries are packed into
  `capacity` slots, chunked by row for the forward and sorted by item for the backward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["bag_layout", "bag_matmul", "ell_layout", "graph_bag_matmul", "stack_layouts"]


def ell_layout(
    seg: np.ndarray,
    idx: np.ndarray,
    w: np.ndarray,
    *,
    n_seg: int,
    width: int,
    seg_name: str = "seg",
) -> dict:
    """Groups entries `(seg_k, idx_k, w_k)` by `seg` into chunks of at most `width` entries.

    Args:
      seg: int[nnz] output row of each entry, in [0, n_seg).
      idx: int[nnz] gathered row of each entry.
      w: f32[nnz] weight of each entry.
      n_seg: number of output rows.
      width: entries per chunk.
      seg_name: what `seg` holds, for the error on an id outside [0, n_seg).

    Returns:
      `{"idx": i32[c, width], "w": f32[c, width], "seg": i32[c]}`, chunks sorted by `seg`;
      padded slots have idx 0 and weight 0.
    """
    seg, idx, w = (np.asarray(a) for a in (seg, idx, w))
    if width < 1:
        raise ValueError(f"ell_layout: width must be >= 1, got {width}")
    if not (seg.ndim == idx.ndim == w.ndim == 1 and len(seg) == len(idx) == len(w)):
        raise ValueError(
            f"ell_layout: seg, idx and w must be 1-d of one length, got shapes "
            f"{seg.shape}, {idx.shape}, {w.shape}"
        )
    _check_range(seg_name, seg, n_seg)
    if not np.all(np.isfinite(w)):
        raise ValueError(
            f"ell_layout: weight of entry {int(np.flatnonzero(~np.isfinite(w))[0])} "
            f"is not finite ({w[~np.isfinite(w)][0]})"
        )
    order = np.lexsort((idx, seg))
    seg, idx, w = seg[order], idx[order], w[order]
    counts = np.bincount(seg, minlength=n_seg)
    pos = np.arange(len(seg)) - (np.cumsum(counts) - counts)[seg]
    n_chunks = -(-counts // width)
    chunk = (np.cumsum(n_chunks) - n_chunks)[seg] + pos // width
    out_idx = np.zeros((int(n_chunks.sum()), width), np.int32)
    out_w = np.zeros((int(n_chunks.sum()), width), np.float32)
    out_idx[chunk, pos % width] = idx
    out_w[chunk, pos % width] = w
    seg_of_chunk = np.repeat(np.arange(n_seg), n_chunks).astype(np.int32)
    return {"idx": out_idx, "w": out_w, "seg": seg_of_chunk}


def bag_layout(
    row: np.ndarray,
    item: np.ndarray,
    weight: np.ndarray,
    *,
    n_rows: int,
    n_items: int,
    width: int = 16,
    item_blocks: int = 1,
) -> dict:
    """Forward (by row) and backward (by item) ELL layouts of the sparse matrix X[row, item].

    Repeated (row, item) entries add up, as in a dense scatter-add.

    Args:
      row, item, weight: the entries of X (int, int, float; one length).
      n_rows, n_items: the shape of X.
      width: entries per chunk.
      item_blocks: the forward chunks are grouped by (item block, row), with items split into
        this many equal ranges: the gathers of one stretch of the chunk loop then read one
        block of the table rows, which can stay in a core's cache where the whole table does
        not. Each row's bag is split at the block edges, which adds about
        `n_rows * (item_blocks - 1) * width / 2` padded slots. 1 groups by row only.
    """
    if item_blocks < 1:
        raise ValueError(f"bag_layout: item_blocks must be >= 1, got {item_blocks}")
    bwd = ell_layout(item, row, weight, n_seg=n_items, width=width, seg_name="item")
    if item_blocks == 1:
        fwd = ell_layout(row, item, weight, n_seg=n_rows, width=width, seg_name="row")
    else:
        row, item = np.asarray(row), np.asarray(item)  # item ids are in range (checked above)
        _check_range("row", row, n_rows)
        block = item.astype(np.int64) * item_blocks // n_items
        fwd = ell_layout(
            block * n_rows + row, item, weight, n_seg=item_blocks * n_rows, width=width
        )
        fwd["seg"] = (fwd["seg"] % n_rows).astype(np.int32)
    return {"fwd": fwd, "bwd": bwd}


def _check_range(name: str, a: np.ndarray, n: int) -> None:
    bad = np.flatnonzero((a < 0) | (a >= n)) if len(a) else []
    if len(bad):
        raise ValueError(f"{name} id {int(a[bad[0]])} of entry {int(bad[0])} is outside [0, {n})")


def _pad_chunks(lay: dict, n_chunks: int) -> dict:
    k = n_chunks - lay["idx"].shape[0]
    last = lay["seg"][-1] if len(lay["seg"]) else 0
    return {
        "idx": np.pad(lay["idx"], ((0, k), (0, 0))),
        "w": np.pad(lay["w"], ((0, k), (0, 0))),
        "seg": np.concatenate([lay["seg"], np.full(k, last, np.int32)]),
    }


def stack_layouts(layouts: list[dict]) -> dict:
    """Stacks per-batch `bag_layout`s into one pool (leading axis), padding chunk counts.

    Padding chunks repeat the last segment id with zero weights, so `seg` stays sorted and
    they add nothing. Put the pool on the device (`jax.tree.map(jnp.asarray, pool)`), then
    index it with a traced `j` as `jax.tree.map(lambda a: a[j], pool)`.
    """
    out = {}
    for part in ("fwd", "bwd"):
        cap = max(lay[part]["idx"].shape[0] for lay in layouts)
        padded = [_pad_chunks(lay[part], cap) for lay in layouts]
        out[part] = {k: np.stack([p[k] for p in padded]) for k in ("idx", "w", "seg")}
    return out


def _ell_reduce(table: jax.Array, lay: dict, n_seg: int, *, seg_sorted: bool) -> jax.Array:
    """out[s] = sum over chunks c of segment s of sum_l w[c, l] * table[idx[c, l]]."""
    idx, w = lay["idx"], lay["w"].astype(table.dtype)
    acc = w[:, 0, None] * table[idx[:, 0]]
    for slot in range(1, idx.shape[1]):  # unrolled: XLA fuses the gathers and the sum
        acc = acc + w[:, slot, None] * table[idx[:, slot]]
    return jax.ops.segment_sum(acc, lay["seg"], num_segments=n_seg, indices_are_sorted=seg_sorted)


def bag_matmul(table: jax.Array, layout: dict, *, n_rows: int) -> jax.Array:
    """`X @ table` for the sparse X described by `layout` (see `bag_layout`).

    Args:
      table: f32[n_items, d].
      layout: `{"fwd": ..., "bwd": ...}` from `bag_layout` (numpy or jax arrays).
      n_rows: rows of X (static).

    Returns:
      f32[n_rows, d]; its gradient w.r.t. `table` is `X^T @ g` through the "bwd" layout.
      The layout receives no gradient.
    """
    n_items = table.shape[0]

    def forward(t, fwd):  # rows are unsorted when item_blocks > 1 (block by block)
        return _ell_reduce(t, fwd, n_rows, seg_sorted=False)

    @jax.custom_vjp
    def matmul(t, fwd, bwd):
        return forward(t, fwd)

    def matmul_fwd(t, fwd, bwd):
        return forward(t, fwd), (fwd, bwd)

    def matmul_bwd(res, g):
        fwd, bwd = res
        zeros = jax.tree.map(_zero_cotangent, (fwd, bwd))
        return (_ell_reduce(g, bwd, n_items, seg_sorted=True), *zeros)

    matmul.defvjp(matmul_fwd, matmul_bwd)
    return matmul(table, layout["fwd"], layout["bwd"])


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)


def _chunk(
    key: jax.Array,
    valid: jax.Array,
    *,
    n_seg: int,
    width: int,
    n_chunks: int,
    presorted: bool = False,
):
    """Slots i32[n_chunks, width] (into the entries; -1 for padding) and segment i32[n_chunks]
    of the valid entries grouped by `key` i32[e] in [0, n_seg), chunks sorted by segment;
    `presorted`: the entries are sorted by key already, invalid ones last (no sort)."""
    e = key.shape[0]
    k = jnp.where(valid, key, n_seg)
    order = jnp.arange(e) if presorted else jnp.argsort(k, stable=True)
    ks = k[order]
    cnt = jax.ops.segment_sum(valid.astype(jnp.int32), jnp.where(valid, key, 0), num_segments=n_seg)
    n_ch = (cnt + width - 1) // width
    first = jnp.cumsum(n_ch) - n_ch
    seg = jnp.minimum(ks, n_seg - 1)
    pos = jnp.arange(e) - (jnp.cumsum(cnt) - cnt)[seg]
    dest = jnp.where(
        ks < n_seg,
        (first[seg] + pos // width) * width + pos % width,
        n_chunks * width + jnp.arange(e),
    )
    slot = (
        jnp.full((n_chunks * width,), -1, jnp.int32)
        .at[dest]
        .set(order.astype(jnp.int32), mode="drop")
    )
    owner = (
        jnp.zeros((n_chunks,), jnp.int32)
        .at[first]
        .max(jnp.arange(n_seg, dtype=jnp.int32), mode="drop")
    )
    return slot.reshape(n_chunks, width), jax.lax.cummax(owner)


def graph_bag_matmul(table, items, weights, mask, *, capacity: int, width: int = 16):
    """`bag_to_dense(items, weights, mask) @ table` f32[b, d] in ELL layouts built in the graph.

    Args:
      table: f32[n_items, d]; items, weights, mask: padded bags [b, L].
      capacity: most real entries of the batch (static); more are dropped.
      width: entries per chunk.
    """
    b, L = mask.shape
    n = table.shape[0]
    m = mask.reshape(-1)
    dest = jnp.where(m, jnp.cumsum(m, dtype=jnp.int32) - 1, capacity + jnp.arange(b * L))

    def put(fill, v):
        return jnp.full((capacity + 1,), fill, v.dtype).at[dest].set(v.reshape(-1), mode="drop")

    row = put(b, jnp.repeat(jnp.arange(b, dtype=jnp.int32), L))
    item = put(0, jnp.clip(items, 0, n - 1).astype(jnp.int32))
    w = put(0, weights.astype(table.dtype))  # slot `capacity`: a zero entry for padding
    f_slot, f_seg = _chunk(
        row, row < b, n_seg=b, width=width, n_chunks=capacity // width + b, presorted=True
    )  # packed row-major
    f_slot = jnp.where(f_slot < 0, capacity, f_slot)

    def reduce(src, idx, wt, seg, n_out):
        return _ell_reduce(src, {"idx": idx, "w": wt, "seg": seg}, n_out, seg_sorted=True)

    @jax.custom_vjp
    def matmul(t, lay):
        return reduce(t, lay["item"][lay["f_slot"]], lay["w"][lay["f_slot"]], lay["f_seg"], b)

    def bwd(lay, g):
        slot, seg = _chunk(
            lay["item"],
            lay["row"] < b,
            n_seg=n,
            width=width,
            n_chunks=capacity // width + min(n, capacity),
        )
        slot = jnp.where(slot < 0, capacity, slot)
        d_table = reduce(g, jnp.minimum(lay["row"], b - 1)[slot], lay["w"][slot], seg, n)
        return d_table, jax.tree.map(_zero_cotangent, lay)

    matmul.defvjp(lambda t, lay: (matmul(t, lay), lay), bwd)
    lay = {
        "item": item,
        "row": row,
        "w": jax.lax.stop_gradient(w),
        "f_slot": f_slot,
        "f_seg": f_seg,
    }
    return matmul(table, lay)
