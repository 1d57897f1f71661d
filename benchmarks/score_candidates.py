"""Scoring m candidate items per user: gather their factors, or score all items and pick.

    python -m benchmarks.score_candidates

For 1,024 users with factors f32[1024, d] and an item table f32[n_items, d], each form scores
m candidates per user, as in the sampled-ranking protocol (m = 1 + 999 negatives):

- gather: `sum(t[:, None] * W[items], -1)`, a [1024, m, d] gather (`mf_score`, `click_at`);
- all: `take_along_axis(t @ W.T, items)`, one matmul over every item.

`gather_cost` = (gather s / candidate) / (all s / item): how many all-item scores one gathered
candidate costs. `transferjax.methods.api.GATHER_COST` approximates it: the scorers take
the all-item form when `GATHER_COST * m >= n_items`.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.methods.api import GATHER_COST

USERS = 1024


def time_forms(n_items: int, d: int, m: int, *, rounds: int = 5) -> dict:
    rng = np.random.default_rng(0)
    t = jnp.asarray(rng.normal(size=(USERS, d)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(n_items, d)).astype(np.float32))
    items = jnp.asarray(rng.integers(0, n_items, (USERS, m)).astype(np.int32))
    forms = {
        "gather": lambda t, w, i: jnp.sum(t[:, None, :] * w[i], axis=-1),
        "all": lambda t, w, i: jnp.take_along_axis(t @ w.T, i, axis=1),
    }
    out = {}
    for name, f in forms.items():
        f = jax.jit(f)
        jax.block_until_ready(f(t, w, items))
        ts = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            jax.block_until_ready(f(t, w, items))
            ts.append(time.perf_counter() - t0)
        out[name] = float(np.median(ts))
    out["gather_cost"] = (out["gather"] / m) / (out["all"] / n_items)
    return out


def main(argv=None) -> None:
    argparse.ArgumentParser(
        prog="python -m benchmarks.score_candidates", description=__doc__.splitlines()[0]
    ).parse_args(argv)
    print("| n_items | d | m | gather ms | all ms | gather_cost | chosen |")
    print("|---|---|---|---|---|---|---|")
    for n_items, d, m in [
        (3706, 32, 100),
        (12319, 128, 1000),
        (12319, 64, 1000),
        (50_000, 64, 1000),
        (200_000, 64, 1000),
        (200_000, 64, 100),
    ]:
        r = time_forms(n_items, d, m)
        chosen = "all" if GATHER_COST * m >= n_items else "gather"
        print(
            f"| {n_items} | {d} | {m} | {1e3 * r['gather']:.1f} | {1e3 * r['all']:.1f} | "
            f"{r['gather_cost']:.0f} | {chosen} |",
            flush=True,
        )
    print(
        f"\nGATHER_COST = {GATHER_COST}; jax {jax.__version__} on {jax.default_backend()}, "
        f"{USERS} users"
    )


if __name__ == "__main__":
    main()
