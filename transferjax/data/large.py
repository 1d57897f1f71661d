"""Synthetic domain pairs at scale (tens of millions of users), written straight to disk.

`write_synthetic_pair` draws the latent model of `transferjax.data.synthetic` (shared and
private user interests, a target view turned by `shift_deg`, item factors and biases, Zipf-like
exposure) block by block of persons into a columnar pair folder (`transferjax.data.columnar`),
so memory stays at one block plus the item tables, whatever the number of users. Load it with
`load_pair` or `data.name=columnar data.path=FOLDER`.

What differs from `make_synthetic`, which draws every user against the whole catalogue (cost
users x items): here each user's items are drawn with replacement from the exposure
distribution (inverse CDF) and de-duplicated, so a user holds at most its drawn count (fewer
only when draws repeat, rare when the catalogue is large); the cost is one row per interaction.
Ratings are explicit, `clip(round(3 + rating_scale * (f + noise * eps)), 1, 5)` with
`f = u . V[i] / sqrt(d) + b[i]`, as in `make_synthetic`. Each block of `BLOCK` persons has its
own random stream (`default_rng([seed, block])`), so the output does not depend on memory or
on how the work is split, and a person's interests are the same in both domains.

Users are overlap persons, then source-only, then target-only; each domain permutes its user
indices (`user_ids` maps a domain user index to its person id), so equal integers in the two
domains do not mean the same person.

    write_synthetic_pair("runs/data/synth-100m", n_overlap=4_000_000, n_source_only=4_000_000,
                         n_target_only=2_000_000, per_user_source=9.0, per_user_target=5.0)
"""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np

from transferjax.data.columnar import DomainWriter, write_pair_meta

BLOCK = 1 << 18  # persons drawn at once
_ACTIVITY_SIGMA = 0.5


def _exposure_cdf(rng, n_items: int, skew: float) -> np.ndarray:
    """float64[n_items] cumulative exposure, w_i = (rank_i + 1) ** -skew with random ranks."""
    w = np.power(1.0 + rng.permutation(n_items), -float(skew))
    cdf = np.cumsum(w)
    return cdf / cdf[-1]


def _domain_rows(rng, persons, z, items, bias, cdf, *, per_user, min_per_user, noise, scale):
    """(person, item, rating) rows of one domain for the persons of a block; `z` holds the
    block's user factors in this domain's view (rows aligned with `persons`)."""
    n_items, d = items.shape
    act = rng.lognormal(-(_ACTIVITY_SIGMA**2) / 2, _ACTIVITY_SIGMA, size=len(persons))
    count = np.clip(np.round(per_user * act), min_per_user, n_items).astype(np.int64)
    row = np.repeat(np.arange(len(persons)), count)
    item = np.searchsorted(cdf, rng.random(len(row)), side="right").clip(max=n_items - 1)
    code = np.unique(row * n_items + item)  # de-duplicates, sorted by person then item
    row, item = code // n_items, code % n_items
    f = np.einsum("nd,nd->n", z[row], items[item]) / np.sqrt(d) + bias[item]
    f += noise * rng.standard_normal(len(row), np.float32)
    rating = np.clip(np.round(3.0 + scale * f), 1, 5).astype(np.float32)
    return persons[row], item.astype(np.int32), rating


def write_synthetic_pair(
    folder: str | os.PathLike,
    *,
    n_overlap: int,
    n_source_only: int = 0,
    n_target_only: int = 0,
    n_items_source: int = 100_000,
    n_items_target: int = 100_000,
    per_user_source: float = 10.0,
    per_user_target: float = 5.0,
    dim_shared: int = 8,
    dim_private: int = 4,
    shift_deg: float = 0.0,
    popularity_skew: float = 0.8,
    noise: float = 0.1,
    item_bias: float = 0.3,
    rating_scale: float = 1.0,
    min_per_user: int = 1,
    seed: int = 0,
    name: str = "synthetic_large",
) -> pathlib.Path:
    """Writes a synthetic cross-domain pair folder; returns it (formulas: module docstring).

    Args:
      folder: the pair folder (replaced when it exists).
      n_overlap / n_source_only / n_target_only: persons in both domains / only one.
      n_items_source / n_items_target: catalogue sizes.
      per_user_source / per_user_target: mean interactions drawn per user (log-normal activity).
      dim_shared, dim_private, shift_deg, popularity_skew, noise, item_bias, rating_scale:
        as in `make_synthetic`.
      min_per_user: fewest draws per user (duplicates may leave fewer distinct items).
      seed: the same seed and sizes give identical files.
      name: dataset name.
    """
    if n_overlap < 1 or min(n_source_only, n_target_only) < 0:
        raise ValueError("write_synthetic_pair: n_overlap >= 1 and the other counts >= 0")
    folder = pathlib.Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    d = dim_shared + dim_private
    rng = np.random.default_rng([seed, 1 << 40])
    items = {
        dom: (
            rng.standard_normal((n, d), np.float32),
            np.float32(item_bias) * rng.standard_normal(n, np.float32),
            _exposure_cdf(rng, n, popularity_skew),
        )
        for dom, n in (("source", n_items_source), ("target", n_items_target))
    }
    n_src, n_persons = n_overlap + n_source_only, n_overlap + n_source_only + n_target_only
    # domain user index of each person (-1: not in the domain), a random permutation per domain
    index = {
        "source": _place(rng, n_persons, np.arange(n_src)),
        "target": _place(rng, n_persons, np.r_[np.arange(n_overlap), np.arange(n_src, n_persons)]),
    }
    writers = {dom: DomainWriter(folder / dom) for dom in index}
    a = np.deg2rad(shift_deg)
    per_user = {"source": per_user_source, "target": per_user_target}
    for lo in range(0, n_persons, BLOCK):
        brng = np.random.default_rng([seed, lo // BLOCK])
        persons = np.arange(lo, min(lo + BLOCK, n_persons))
        sh, sp, tp, turn = (
            brng.standard_normal((len(persons), k), np.float32)
            for k in (dim_shared, dim_private, dim_private, dim_shared)
        )
        views = {
            "source": np.concatenate([sh, sp], axis=1),
            "target": np.concatenate([np.cos(a) * sh + np.sin(a) * turn, tp], axis=1),
        }
        for dom, w in writers.items():
            keep = index[dom][persons] >= 0
            person, item, rating = _domain_rows(
                brng,
                persons[keep],
                views[dom][keep],
                *items[dom],
                per_user=per_user[dom],
                min_per_user=min_per_user,
                noise=np.float32(noise),
                scale=rating_scale,
            )
            w.append(user=index[dom][person], item=item, rating=rating)
    for dom, w in writers.items():
        present = np.flatnonzero(index[dom] >= 0)
        user_ids = np.empty(len(present), np.int64)
        user_ids[index[dom][present]] = present
        n_items = len(items[dom][1])
        w.close(user_ids=user_ids, item_ids=np.arange(n_items), name=f"{name}/{dom}")
    ov = np.arange(n_overlap)
    overlap = np.stack([index["source"][ov], index["target"][ov]], axis=1)
    info = {"generator": "transferjax.data.large.write_synthetic_pair", "seed": str(seed)}
    write_pair_meta(folder, overlap[np.argsort(overlap[:, 0])], name=name, info=info)
    return folder


def _place(rng, n_persons: int, members: np.ndarray) -> np.ndarray:
    """int32[n_persons]: a random domain index 0..len(members)-1 for each member, -1 elsewhere."""
    out = np.full(n_persons, -1, np.int32)
    out[members] = rng.permutation(len(members)).astype(np.int32)
    return out
