"""Douban Book <-> Music (DTCDR / GA-DTCDR release): explicit 1-5 ratings, shared user ids.

Layout: `<root>/douban_{book,music}/ratings.dat`, lines `user<TAB>item<TAB>rating` with 1-based
raw ids and no newline after the last line. Book and Music share one user id space, so the
overlap pairs users with equal raw ids; each domain gets its own dense user and item index.
Real sizes: Book 96,041 ratings / 2,110 users / 6,777 items; Music 69,709 / 1,672 / 5,567;
1,566 users in both.
"""

from __future__ import annotations

import os

from transferjax.data._read import index_ids, match_ids, read_table
from transferjax.data.types import CrossDomainData, Interactions

DOMAINS = ("book", "music")


def load_douban_domain(root: str | os.PathLike, domain: str) -> Interactions:
    """One domain (`book` or `music`) with dense indices over its present users and items."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown Douban domain {domain!r}; choose from {DOMAINS}")
    path = os.path.join(os.fspath(root), f"douban_{domain}", "ratings.dat")
    table = read_table(
        path, {0: "int", 1: "int", 2: "rating"}, sep="\t", header=False, unique=(0, 1)
    )
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
    )


def load_douban(
    root: str | os.PathLike, *, source: str = "book", target: str = "music"
) -> CrossDomainData:
    """Loads the Douban pair with overlap = users whose raw ids appear in both domains.

    Args:
      root: folder holding `douban_book/` and `douban_music/`.
      source, target: the two distinct domains, "book" or "music".

    Returns:
      CrossDomainData named `douban_<source>_<target>`; `overlap`: int32[n, 2] (source user
      index, target user index) of equal raw user ids.

    Raises:
      DataError: malformed files (`path:LINE: ...`) or no shared user.
      ValueError: unknown or equal domains.
    """
    if source == target:
        raise ValueError(f"source and target must differ, got {source!r} twice")
    src = load_douban_domain(root, source)
    tgt = load_douban_domain(root, target)
    return CrossDomainData(
        source=src,
        target=tgt,
        overlap=match_ids(src.user_ids, tgt.user_ids),
        name=f"douban_{source}_{target}",
    )
