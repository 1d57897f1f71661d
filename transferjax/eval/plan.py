"""Evaluation plans: the chunk layouts of one held-out set, built once as device arrays.

Every protocol scores fixed-shape chunks of rows; the last chunk is padded by repeating its
first row, and padded rows never count. `transferjax.eval.ranking` walks these layouts chunk by
chunk on the host (the reference path); a plan stacks them into arrays with a leading chunk
axis, so that `transferjax.eval.compiled` scans them inside one compiled program:

* `RatingPlan`: (source user, target user, item, rating) per held-out interaction.
* `SampledPlan`: per held-out interaction its candidates, the positive then its negatives.
* `FullPlan`: per evaluated user (a `HeldOut.pairs` row with >= 1 held-out item) its excluded
  items (`HeldOut.exclude`: training, and for test also valid) and its held-out items, as
  (row within chunk, item) entries padded to one width with item = n_items (dropped by the
  scatters).

Plans are pytrees of device arrays (a `FullPlan`'s n_items is static metadata): held-out sets
whose plans have the same shapes share one compiled program, which `same_shapes` arranges by
padding with empty chunks; `fit_chunk` sizes the chunks of a set smaller than one chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import numpy as np

from transferjax.data.types import HeldOut, Interactions

TIES = ("pessimistic", "optimistic")


def check_heldout(heldout: HeldOut, chunk_size: int, ties: str = "pessimistic") -> None:
    """Raises ValueError on a bad chunk size, tie rule, empty held-out set or pairs row."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    if len(heldout) == 0:
        raise ValueError("heldout has no interactions to evaluate")
    if heldout.row.min() < 0 or heldout.row.max() >= len(heldout.pairs):
        raise ValueError(f"HeldOut.row outside [0, {len(heldout.pairs)})")


def _bucket(n: int) -> int:
    """Next power of two >= max(n, 1): few distinct padded widths, few recompiles."""
    return 1 << max(0, int(n) - 1).bit_length()


