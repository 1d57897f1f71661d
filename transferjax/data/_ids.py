"""Raw ids and the range checks loaders apply after `read_table`: densification
(`index_ids`), matching across domains (`match_ids`), the "sparse id" rule (`id_bound`,
`check_dense_ids` for formats whose ids index tables, `sparse_notes` for loaders that remap
them) and value checks (`check_nonnegative`, `check_scale`). Each check raises a
`DataError("path:LINE: ...")` naming the first offending row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from transferjax.data._read import INT64, Key, Table
from transferjax.data.types import DataError

SPARSE_SLACK = 1000
log = logging.getLogger("transferjax.data")


def index_ids(raw) -> tuple[np.ndarray, np.ndarray]:
    """Densifies raw ids: row i gets the rank of raw[i] among the sorted distinct ids.

    Args:
      raw: array[n] or sequence of raw ids (ints or str).

    Returns:
      idx: int32[n] dense index with ids[idx] == raw.
      ids: array[k] distinct raw ids, sorted; numerically (int64) when the input is integer
        or every string id is a canonical integer ("7", not "07"), else as strings.
    """
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "iufb":
        ids, inv = np.unique(raw, return_inverse=True)
        return inv.astype(np.int32).reshape(-1), ids
    raw = raw.tolist() if isinstance(raw, np.ndarray) else list(raw)
    code_of = {s: i for i, s in enumerate(dict.fromkeys(raw))}
    uniq = list(code_of)
    nums = _canonical_ints(uniq)
    if nums is not None:
        order = np.argsort(nums, kind="stable")
        ids = np.asarray(nums, np.int64)[order]
    else:
        names = np.asarray([str(s) for s in uniq], dtype=str) if uniq else np.zeros(0, str)
        order = np.argsort(names, kind="stable")
        ids = names[order]
    rank = np.empty(len(uniq), np.int32)
    rank[order] = np.arange(len(uniq), dtype=np.int32)
    codes = np.fromiter(map(code_of.__getitem__, raw), np.int32, count=len(raw))
    return rank[codes], ids


def match_ids(a_ids: np.ndarray, b_ids: np.ndarray) -> np.ndarray:
    """int32[m, 2] index pairs (i, j) with a_ids[i] == b_ids[j], sorted by raw id.

    Both id arrays must be distinct (as `index_ids` returns them); ids of different types
    (int vs str) never match.
    """
    a, b = np.asarray(a_ids), np.asarray(b_ids)
    if not len(a) or not len(b) or (a.dtype.kind in "iu") != (b.dtype.kind in "iu"):
        return np.zeros((0, 2), np.int32)
    _, ia, ib = np.intersect1d(a, b, assume_unique=True, return_indices=True)
    return np.stack([ia, ib], axis=1).astype(np.int32)


def _canonical_ints(values: list) -> list[int] | None:
    try:
        nums = [int(v) for v in values]
    except (TypeError, ValueError):
        return None
    if nums and not INT64[0] <= min(nums) <= max(nums) <= INT64[1]:
        return None  # labels such as 20-digit codes: kept as strings
    if all(
        isinstance(v, (int, np.integer)) or str(n) == v for v, n in zip(values, nums, strict=True)
    ):
        return nums
    return None


def id_bound(n_distinct: int) -> int:
    """Ids at or above 2 * n_distinct + 1000 are "sparse": a table sized by them would be more
    than twice the ids it holds (the 1000 of slack spares tiny files)."""
    return 2 * int(n_distinct) + SPARSE_SLACK


def check_nonnegative(table: Table, key: Key, what: str) -> None:
    """Raises `path:LINE: negative <what> ...` at the first negative value of `table[key]`."""
    bad = np.flatnonzero(table[key] < 0)
    if len(bad):
        raise DataError(f"{table.where(bad[0])}: negative {what} {int(table[key][bad[0]])}")


def check_dense_ids(tables: Sequence[Table], key: Key, what: str, files: str) -> int:
    """Checks that ids used as table indices are not sparse; returns max id + 1.

    The distinct ids of `key` over all `tables` (files that index one table) give the bound
    `id_bound(n)`; the first row (in table order) with an id at or above it raises, naming the
    file, the line and the id.
    """
    vals = np.concatenate([t[key] for t in tables])
    if not len(vals):
        return 0
    n = len(np.unique(vals))
    bound = id_bound(n)
    for t in tables:
        bad = np.flatnonzero(t[key] >= bound)
        if len(bad):
            v = int(t[key][bad[0]])
            raise DataError(
                f"{t.where(bad[0])}: {what} {v} is out of range: {files} hold {n} distinct "
                f"{what}s, and ids index a table, so they must be below 2 * {n} + "
                f"{SPARSE_SLACK} = {bound}"
            )
    return int(vals.max()) + 1


def sparse_notes(source: str, **ids: np.ndarray) -> tuple[str, ...]:
    """The notes a loader that remaps ids densely gives for each kind of id (keyword: "user",
    "item") whose ids are sparse integers; each note is also logged (logger
    "transferjax.data", level WARNING)."""
    notes = []
    for what, arr in ids.items():
        arr = np.asarray(arr)
        if arr.dtype.kind not in "iu" or not len(arr) or int(arr.max()) < id_bound(len(arr)):
            continue
        note = (
            f"{source}: {what} ids are sparse (largest {int(arr.max())} for {len(arr)} "
            f"distinct): remapped densely to 0..{len(arr) - 1} in sorted order; raw ids kept "
            f"in {what}_ids"
        )
        log.warning("note: %s", note)
        notes.append(note)
    return tuple(notes)


def check_scale(table: Table, key: Key, scale: tuple | None, origin: str) -> None:
    """Raises `path:LINE: rating R is outside [lo, hi] (origin)` for the first rating of
    `table[key]` outside the closed range `scale`; None checks nothing."""
    if scale is None:
        return
    lo, hi = scale
    vals = table[key]
    bad = np.flatnonzero((vals < lo) | (vals > hi))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{table.where(i)}: rating {float(vals[i]):g} is outside the rating scale "
            f"[{lo:g}, {hi:g}] ({origin})"
        )
