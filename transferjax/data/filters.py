"""Row filters applied to each domain when a dataset is read, before any protocol splits it.

RecBole's data filtering, per domain: `filter_domain` deletes the rows rated below
`min_rating` (RecBole's `val_interval: {rating: "[3,inf)"}`), then removes users and items
with fewer than `k_core` rows, again and again until every remaining user and item has at
least `k_core` (RecBole's `user_inter_num_interval` / `item_inter_num_interval` "[k,inf)",
`Dataset._filter_by_inter_num`: each round bans the users and the items below k at once, from
the counts of the rows still there, and drops their rows). What remains is indexed densely
again, so the deleted rows are neither trained on nor ranked, and items left without a row are
no longer candidates. `filter_rows` applies it to both domains of a `CrossDomainData` and
keeps the user and item pairs whose two sides both remain.

Duplicate (user, item) rows, where a loader keeps them, count once each, as in RecBole.
"""

from __future__ import annotations

import numpy as np

from transferjax.data._ids import index_ids
from transferjax.data.types import CrossDomainData, DataError, Interactions


def keep_mask(inter: Interactions, *, min_rating: float | None = None, k_core: int = 0):
    """bool[n] rows of `inter` that survive the rating filter and then the iterative k-core.

    Args:
      inter: one domain's interactions.
      min_rating: rows rated below it are deleted first; None: none is.
      k_core: users and items with fewer rows are removed until none is left; 0 or 1: off.
    """
    keep = np.ones(len(inter), bool)
    if min_rating is not None:
        keep &= inter.rating >= min_rating
    if k_core > 1:
        while True:
            u_cnt = np.bincount(inter.user[keep], minlength=inter.n_users)
            i_cnt = np.bincount(inter.item[keep], minlength=inter.n_items)
            drop = keep & ((u_cnt[inter.user] < k_core) | (i_cnt[inter.item] < k_core))
            if not drop.any():
                break
            keep &= ~drop
    return keep


def filter_domain(
    inter: Interactions, *, min_rating: float | None = None, k_core: int = 0
) -> tuple[Interactions, np.ndarray, np.ndarray]:
    """The rows of `keep_mask`, indexed densely over the users and items they contain.

    Returns:
      (filtered Interactions with `user_ids`/`item_ids` mapped through, int32[n_users] new
      index of each old user (-1: removed), int32[n_items] the same for items).
    """
    keep = keep_mask(inter, min_rating=min_rating, k_core=k_core)
    sub = inter.select(keep)
    user, users = index_ids(sub.user)
    item, items = index_ids(sub.item)
    new_user = np.full(inter.n_users, -1, np.int32)
    new_user[users] = np.arange(len(users))
    new_item = np.full(inter.n_items, -1, np.int32)
    new_item[items] = np.arange(len(items))
    out = Interactions(
        user=user,
        item=item,
        rating=sub.rating,
        n_users=len(users),
        n_items=len(items),
        timestamp=sub.timestamp,
        user_ids=None if inter.user_ids is None else inter.user_ids[users],
        item_ids=None if inter.item_ids is None else inter.item_ids[items],
        name=inter.name,
        notes=inter.notes
        + (
            f"{inter.name}: {int((~keep).sum())} of {len(inter)} rows removed ("
            + ", then ".join(
                ([f"ratings below {min_rating:g}"] if min_rating is not None else [])
                + ([f"a {k_core}-core"] if k_core > 1 else [])
            )
            + f"); {len(users)} users and {len(items)} items remain",
        ),
    )
    return out, new_user, new_item


def _remap_pairs(pairs: np.ndarray, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    a, b = src[pairs[:, 0]], tgt[pairs[:, 1]]
    keep = (a >= 0) & (b >= 0)
    return np.stack([a[keep], b[keep]], axis=1).astype(np.int32)


def filter_rows(
    data: CrossDomainData, *, min_rating: float | None = None, k_core: int = 0, where: str = ""
) -> CrossDomainData:
    """`filter_domain` on the source and on the target of `data`, each on its own rows;
    `overlap` and `item_overlap` keep the pairs whose two sides both remain.

    Raises:
      DataError: `data` ships a published split (its parts are fixed; filtering would change
        them), or a domain has no row left (naming the settings, `where` their prefix).
    """
    if min_rating is None and k_core <= 1:
        return data
    what = f"{where}min_rating={min_rating}, {where}k_core={k_core}"
    if data.published is not None:
        raise DataError(
            f"{data.name}: {what} would change the published split; these filters apply to "
            "datasets without one"
        )
    src, su, si = filter_domain(data.source, min_rating=min_rating, k_core=k_core)
    tgt, tu, ti = filter_domain(data.target, min_rating=min_rating, k_core=k_core)
    for dom in (src, tgt):
        if len(dom) == 0:
            raise DataError(f"{data.name}: no {dom.name} row is left after {what}")
    return CrossDomainData(
        source=src,
        target=tgt,
        overlap=_remap_pairs(data.overlap, su, tu),
        item_overlap=_remap_pairs(data.item_overlap, si, ti),
        name=data.name,
    )
