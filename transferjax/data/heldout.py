"""The held-out parts shared by every protocol: held-out rows grouped by user with their
exclusion masks, seeded negatives, and the small id maps the splits use.

Host-side numpy, deterministic for a given seed (`transferjax.data.protocols` says what is
ranked and excluded).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transferjax.data.types import CrossDomainData, DataError, HeldOut, Interactions

_CHUNK = 1 << 22  # elements of a rows x items key block in `sample_negatives`


def subseed(seed: int, tag: int) -> int:
    """An independent seed for the part `tag` of a split drawn with `seed`."""
    return int(np.random.SeedSequence([int(seed), tag]).generate_state(1)[0])


def source_of(data: CrossDomainData) -> np.ndarray:
    """int32[n_target_users] source user of each target user via the overlap, -1 if none."""
    out = np.full(data.target.n_users, -1, np.int32)
    out[data.overlap[:, 1]] = data.overlap[:, 0]
    return out


def warm_pairs(
    data: CrossDomainData,
    source_train: Interactions,
    target_train: Interactions,
) -> np.ndarray:
    """int32[n, 2] overlap pairs (source user, target user) with training rows in both."""
    ov = data.overlap
    keep = (source_train.user_counts()[ov[:, 0]] > 0) & (target_train.user_counts()[ov[:, 1]] > 0)
    return ov[keep]


def rows_of(users: np.ndarray, parts: list[Interactions]) -> Interactions:
    """The rows of `parts` (one id space) whose user is in `users`, concatenated."""
    sel = [p.select(np.isin(p.user, users)) for p in parts]
    cat = lambda k: np.concatenate([getattr(p, k) for p in sel])  # noqa: E731
    return dataclasses.replace(
        parts[0], user=cat("user"), item=cat("item"), rating=cat("rating"), timestamp=None
    )


def held_out(
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
    exclude = rows_of(users, seen)
    pairs = np.stack([source_of(data)[users], users], axis=1)
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
