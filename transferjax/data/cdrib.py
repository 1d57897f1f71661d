"""CDRIB's released cold-start format for any domain pair (Cao et al., ICDE 2022,
arXiv:2203.16863): Amazon Game <-> Video is the pair in shared/datasets, and the same format
holds CDRIB's other pairs (Cloth/Sport, Phone/Elec, ...).

Layout of `<root>` (e.g. `shared/datasets/cdrib_game_video`): two folders `<a>_<b>/` and
`<b>_<a>/` (`transferjax.data._pair`); `<a>_<b>/` holds domain a (its train.txt and the
cold-start valid/test of the task b -> a), `<b>_<a>/` domain b. Domain names are the folder
names' parts (Game/Video: "game" is Toys_and_Games, "video" is Video_Games). Lines are
`user<TAB>item`, ids 0-based and dense per domain, implicit feedback. The `*_data_info.txt`
preprocessing logs are not read (they disagree with the files: "common user num 2193" for
a split with 2179 shared users).

Only user ids below the overlap threshold T are the same person in both domains; ids from T
on are private to one domain (the same integer in both folders is two people). T is inferred
from the files (`n_overlap` can pin it, and is then checked the same way):

  T = 1 + the largest user id of the four valid/test files.

Why: CDRIB's preprocessing (`dataset/preprocessing/split_data.py`, commit bd98945) numbers
the shared users first, 0..T-1, with the cold users last: with L = int(0.1 T), ids [8L, 9L)
are cold in `<b>_<a>/` and [9L, T) cold in `<a>_<b>/`; its `train_rec.py` likewise takes
"max user id of a test file + 1" as a domain's shared-user count. So T is above every cold
user, and the last shared id is a cold one. (Game/Video: T = 2179, cold users [1736, 1953)
in Video and [1953, 2179) in Game; Cloth/Sport: T = 9828.) The files must agree with T, each
violation a `DataError` naming the file (and line):
  - a folder's valid/test users are its domain's cold users: none has a row in its own
    train.txt;
  - every cold user has a source profile, i.e. rows in the other folder's train.txt (else
    the transfer methods would score it by popularity alone): the error names the user,
    the file and line;
  - every id below T is a user of both domains (has a row in each folder's three files),
    since ids below T are shared; an id missing from a folder contradicts every threshold
    the cold users allow.

For a target domain the loader keeps its released split in `CrossDomainData.published` and the
concatenation as `target`; the source domain is the other folder's train.txt (its valid/test
hold that domain's own cold users and only size the index). `CrossDomainData.info` records the
folder, the domains and T (`transferjax data describe` shows them).

Ids are dense indices tied to the published split, and they size the tables, so they are
checked rather than remapped (each a `DataError` naming file and line):
  - ids are non-negative integers that fit int64;
  - over a folder's three files, with n distinct user (item) ids, every user (item) id is
    below 2 * n + 1000 (`_ids.id_bound`; the released ids are exactly 0..n-1). A stray id of
    50,000,000 would otherwise size 50M-row tables;
  - every item of valid.txt / test.txt occurs in the same folder's train.txt, as in the
    release: an item with no training row is a file from another folder or split;
  - a (user, item) pair is in one line of one part only.
"""

from __future__ import annotations

import os

import numpy as np

from transferjax.data._ids import check_dense_ids, check_nonnegative
from transferjax.data._pair import implicit_interactions, pair_folders
from transferjax.data._read import Table, read_table
from transferjax.data.types import CrossDomainData, DataError

PARTS = ("train", "valid", "test")
N_OVERLAP = 2179  # Game/Video's threshold, as the files give it


