"""Douban Book <-> Music (DTCDR / GA-DTCDR release): explicit 1-5 ratings, shared user ids.

Layout: `<root>/douban_{book,music}/ratings.dat`, lines `user<TAB>item<TAB>rating` with 1-based
raw ids and no newline after the last line. Book and Music share one user id space, so the
overlap pairs users with equal raw ids; each domain gets its own dense user and item index.
Real sizes: Book 96,041 ratings / 2,110 users / 6,777 items; Music 69,709 / 1,672 / 5,567;
1,566 users in both.

Checks: ids are non-negative integers that fit int64 (remapped densely, so sparse ids only
earn a note, see `_ids.sparse_notes`); ratings lie on the declared 1-5 scale (`RATING_SCALE`,
or the `rating_scale` given); duplicate (user, item) rows are an error. Each names file and line.
"""

from __future__ import annotations

import os

from transferjax.data._ids import check_nonnegative, check_scale, index_ids, match_ids, sparse_notes
from transferjax.data._read import read_table
from transferjax.data.types import CrossDomainData, DataError, Interactions

DOMAINS = ("book", "music")
RATING_SCALE = (1.0, 5.0)


def load_douban_domain(
    root: str | os.PathLike, domain: str, *, rating_scale: tuple | None = RATING_SCALE
) -> Interactions:
    """One domain (`book` or `music`) with dense indices over its present users and items.

    `rating_scale`: (lo, hi) the ratings must lie in (default Douban's 1-5); None: any.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown Douban domain {domain!r}; choose from {DOMAINS}")
    path = _path(root, domain)
    table = read_table(
        path, {0: "int", 1: "int", 2: "rating"}, sep="\t", header=False, unique=(0, 1)
    )
    check_nonnegative(table, 0, "user id")
    check_nonnegative(table, 1, "item id")
    if rating_scale is not None:
        origin = (
            "Douban's declared scale; data.rating_scale overrides it"
            if tuple(rating_scale) == RATING_SCALE
            else f"data.rating_scale={rating_scale[0]:g},{rating_scale[1]:g}"
        )
        check_scale(table, 2, tuple(rating_scale), origin)
    user, user_ids = index_ids(table[0])
    item, item_ids = index_ids(table[1])
    return Interactions(
        user=user,
        item=item,
        rating=table[2],
        n_users=len(user_ids),
        n_items=len(item_ids),
        user_ids=user_ids,
        item_ids=item_ids,
        name=f"douban_{domain}",
        notes=sparse_notes(table.source, user=user_ids, item=item_ids),
    )


def _path(root, domain: str) -> str:
    return os.path.join(os.fspath(root), f"douban_{domain}", "ratings.dat")


def load_douban(
    root: str | os.PathLike,
    *,
    source: str = "book",
    target: str = "music",
    rating_scale: tuple | None = RATING_SCALE,
) -> CrossDomainData:
    """Loads the Douban pair with overlap = users whose raw ids appear in both domains.

    Args:
      root: folder holding `douban_book/` and `douban_music/`.
      source, target: the two distinct domains, "book" or "music".
      rating_scale: (lo, hi) every rating must lie in; None: any finite rating.

    Returns:
      CrossDomainData named `douban_<source>_<target>`; `overlap`: int32[n, 2] (source user
      index, target user index) of equal raw user ids.

    Raises:
      DataError: malformed files, negative ids, ratings off the scale (`path:LINE: ...`) or
        no shared user (naming both files).
      ValueError: unknown or equal domains.
    """
    if source == target:
        raise ValueError(f"source and target must differ, got {source!r} twice")
    src = load_douban_domain(root, source, rating_scale=rating_scale)
    tgt = load_douban_domain(root, target, rating_scale=rating_scale)
    overlap = match_ids(src.user_ids, tgt.user_ids)
    if not len(overlap):
        raise DataError(
            f"{_path(root, source)} and {_path(root, target)}: the domains share no user "
            "(Douban pairs users by equal raw id; none appears in both files)"
        )
    return CrossDomainData(
        source=src,
        target=tgt,
        overlap=overlap,
        name=f"douban_{source}_{target}",
    )
