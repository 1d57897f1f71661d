"""Generic loader for one domain's interactions from a delimited text file (CSV/TSV)."""

from __future__ import annotations

import os

import numpy as np

from transferjax.data._read import Key, index_ids, read_table
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

    Returns:
      Interactions with `user_ids`/`item_ids` the sorted distinct raw ids (int64 when every id
      is an integer, else str).

    Raises:
      DataError: `path:LINE: ...` for malformed rows, duplicate (user, item) rows, missing
        columns or an empty file.
    """
    conv = {user_col: "str", item_col: "str"}
    use_rating = rating_col is not None and not implicit
    if use_rating:
        conv[rating_col] = "rating"
    if timestamp_col is not None:
        conv[timestamp_col] = "timestamp"
    if len(conv) != 2 + use_rating + (timestamp_col is not None):
        raise ValueError(f"user/item/rating/timestamp columns must differ, got {list(conv)}")
    table = read_table(
        path, conv, sep=sep, header=header, encoding=encoding, unique=(user_col, item_col)
    )
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
    )
