"""Generic loader for one domain's interactions from a delimited text file (CSV/TSV).

Ids are free-form labels: they are always remapped densely to 0..n-1 in sorted order (numeric
order when every id is an integer that fits int64, else string order), with the raw ids kept
in `user_ids` / `item_ids`. Integer ids that are sparse (`_ids.id_bound`) are remapped the
same way, and the loader says so: a logged note, kept in `Interactions.notes`.
"""

from __future__ import annotations

import os

import numpy as np

from transferjax.data._ids import check_scale, index_ids, sparse_notes
from transferjax.data._read import Key, read_table
from transferjax.data.stream import cached_csv
from transferjax.data.types import Interactions


def load_csv(
    path: str | os.PathLike,
    *,
    user_col: Key,
    item_col: Key,
    rating_col: Key | None = None,
    timestamp_col: Key | None = None,
    sep: str | None = None,
    header: bool = True,
    implicit: bool = False,
    encoding: str = "utf-8",
    name: str | None = None,
    rating_scale: tuple[float, float] | None = None,
    settings: str = "",
    cache: str | os.PathLike | None = None,
) -> Interactions:
    """Loads interactions from a delimited file; raw ids are densified in sorted order.

    Args:
      path: the file.
      user_col, item_col: columns of the raw user and item ids: header names, or 0-based
        indices (always accepted; the only option when `header=False`).
      rating_col: column of the rating; None (or `implicit`) gives every row rating 1.0.
      timestamp_col: optional column of integer (or integral float) timestamps.
      sep: separator ("\\t", ",", "::", "|", ...); None detects tab, else comma.
      header: whether the first line names the columns.
      implicit: treat the data as implicit feedback (ratings 1.0, `rating_col` not read).
      encoding: text encoding.
      name: domain name; defaults to the file's stem.
      rating_scale: (lo, hi): ratings outside it are an error; None: any finite rating of
        magnitude at most 1e9.
      settings: prefix of the config keys behind `encoding` / `rating_scale` ("data." from
        the registry), named in messages.
      cache: a folder for a columnar copy of the file (`transferjax.data.stream.cached_csv`):
        the file is converted once, in blocks, and memory-mapped on later loads; the same
        Interactions as without it. None reads the whole file into memory.

    Returns:
      Interactions with `user_ids`/`item_ids` the sorted distinct raw ids (int64 when every id
      is an integer, else str).

    Raises:
      DataError: `path:LINE: ...` for malformed rows, duplicate (user, item) rows, missing
        columns, an empty file, text not in `encoding`, or a rating that is non-finite,
        beyond 1e9 or outside `rating_scale`.
    """
    if cache is not None:
        return cached_csv(
            path,
            cache,
            user_col=user_col,
            item_col=item_col,
            rating_col=rating_col,
            timestamp_col=timestamp_col,
            sep=sep,
            header=header,
            implicit=implicit,
            encoding=encoding,
            name=name,
            rating_scale=rating_scale,
            settings=settings,
        )
    conv = {user_col: "str", item_col: "str"}
    use_rating = rating_col is not None and not implicit
    if use_rating:
        conv[rating_col] = "rating"
    if timestamp_col is not None:
        conv[timestamp_col] = "timestamp"
    if len(conv) != 2 + use_rating + (timestamp_col is not None):
        raise ValueError(f"user/item/rating/timestamp columns must differ, got {list(conv)}")
    table = read_table(
        path,
        conv,
        sep=sep,
        header=header,
        encoding=encoding,
        unique=(user_col, item_col),
        encoding_setting=f"{settings}encoding",
    )
    if use_rating and rating_scale is not None:
        lo, hi = rating_scale
        check_scale(table, rating_col, rating_scale, f"{settings}rating_scale={lo:g},{hi:g}")
    user, user_ids = index_ids(table[user_col])
    item, item_ids = index_ids(table[item_col])
    n = len(table)
    rating = table[rating_col] if use_rating else np.ones(n, np.float32)
    return Interactions(
        user=user,
        item=item,
        rating=rating,
        n_users=len(user_ids),
        n_items=len(item_ids),
        timestamp=table[timestamp_col] if timestamp_col is not None else None,
        user_ids=user_ids,
        item_ids=item_ids,
        name=name if name is not None else os.path.splitext(os.path.basename(path))[0],
        notes=sparse_notes(table.source, user=user_ids, item=item_ids),
    )