def fit_chunk(n_rows: int, chunk_size: int) -> int:
    """Rows per chunk for `n_rows` rows, at most `chunk_size`: as many chunks as `chunk_size`
    needs, balanced and rounded up to a multiple of 8, so that padding stays under 8 rows a
    chunk (a held-out set smaller than one chunk is not padded to a full chunk)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n_chunks = max(1, -(-n_rows // chunk_size))
    per_chunk = -(-n_rows // n_chunks)
    return max(1, min(int(chunk_size), -(-per_chunk // 8) * 8))


def _pad_to(a: np.ndarray, size: int, fill) -> np.ndarray:
    out = np.full((size,) + a.shape[1:], fill, a.dtype)
    out[: len(a)] = a
    return out


def chunk_index(n: int, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices int64[n_chunks, chunk_size] over [0, n), and int64[n_chunks] real rows.

    Padded slots of the last chunk repeat that chunk's first index.
    """
    n_chunks = -(-n // chunk_size)
    idx = np.arange(n_chunks * chunk_size).reshape(n_chunks, chunk_size)
    start = idx[:, :1]
    return np.where(idx < n, idx, start), np.minimum(chunk_size, n - start[:, 0])


def row_chunks(n: int, chunk_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """The rows of `chunk_index` one chunk at a time: (int64[chunk_size], n_real)."""
    idx, n_real = chunk_index(n, chunk_size)
    for row, m in zip(idx, n_real, strict=True):
        yield row, int(m)


def _group(e_pos: np.ndarray, items: np.ndarray, chunk_size: int, n_chunks: int, n_items: int):
    """Groups (user position, item) entries by user chunk.

    Returns:
      order: int64[m] entry indices sorted by chunk; starts: int64[n_chunks + 1] offsets into
      `order`; take(j) -> (row within chunk j: i32[w], item: i32[w]), padded to one width w
      for all chunks with item = n_items (dropped by the kernels' scatters).
    """
    chunk = e_pos // chunk_size
    order = np.argsort(chunk, kind="stable")
    starts = np.searchsorted(chunk[order], np.arange(n_chunks + 1), side="left")
    width = _bucket(int(np.max(np.diff(starts), initial=0)))
    local = (e_pos % chunk_size).astype(np.int32)

    def take(j):
        sel = order[starts[j] : starts[j + 1]]
        return (_pad_to(local[sel], width, 0), _pad_to(items[sel].astype(np.int32), width, n_items))

    return order, starts, take


def user_chunks(heldout: HeldOut, exclude: Interactions | None, n_items: int, chunk_size: int):
    """Evaluated users and, per chunk, their pairs, excluded items and held-out items.

    The excluded items of a user are its rows in `exclude` less its held-out items (a held-out
    item the user also has in `exclude` is ranked, as a positive).

    Yields, per chunk: (src: i32[chunk_size], tgt: i32[chunk_size], n_real, (ex_row, ex_item):
    i32[w_ex] each, (pos_row, pos_item): i32[w_pos] each, entries: int64[m] the indices into
    `heldout` of the chunk's held-out items, in the order of its first m pos entries).
    """
    if heldout.item.min() < 0 or heldout.item.max() >= n_items:
        raise ValueError(f"HeldOut.item outside [0, {n_items})")
    if exclude is not None and exclude.n_items != n_items:
        raise ValueError(f"exclude.n_items={exclude.n_items} but n_items={n_items}")
    rows = np.unique(heldout.row)  # evaluated users: pairs rows with >= 1 held-out item
    pos_of_row = np.full(len(heldout.pairs), -1, np.int64)
    pos_of_row[rows] = np.arange(len(rows))
    h_pos = pos_of_row[heldout.row]
    n_chunks = -(-len(rows) // chunk_size)
    ex_pos = np.zeros(0, np.int64)
    ex_item = np.zeros(0, np.int32)
    if exclude is not None and len(exclude):
        tgt = heldout.pairs[rows, 1]  # a target user may head several rows: expand matches
        by_tgt = np.argsort(tgt, kind="stable")
        lo = np.searchsorted(tgt[by_tgt], exclude.user, side="left")
        cnt = np.searchsorted(tgt[by_tgt], exclude.user, side="right") - lo
        first = np.repeat(lo, cnt)
        offs = np.arange(first.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        ex_pos = by_tgt[first + offs].astype(np.int64)
        ex_item = np.repeat(exclude.item, cnt)
        # an excluded item that is also a held-out item of that user stays a candidate (and a
        # positive): RecBole's history = used - positive
        held = np.unique(h_pos * n_items + heldout.item)
        keep = ~np.isin(ex_pos * n_items + ex_item, held)
        ex_pos, ex_item = ex_pos[keep], ex_item[keep]
    h_order, h_starts, h_take = _group(h_pos, heldout.item, chunk_size, n_chunks, n_items)
    _, _, ex_take = _group(ex_pos, ex_item, chunk_size, n_chunks, n_items)
    pairs = heldout.pairs[rows]
    for j, (idx, n_real) in enumerate(row_chunks(len(rows), chunk_size)):
        entries = h_order[h_starts[j] : h_starts[j + 1]]
        yield (pairs[idx, 0], pairs[idx, 1], n_real, ex_take(j), h_take(j), entries)


def _pytree(*, meta: tuple[str, ...] = ()):
    def register(cls):
        cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
        data = [f.name for f in dataclasses.fields(cls) if f.name not in meta]
        return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=list(meta))

    return register


@_pytree()
class RatingPlan:
    """Held-out ratings in chunks: src, tgt, item i32[n_chunks, chunk]; rating f32[n_chunks,
    chunk]; n_real i32[n_chunks] real rows per chunk (the first ones)."""

    src: jax.Array
    tgt: jax.Array
    item: jax.Array
    rating: jax.Array
    n_real: jax.Array


@_pytree()
class SampledPlan:
    """Sampled candidates in chunks: src, tgt i32[n_chunks, chunk]; items i32[n_chunks, chunk,
    1 + n_neg] (column 0 the positive); n_real i32[n_chunks] real rows per chunk."""

    src: jax.Array
    tgt: jax.Array
    items: jax.Array
    n_real: jax.Array


@_pytree(meta=("n_items",))
class FullPlan:
    """Evaluated users in chunks: src, tgt i32[n_chunks, chunk]; n_real i32[n_chunks]; excluded
    items ex_row, ex_item i32[n_chunks, w_ex] and held-out items pos_row, pos_item
    i32[n_chunks, w_pos] (row within chunk, item; padding item = n_items); n_rel
    i32[n_chunks, chunk] distinct held-out items per user (0 on padded rows)."""

    src: jax.Array
    tgt: jax.Array
    n_real: jax.Array
    ex_row: jax.Array
    ex_item: jax.Array
    pos_row: jax.Array
    pos_item: jax.Array
    n_rel: jax.Array
    n_items: int


def n_rows(plan) -> int:
    """Real rows of a plan (held-out interactions; evaluated users for a `FullPlan`); reads
    `n_real` back from the device."""
    return int(np.asarray(plan.n_real).sum())


def _dev(a: np.ndarray, dtype=np.int32) -> jax.Array:
    return jax.device_put(np.ascontiguousarray(a, dtype))


_ENTRIES = ("ex_row", "ex_item", "pos_row", "pos_item")


def same_shapes(plans: list) -> list:
    """Plans of one kind and chunk size padded to common shapes, so that one compiled program
    serves them all (e.g. valid and test): the chunks added at the end copy the first chunk
    with n_real = 0 (none of their rows counts); entry lists are widened with (row 0, item
    n_items) entries, which the scatters drop."""
    names = [f.name for f in dataclasses.fields(plans[0]) if f.name != "n_items"]
    target = {k: tuple(np.max([getattr(p, k).shape for p in plans], axis=0)) for k in names}
    out = []
    for p in plans:
        fields = {}
        for k in names:
            a = getattr(p, k)
            if a.shape == target[k]:
                continue
            a = np.asarray(a)
            if a.shape[1:] != target[k][1:]:
                if k not in _ENTRIES:
                    raise ValueError(f"plans differ in {k} per chunk: {a.shape} vs {target[k]}")
                fill = p.n_items if k.endswith("_item") else 0
                a = np.pad(a, ((0, 0), (0, target[k][1] - a.shape[1])), constant_values=fill)
            extra = np.zeros_like(a[:1]) if k == "n_real" else a[:1]
            a = np.concatenate([a, np.repeat(extra, target[k][0] - a.shape[0], axis=0)])
            fields[k] = _dev(a, a.dtype)
        out.append(dataclasses.replace(p, **fields) if fields else p)
    return out


def rating_plan(heldout: HeldOut, *, chunk_size: int) -> RatingPlan:
    """The `RatingPlan` of `heldout`, `chunk_size` interactions per chunk."""
    check_heldout(heldout, chunk_size)
    idx, n_real = chunk_index(len(heldout), chunk_size)
    return RatingPlan(
        src=_dev(heldout.source_user[idx]),
        tgt=_dev(heldout.target_user[idx]),
        item=_dev(heldout.item[idx]),
        rating=_dev(heldout.rating[idx], np.float32),
        n_real=_dev(n_real),
    )


def sampled_plan(heldout: HeldOut, *, chunk_size: int) -> SampledPlan:
    """The `SampledPlan` of `heldout` (needs `negatives`), `chunk_size` interactions per chunk."""
    check_heldout(heldout, chunk_size)
    if heldout.negatives is None:
        raise ValueError("HeldOut.negatives is None: this split has no sampled negatives")
    if heldout.negatives.ndim != 2 or len(heldout.negatives) != len(heldout):
        raise ValueError(
            f"HeldOut.negatives must be int32[{len(heldout)}, n_neg], "
            f"got shape {heldout.negatives.shape}"
        )
    items = np.concatenate([heldout.item[:, None], heldout.negatives], axis=1)
    idx, n_real = chunk_index(len(heldout), chunk_size)
    return SampledPlan(
        src=_dev(heldout.source_user[idx]),
        tgt=_dev(heldout.target_user[idx]),
        items=_dev(items[idx]),
        n_real=_dev(n_real),
    )


def full_plan(
    heldout: HeldOut, *, exclude: Interactions | None, n_items: int, chunk_size: int
) -> FullPlan:
    """The `FullPlan` of `heldout`: `chunk_size` evaluated users per chunk, the items of
    `exclude` (target interactions by target user, e.g. `heldout.exclude`, or None) scored
    -inf for their user unless held out for it, over `n_items` items."""
    check_heldout(heldout, chunk_size)
    cols = [[] for _ in range(8)]
    for src, tgt, n_real, (ex_r, ex_i), (p_r, p_i), _ in user_chunks(
        heldout, exclude, n_items, chunk_size
    ):
        real = p_i < n_items
        uniq = np.unique(p_r[real].astype(np.int64) * n_items + p_i[real])
        n_rel = np.bincount(uniq // n_items, minlength=chunk_size)
        for col, a in zip(cols, (src, tgt, n_real, ex_r, ex_i, p_r, p_i, n_rel), strict=True):
            col.append(a)
    src, tgt, n_real, ex_r, ex_i, p_r, p_i, n_rel = (_dev(np.stack(c)) for c in cols)
    return FullPlan(
        src=src,
        tgt=tgt,
        n_real=n_real,
        ex_row=ex_r,
        ex_item=ex_i,
        pos_row=p_r,
        pos_item=p_i,
        n_rel=n_rel,
        n_items=int(n_items),
    )
