"""Sparse-times-dense matmul in a chunked (ELL) layout: the fast sparse first layer of phi.

`bag_matmul(table, layout)` computes `X @ table` for a sparse interest matrix
`X: f32[n_rows, n_items]` (a batch of users' bags: X[r, i] = weight of item i in row r's bag)
without the dense matrix and without materialising one gathered row per bag entry:

- forward: the entries are grouped by row into chunks of `width` entries (an ELL layout, the
  last chunk of a row zero-padded); `width` gathers of `[n_chunks, d]` rows are multiplied by
  their weights and summed in one fused loop, then the chunk sums are `segment_sum`-ed into
  rows (a scatter of n_chunks rows, not of nnz rows). With `item_blocks` > 1 the chunks are
  grouped by item range first, so each stretch of the loop gathers from one block of the
  table, which pays once the table outgrows a core's cache (the DANN step below has a
  3,706 x 256 table, 3.8 MB); its 4 blocks were chosen by
  `python -m benchmarks.op_profile --cases dann_bag --item-blocks 1`, then `4` (figures in
  BENCHMARKS.md);
- backward: `d table = X^T @ g` is the same operation on the transposed layout (entries
  grouped by item, gathering rows of `g: f32[n_rows, d]`), via `jax.custom_vjp`, so there is
  no scatter-add of nnz rows into the table either.

The layouts are built on the host (`bag_layout`, numpy) once per batch; a pool of batches
(`stack_layouts`) is indexed inside a jitted `lax.scan`, as in this DANN step over ML-1M-sized
bags (`benchmarks/dann_bench.py` times it against dense and PyTorch steps):

    lay = jax.tree.map(jnp.asarray, stack_layouts(
        [bag_layout(row, item, w, n_rows=512, n_items=3706, item_blocks=4)
         for row, item, w in batches]))
    def loss(params, j):  # j: the pool index of this step's batch
        z = ell_encoder_apply(params["phi"], jax.tree.map(lambda a: a[j], lay), n_rows=512)
        return dann_loss(params["disc"], z[:256], z[256:], lam=1.0)[0]

On XLA:CPU a plain gather of nnz rows (`table[items]`, then `segment_sum`) writes an
[nnz, d] buffer, and the DANN step above runs slower with it (`jax_bag_flat` against `jax_bag`
in BENCHMARKS.md's DANN step table: `python -m benchmarks.speed --only dann`). The dense matmul
pays O(n_rows * n_items * d).
`ell_encoder_apply(params, layout)` equals `dense_encoder_apply(params, X)` for params from
`bag_encoder_init`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.models.encoders import mlp_apply

__all__ = ["bag_layout", "bag_matmul", "ell_encoder_apply", "ell_layout", "stack_layouts"]


def ell_layout(seg: np.ndarray, idx: np.ndarray, w: np.ndarray, *, n_seg: int,
               width: int, seg_name: str = "seg") -> dict:
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
        raise ValueError(f"ell_layout: seg, idx and w must be 1-d of one length, got shapes "
                         f"{seg.shape}, {idx.shape}, {w.shape}")
    _check_range(seg_name, seg, n_seg)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"ell_layout: weight of entry {int(np.flatnonzero(~np.isfinite(w))[0])} "
                         f"is not finite ({w[~np.isfinite(w)][0]})")
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


def bag_layout(row: np.ndarray, item: np.ndarray, weight: np.ndarray, *, n_rows: int,
               n_items: int, width: int = 16, item_blocks: int = 1) -> dict:
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
        fwd = ell_layout(block * n_rows + row, item, weight, n_seg=item_blocks * n_rows,
                         width=width)
        fwd["seg"] = (fwd["seg"] % n_rows).astype(np.int32)
    return {"fwd": fwd, "bwd": bwd}


def _check_range(name: str, a: np.ndarray, n: int) -> None:
    bad = np.flatnonzero((a < 0) | (a >= n)) if len(a) else []
    if len(bad):
        raise ValueError(f"{name} id {int(a[bad[0]])} of entry {int(bad[0])} is outside "
                         f"[0, {n})")


def _pad_chunks(lay: dict, n_chunks: int) -> dict:
    k = n_chunks - lay["idx"].shape[0]
    last = lay["seg"][-1] if len(lay["seg"]) else 0
    return {"idx": np.pad(lay["idx"], ((0, k), (0, 0))), "w": np.pad(lay["w"], ((0, k), (0, 0))),
            "seg": np.concatenate([lay["seg"], np.full(k, last, np.int32)])}


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
    return jax.ops.segment_sum(acc, lay["seg"], num_segments=n_seg,
                               indices_are_sorted=seg_sorted)


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


def ell_encoder_apply(params: dict, layout: dict, *, n_rows: int) -> jax.Array:
    """The bag encoder over an ELL layout: `relu(X @ emb + b)`, then FC+ReLU layers.

    Args:
      params: output of `transferjax.models.encoders.bag_encoder_init`.
      layout: `bag_layout` of the batch's interest matrix X f32[n_rows, n_items].
      n_rows: batch rows (static).

    Returns:
      f32[n_rows, dims[-1]], equal to `dense_encoder_apply(params, X)`.
    """
    h = jax.nn.relu(bag_matmul(params["emb"], layout, n_rows=n_rows) + params["b"])
    return mlp_apply(params["mlp"], h)
