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

import numpy as np

from transferjax.data.heldout import (
    held_out,
    sample_negatives,
    subseed,
    warm_pairs,
)
from transferjax.data.types import CrossDomainData, DataError, Split
from transferjax.data.warm import released_loo_split, warm_loo_split, warm_ratio_split

__all__ = [
    "cold_start_split",
    "describe",
    "published_split",
    "released_loo_split",
    "sample_negatives",
    "warm_loo_split",
    "warm_ratio_split",
]


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
    warm = warm_pairs(data, data.source, target_train)
    if len(warm) == 0:
        raise DataError(
            f"{where}: no warm overlap user is left to learn the transfer from "
            f"(protocol.beta={beta}): lower protocol.beta"
        )
    valid_rows = data.target.select(is_valid[tu])
    valid = held_out(
        data, valid_rows, seen=[target_train], n_negatives=n_negatives, seed=subseed(seed, 1)
    )
    test = held_out(  # cold-test users have no training or valid rows: nothing is excluded
        data,
        data.target.select(is_cold[tu] & ~is_valid[tu]),
        seen=[target_train, valid_rows],
        n_negatives=n_negatives,
        seed=subseed(seed, 2),
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
    warm = warm_pairs(data, data.source, pub["train"])
    valid = held_out(
        data, pub["valid"], seen=[pub["train"]], n_negatives=n_negatives, seed=subseed(seed, 1)
    )
    test = held_out(
        data,
        pub["test"],
        seen=[pub["train"], pub["valid"]],
        n_negatives=n_negatives,
        seed=subseed(seed, 2),
    )
    info = dict(seed=seed, n_negatives=n_negatives, n_warm=len(warm))
    return Split(data, data.source, pub["train"], warm, valid, test, "published", info)


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
