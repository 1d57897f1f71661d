"""The dual-domain leave-one-out format of DisenCDR (Cao et al., SIGIR 2022) and UniCDR's
dual-user-intra scenario (WSDM 2023); shared/datasets/disencdr_sport_phone holds Amazon
Sport <-> Phone (github.com/cjx96/DisenCDR, `dataset/`, commit 404726c).

Layout of `<root>`: two folders `<a>_<b>/` and `<b>_<a>/` (`transferjax.data._pair`);
`<a>_<b>/` holds domain a (`sport_phone/` is Sport), as the official loader reads them. Each
holds `train.txt`, `test.txt` and `test_original.txt`, lines `user<TAB>item<TAB>1`, no
header, 0-based ids. Users share one id space (same id = same person; in Sport/Phone all
4,998 users are in both domains); items are per domain, dense over a domain's three files.

  - `test_original.txt`: the held-out item of each user (leave-one-out: one row per user);
  - `test.txt`: `test_original.txt` minus the rows whose item never occurs in the domain's
    train.txt (the author's explanation, DisenCDR issue #2): an ID-based model has never seen
    those items. The official loaders skip such rows anyway (DisenCDR's `read_data` drops a
    test row whose item is not in its train map; UniCDR's keeps only items of its train
    set), so both files give the official code the same test set; here `test_original` is
    the harder evaluation with them kept (`protocols.released_loo_split`).

There is no validation file: `released_loo_split` carves one from train.

Checks (each a `DataError` naming file and line): three tab-separated fields, non-negative
int64 ids, the third field 1, no repeated (user, item) in a file; ids not sparse
(`_ids.check_dense_ids`: users over all six files, items over a domain's three); one row per
user in test_original.txt; a held-out (user, item) is not a train row; a held-out user has
train rows in its domain; test.txt is exactly the rows of test_original.txt whose item occurs
in train.txt.
"""

from __future__ import annotations

import os

import numpy as np

from transferjax.data._ids import check_dense_ids, check_nonnegative
from transferjax.data._pair import implicit_interactions, pair_folders
from transferjax.data._read import Table, read_table
from transferjax.data.types import CrossDomainData, DataError

PARTS = ("train", "test", "test_original")


def load_disencdr(root: str | os.PathLike, *, target: str | None = None) -> CrossDomainData:
    """Loads a DisenCDR-format pair for one direction (the other domain is the source).

    Args:
      root: folder holding `<a>_<b>/` and `<b>_<a>/` (e.g. `sport_phone/`, `phone_sport/`).
      target: the target domain's name ("sport" or "phone"); None: the domain of the first
        folder in sorted order.

    Returns:
      CrossDomainData named `disencdr_<source>_<target>`: `target` = the target's train.txt
      rows then its test_original.txt rows (every released positive); `published` = {"train",
      "test", "test_original"}, one `Interactions` per file in the target's id spaces;
      `source` = the source's train.txt (its held-out rows are the other direction's test and
      never train); ratings 1.0; `overlap` = (u, u) for the users with train rows in both
      domains; `info` = the folder and the domains.

    Raises:
      ValueError: `target` is not one of the pair's domains.
      DataError: no pair of folders, or a file that fails a check (module docstring).
    """
    folders = pair_folders(root)
    domains = tuple(folders)
    target = domains[0] if target is None else target
    if target not in folders:
        raise ValueError(f"target must be one of {domains}, got {target!r}")
    source = next(d for d in domains if d != target)
    tables = {d: _read_domain(folders[d]) for d in (target, source)}
    every = [t for d in (target, source) for t in tables[d].values()]
    files = os.path.join(os.fspath(root), "*", "{train,test,test_original}.txt")
    n_users = check_dense_ids(every, 0, "user id", files)
    n_items = {}
    for d in (target, source):
        dom_files = os.path.join(os.fspath(folders[d]), "{train,test,test_original}.txt")
        n_items[d] = check_dense_ids(list(tables[d].values()), 1, "item id", dom_files)
        _check_domain(tables[d], n_users, n_items[d])
    tt = tables[target]
    size = (n_users, n_items[target])
    parts = {p: implicit_interactions(t, size, f"{target}_{p}") for p, t in tt.items()}
    tgt = implicit_interactions(_concat([tt["train"], tt["test_original"]]), size, target)
    src = implicit_interactions(tables[source]["train"], (n_users, n_items[source]), source)
    both = np.flatnonzero((src.user_counts() > 0) & (parts["train"].user_counts() > 0))
    return CrossDomainData(
        source=src,
        target=tgt,
        overlap=np.stack([both, both], axis=1),
        published=parts,
        name=f"disencdr_{source}_{target}",
        info={
            "path": os.fspath(root),
            "domains": f"{domains[0]} ({folders[domains[0]].name}/), "
            f"{domains[1]} ({folders[domains[1]].name}/)",
        },
    )


