"""The two-folder layout of the CDRIB and DisenCDR/UniCDR releases: `<a>_<b>/` holds domain a,
`<b>_<a>/` domain b (e.g. `game_video/` is Game, `video_game/` is Video). Domain names come
from the folder names, so a pair's data says which domains it holds.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from transferjax.data._read import Table
from transferjax.data.types import DataError, Interactions


def pair_folders(root: str | os.PathLike) -> dict[str, pathlib.Path]:
    """{domain: folder} of the one pair of domain folders `<a>_<b>/`, `<b>_<a>/` under `root`.

    A folder name is split at each "_" in turn ("toys_games_video" can be "toys_games" +
    "video"), and a split counts when the swapped name is also a folder under `root`. The
    dict is in sorted order of the folder names (Game/Video: game, then video); other
    folders and files under `root` are ignored.

    Raises:
      DataError: `root` is not a folder, holds no such pair, or holds more than one.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one holding <a>_<b>/ and <b>_<a>/)")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    found = {}
    for name in names:
        for k, ch in enumerate(name):
            a, b = name[:k], name[k + 1 :]
            if ch == "_" and a and b and a != b and f"{b}_{a}" in names:
                found.setdefault(frozenset((name, f"{b}_{a}")), {a: name, b: f"{b}_{a}"})
    if len(found) != 1:
        what = "no pair" if not found else f"{len(found)} pairs"
        listed = ", ".join(f"{n}/" for n in names) or "no folders"
        raise DataError(
            f"{root}: {what} of domain folders <a>_<b>/ and <b>_<a>/ (found {listed}); set "
            "data.path to the folder that holds exactly one pair"
        )
    pair = next(iter(found.values()))
    return {d: root / pair[d] for d in sorted(pair, key=pair.get)}


def implicit_interactions(t: Table, size: tuple[int, int], name: str) -> Interactions:
    """A released pair file's rows (columns 0 user, 1 item; ids already dense indices) as
    implicit interactions of a domain of `size` = (n_users, n_items)."""
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