def load_cdrib(
    root: str | os.PathLike, *, target: str | None = None, n_overlap: int | None = None
) -> CrossDomainData:
    """Loads a CDRIB-format pair for one transfer direction.

    Args:
      root: folder holding `<a>_<b>/` and `<b>_<a>/` (e.g. `game_video/`, `video_game/`).
      target: the target domain's name, a or b (Game/Video: "game", task Video -> Game, or
        "video"); None: the domain of the first folder in sorted order ("game").
      n_overlap: user ids below this are the same person in both domains; None infers it
        (module docstring); a given value is checked against the files the same way.

    Returns:
      CrossDomainData named `cdrib_<source>_<target>`: `target` = train + valid + test of the
      target folder (`published` holds the three parts, same id spaces), `source` = the other
      folder's train; ratings are 1.0; `overlap` = (i, i) for the shared ids i < T present in
      both; `n_users`/`n_items` = max id + 1 over each domain's three files; `info` = the
      folder, the domains and the threshold.

    Raises:
      ValueError: `target` is not one of the pair's domains; `n_overlap` < 0.
      DataError: no pair of folders; malformed files (`path:LINE: ...`), negative or
        out-of-range ids, a valid/test item absent from train.txt, a (user, item) pair in two
        parts, or files that contradict the threshold (a cold user with training rows in its
        own domain or without a source profile, an id below T missing from a folder).
    """
    folders = pair_folders(root)
    domains = tuple(folders)
    target = domains[0] if target is None else target
    if target not in folders:
        raise ValueError(f"target must be one of {domains}, got {target!r}")
    if n_overlap is not None and n_overlap < 0:
        raise ValueError(f"n_overlap must be >= 0, got {n_overlap}")
    source = next(d for d in domains if d != target)
    tables = {d: _read_domain(folders[d]) for d in (target, source)}
    sizes = {d: _size(folders[d], tables[d]) for d in (target, source)}
    for d in (target, source):
        _check_disjoint(tables[d])
    threshold = overlap_threshold(tables, n_overlap)
    tgt_tables = tables[target]
    tgt_size = sizes[target]
    parts = {p: implicit_interactions(t, tgt_size, f"{target}_{p}") for p, t in tgt_tables.items()}
    tgt = implicit_interactions(_concat(list(tgt_tables.values())), tgt_size, target)
    src = implicit_interactions(tables[source]["train"], sizes[source], source)
    both = np.zeros(0, np.int32)
    k = min(threshold, src.n_users, tgt.n_users)
    if k:
        both = np.flatnonzero((src.user_counts()[:k] > 0) & (tgt.user_counts()[:k] > 0))
    how = "given" if n_overlap is not None else "inferred"
    return CrossDomainData(
        source=src,
        target=tgt,
        overlap=np.stack([both, both], axis=1),
        published=parts,
        name=f"cdrib_{source}_{target}",
        info={
            "path": os.fspath(root),
            "domains": f"{domains[0]} ({folders[domains[0]].name}/), "
            f"{domains[1]} ({folders[domains[1]].name}/)",
            "overlap_threshold": f"{threshold} ({how}: user ids below it are shared)",
        },
    )


def overlap_threshold(tables: dict, n_overlap: int | None = None) -> int:
    """The overlap threshold T of a CDRIB pair, inferred (or `n_overlap` checked); the rule
    and the checks are in the module docstring.

    Args:
      tables: {domain: {"train", "valid", "test": Table}} for both domains of the pair.
      n_overlap: a given threshold to check instead of inferring one.

    Raises:
      DataError: naming the file (and line) where the files contradict the threshold.
    """
    (a, ta), (b, tb) = tables.items()
    other = {a: tb, b: ta}
    cold = [(d, t[p]) for d, t in tables.items() for p in PARTS[1:]]
    for d, t in cold:  # a folder's valid/test users are cold in its domain
        bad = np.flatnonzero(np.isin(t[0], tables[d]["train"][0]))
        if len(bad):
            raise DataError(
                f"{t.where(bad[0])}: user {int(t[0][bad[0]])} also has rows in "
                f"{tables[d]['train'].source}: CDRIB's valid/test users are the cold users of "
                "their domain, with no training row in it"
            )
    d_top, t_top = max(cold, key=lambda c: int(c[1][0].max()))
    row = int(np.argmax(t_top[0]))
    top, top_at = int(t_top[0][row]), t_top.where(row)
    if n_overlap is not None and top >= n_overlap:
        raise DataError(
            f"{top_at}: cold user {top} is not below n_overlap={n_overlap}: cold users are "
            "shared users, whose ids are below the overlap threshold"
        )
    threshold = top + 1 if n_overlap is None else int(n_overlap)
    for d, t in cold:  # every cold user has a source profile
        src = other[d]["train"]
        bad = np.flatnonzero(~np.isin(t[0], src[0]))
        if len(bad):
            raise DataError(
                f"{t.where(bad[0])}: cold user {int(t[0][bad[0]])} of {d} has no source "
                f"profile: no row in {src.source} (a cold user is evaluated from the other "
                "domain's interactions; are the two folders from one release?)"
            )
    for d, t in tables.items():  # every id below the threshold is a user of both domains
        present = np.zeros(threshold, bool)
        for p in PARTS:
            users = t[p][0]
            present[users[users < threshold]] = True
        missing = np.flatnonzero(~present)
        if len(missing):
            files = os.path.join(os.path.dirname(t["train"].source), "{train,valid,test}.txt")
            why = (
                f"n_overlap={n_overlap} makes ids below it shared"
                if n_overlap is not None
                else f"the cold user {top} at {top_at} puts the overlap threshold at {threshold}"
                " or above, and ids below it are users of both domains"
            )
            raise DataError(
                f"{files}: no row of user {int(missing[0])} of {d}, yet {why}: the files "
                "contradict every overlap threshold"
            )
    return threshold


def _read_domain(folder) -> dict:
    tables = {}
    for part in PARTS:
        path = os.path.join(os.fspath(folder), f"{part}.txt")
        t = read_table(path, {0: "int", 1: "int"}, sep="\t", header=False, unique=(0, 1))
        check_nonnegative(t, 0, "user id")
        check_nonnegative(t, 1, "item id")
        tables[part] = t
    return tables


def _size(folder, tables: dict) -> tuple[int, int]:
    """(n_users, n_items) = max id + 1 over the folder's files, once the ids are checked."""
    files = os.path.join(os.fspath(folder), "{train,valid,test}.txt")
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