def _read_domain(folder) -> dict:
    tables = {}
    for part in PARTS:
        path = os.path.join(os.fspath(folder), f"{part}.txt")
        t = read_table(path, {0: "int", 1: "int", 2: "int"}, sep="\t", header=False, unique=(0, 1))
        check_nonnegative(t, 0, "user id")
        check_nonnegative(t, 1, "item id")
        bad = np.flatnonzero(t[2] != 1)
        if len(bad):
            raise DataError(
                f"{t.where(bad[0])}: third field {int(t[2][bad[0]])}, expected 1 (DisenCDR's "
                "lines are user<TAB>item<TAB>1)"
            )
        tables[part] = t
    return tables


def _check_domain(t: dict, n_users: int, n_items: int) -> None:
    """The leave-one-out checks of one domain's three files (module docstring)."""
    train, test, orig = t["train"], t["test"], t["test_original"]
    seen = {}
    for row, u in enumerate(orig[0].tolist()):
        if u in seen:
            raise DataError(
                f"{orig.where(row)}: user {u} has a second held-out row (first on "
                f"{orig.where(seen[u])}); leave-one-out holds out one item per user"
            )
        seen[u] = row
    has_train = np.bincount(train[0], minlength=n_users) > 0
    in_train = np.bincount(train[1], minlength=n_items) > 0
    train_keys = train[0] * n_items + train[1]
    for held in (orig, test):
        bad = np.flatnonzero(np.isin(held[0] * n_items + held[1], train_keys))
        if len(bad):
            raise DataError(
                f"{held.where(bad[0])}: held-out pair ({int(held[0][bad[0]])}, "
                f"{int(held[1][bad[0]])}) is also a row of {train.source}"
            )
        bad = np.flatnonzero(~has_train[held[0]])
        if len(bad):
            raise DataError(
                f"{held.where(bad[0])}: user {int(held[0][bad[0]])} has no row in "
                f"{train.source} (every held-out user has training rows in its domain)"
            )
    orig_keys = orig[0] * n_items + orig[1]
    bad = np.flatnonzero(~np.isin(test[0] * n_items + test[1], orig_keys))
    if len(bad):
        raise DataError(
            f"{test.where(bad[0])}: pair ({int(test[0][bad[0]])}, {int(test[1][bad[0]])}) is "
            f"not a row of {orig.source} (test.txt is its rows whose item is in train.txt)"
        )
    bad = np.flatnonzero(~in_train[test[1]])
    if len(bad):
        raise DataError(
            f"{test.where(bad[0])}: item {int(test[1][bad[0]])} does not occur in "
            f"{train.source} (test.txt holds only items of train.txt)"
        )
    bad = np.flatnonzero(in_train[orig[1]] & ~np.isin(orig_keys, test[0] * n_items + test[1]))
    if len(bad):
        raise DataError(
            f"{orig.where(bad[0])}: item {int(orig[1][bad[0]])} occurs in {train.source}, yet "
            f"this row is not in {test.source} (test.txt is test_original.txt minus the rows "
            "whose item never occurs in train.txt)"
        )


def _concat(tables: list) -> Table:
    cols = {c: np.concatenate([t[c] for t in tables]) for c in (0, 1)}
    return Table(cols, "+".join(t.source for t in tables), 1)
