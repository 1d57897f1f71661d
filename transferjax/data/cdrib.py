"""CDRIB's processed Amazon Game <-> Video split (Cao et al., ICDE 2022, arXiv:2203.16863).

Layout of `<root>` (e.g. `shared/datasets/cdrib_game_video`): `game_video/` holds the Game
domain (Toys_and_Games) with train.txt and the cold-start valid/test of the task Video -> Game;
`video_game/` holds the Video domain (Video_Games) and the task Game -> Video. Lines are
`user<TAB>item`, ids 0-based and dense per domain, implicit feedback.

Only user ids below `n_overlap` (2179) are the same person in both domains; the overlap lists
the pairs (i, i), i < n_overlap, with interactions in both loaded domains. Ids from 2179 on are
private to one domain. For a target domain the loader keeps its released split in
`CrossDomainData.published` and the concatenation as `target`; the source domain is the other
folder's train.txt (its valid/test hold that domain's own cold users and only size the index).
Sizes (README / *_data_info.txt): Game 25,025 users / 12,319 items; Video 19,457 / 8,751.

Ids are dense indices tied to the published split, and they size the tables, so they are
checked rather than remapped (each a `DataError` naming file and line):
  - ids are non-negative integers that fit int64;
  - over a folder's three files, with n distinct user (item) ids, every user (item) id is
    below 2 * n + 1000 (`_read.id_bound`; the released ids are exactly 0..n-1). A stray id of
    50,000,000 would otherwise size 50M-row tables;
  - every item of valid.txt / test.txt occurs in the same folder's train.txt, as in the
    release: an item with no training row is a file from another folder or split. (Users of
    valid/test are the cold users, absent from train.txt by design: not checked.)
  - a (user, item) pair is in one line of one part only.
"""

from __future__ import annotations

import os

import numpy as np

from transferjax.data._read import Table, check_dense_ids, check_nonnegative, read_table
from transferjax.data.types import CrossDomainData, DataError, Interactions

FOLDERS = {"game": "game_video", "video": "video_game"}
PARTS = ("train", "valid", "test")
N_OVERLAP = 2179


def load_cdrib(
    root: str | os.PathLike, *, target: str = "game", n_overlap: int = N_OVERLAP
) -> CrossDomainData:
    """Loads the CDRIB Game/Video data for one transfer direction.

    Args:
      root: folder holding `game_video/` and `video_game/`.
      target: "game" (task Video -> Game) or "video" (task Game -> Video).
      n_overlap: user ids below this are the same person in both domains.

    Returns:
      CrossDomainData named `cdrib_<source>_<target>`: `target` = train + valid + test of the
      target folder (`published` holds the three parts, same id spaces), `source` = the other
      folder's train; ratings are 1.0; `overlap` = (i, i) for the shared ids i < n_overlap
      present in both; `n_users`/`n_items` = max id + 1 over each domain's three files.

    Raises:
      DataError: malformed files (`path:LINE: ...`), negative or out-of-range ids, a
        valid/test item absent from train.txt, or a (user, item) pair in two parts.
    """
    if target not in FOLDERS:
        raise ValueError(f"target must be one of {tuple(FOLDERS)}, got {target!r}")
    if n_overlap < 0:
        raise ValueError(f"n_overlap must be >= 0, got {n_overlap}")
    source = next(d for d in FOLDERS if d != target)
    tgt_tables = _read_domain(root, FOLDERS[target])
    src_tables = _read_domain(root, FOLDERS[source])
    tgt_size = _size(root, FOLDERS[target], tgt_tables)
    src_size = _size(root, FOLDERS[source], src_tables)
    _check_disjoint(tgt_tables)
    parts = {p: _interactions(t, tgt_size, f"{target}_{p}") for p, t in tgt_tables.items()}
    tgt = _interactions(_concat(list(tgt_tables.values())), tgt_size, target)
    src = _interactions(src_tables["train"], src_size, source)
    both = np.zeros(0, np.int32)
    k = min(n_overlap, src.n_users, tgt.n_users)
    if k:
        both = np.flatnonzero((src.user_counts()[:k] > 0) & (tgt.user_counts()[:k] > 0))
    return CrossDomainData(
        source=src,
        target=tgt,
        overlap=np.stack([both, both], axis=1),
        published=parts,
        name=f"cdrib_{source}_{target}",
    )


def _read_domain(root, folder: str) -> dict:
    tables = {}
    for part in PARTS:
        path = os.path.join(os.fspath(root), folder, f"{part}.txt")
        t = read_table(path, {0: "int", 1: "int"}, sep="\t", header=False, unique=(0, 1))
        check_nonnegative(t, 0, "user id")
        check_nonnegative(t, 1, "item id")
        tables[part] = t
    return tables


def _size(root, folder: str, tables: dict) -> tuple[int, int]:
    """(n_users, n_items) = max id + 1 over the folder's files, once the ids are checked."""
    files = os.path.join(os.fspath(root), folder, "{train,valid,test}.txt")
    size = tuple(
        check_dense_ids(list(tables.values()), c, what, files)
        for c, what in ((0, "user id"), (1, "item id"))
    )
    known = np.zeros(size[1], bool)
    known[tables["train"][1]] = True
    for part in PARTS[1:]:
        t = tables[part]
        bad = np.flatnonzero(~known[t[1]])
        if len(bad):
            raise DataError(
                f"{t.where(bad[0])}: item {int(t[1][bad[0]])} does not occur in "
                f"{tables['train'].source} (CDRIB's valid/test items are items of its train file)"
            )
    return size


def _concat(tables: list) -> Table:
    cols = {c: np.concatenate([t[c] for t in tables]) for c in (0, 1)}
    return Table(cols, "+".join(t.source for t in tables), 1)


def _check_disjoint(tables: dict) -> None:
    """Raises naming both files and lines when a (user, item) pair is in two parts."""
    tabs = list(tables.values())
    n_items = max(int(t[1].max()) + 1 for t in tabs)
    key = np.concatenate([t[0] * n_items + t[1] for t in tabs])
    part = np.concatenate([np.full(len(t), k) for k, t in enumerate(tabs)])
    row = np.concatenate([np.arange(len(t)) for t in tabs])
    order = np.argsort(key, kind="stable")
    rep = np.flatnonzero(key[order[1:]] == key[order[:-1]])
    if len(rep):
        a, b = order[rep[0]], order[rep[0] + 1]
        raise DataError(
            f"{tabs[part[b]].where(row[b])}: pair ({key[b] // n_items}, "
            f"{key[b] % n_items}) also released at {tabs[part[a]].where(row[a])}"
        )


def _interactions(t: Table, size: tuple[int, int], name: str) -> Interactions:
    n_users, n_items = size
    return Interactions(
        user=t[0],
        item=t[1],
        rating=np.ones(len(t), np.float32),
        n_users=n_users,
        n_items=n_items,
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        name=name,
    )
