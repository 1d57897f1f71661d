"""Full-ranking evaluation speed: every ML-1M user against every item with an MF scorer.

Each user gets `n_heldout` random rated items held out; the rest are its training items,
excluded from the ranking. `transferjax.eval.ranking.full_ranking` scores users in chunks
(`mf_score_all`, jitted), masks the training items and takes `lax.top_k`. The first call
compiles (its time minus the median later call is the compile time); the later calls are
timed end to end (host-side grouping of the excluded items included).

The MF params are freshly initialised (N(0, 0.1^2) factors): the timing does not depend on
the weights, and the metrics are reported only as a sanity check (near chance).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from benchmarks.measure import Peak, median_time
from transferjax.data.types import HeldOut, Interactions


def heldout_split(inter: Interactions, *, n_heldout: int = 10, seed: int = 0):
    """(train Interactions, HeldOut): n_heldout random items of every user with more rows."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(inter)), inter.user))
    user = inter.user[order]
    starts = np.searchsorted(user, np.arange(inter.n_users + 1))
    rank = np.arange(len(inter)) - starts[user]
    counts = np.diff(starts)
    held = (rank < n_heldout) & (counts[user] > n_heldout)
    users = np.flatnonzero(counts > n_heldout).astype(np.int32)
    row_of = np.full(inter.n_users, -1, np.int32)
    row_of[users] = np.arange(len(users), dtype=np.int32)
    h = order[held]
    heldout = HeldOut(
        pairs=np.stack([np.full(len(users), -1, np.int32), users], 1),
        row=row_of[inter.user[h]],
        item=inter.item[h],
        rating=inter.rating[h],
    )
    return inter.select(np.sort(order[~held])), heldout


def bench(
    inter: Interactions,
    *,
    repeats: int,
    chunk_size: int = 1024,
    ks=(10, 20),
    n_heldout: int = 10,
    dim: int = 32,
    device=None,
) -> dict:
    """Wall seconds of `full_ranking` over all users after compile, and the compile time."""
    from transferjax.eval.ranking import full_ranking
    from transferjax.models.mf import mf_init, mf_score_all

    device = device or jax.devices()[0]
    train, heldout = heldout_split(inter, n_heldout=n_heldout)
    with Peak(jax_device=device) as peak:
        params = jax.device_put(
            mf_init(
                jax.random.key(0), n_users=inter.n_users, n_items=inter.n_items, dim=dim, mu=3.5
            ),
            device,
        )
        score = jax.jit(
            lambda src, tgt: mf_score_all(params["user"][tgt], params["user_bias"][tgt], params)
        )

        def call():
            return full_ranking(
                score, heldout, exclude=train, n_items=inter.n_items, ks=ks, chunk_size=chunk_size
            )

        t0 = time.perf_counter()
        metrics = call()
        first_s = time.perf_counter() - t0
        peak.restart()
        med, times = median_time(call, repeats=repeats, warmup=0)
    return {
        "wall_s": med,
        "times_s": times,
        "first_call_s": first_s,
        "compile_s": max(0.0, first_s - med),
        "n_users": metrics["n_users"],
        "n_items": inter.n_items,
        "n_heldout": len(heldout),
        "n_excluded": len(train),
        "chunk_size": chunk_size,
        "metrics": {k: v for k, v in metrics.items() if k != "n_users"},
        **peak.as_dict(),
    }
