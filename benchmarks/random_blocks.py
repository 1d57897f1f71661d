"""Random draws over a table: one jax.random call against blocks of rows.

    python -m benchmarks.random_blocks                     # DisenCDR's table sizes, d 128
    python -m benchmarks.random_blocks --blocks 256 512 1024 --rows 22101

One draw is what a graph method makes per table per step: a dropout mask
(`jax.random.bernoulli`, keep 0.7) and a Gaussian sample (`jax.random.normal`) of f32[rows, d],
jitted. "one call" draws the whole table at once; a number draws that many rows per block
(`transferjax.models.blocked_random`, whose block size is `BLOCK`). Rows: Sport -> Phone's 4,998
users and 14,618 / 22,101 items. Median of `--repeats` timed draws after one warm-up, ms, and
ns per element.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from transferjax.models import blocked_random as R

ROWS = (4998, 14618, 22101)


def time_draw(kind: str, rows: int, dim: int, block: int | None, *, repeats: int) -> float:
    """Median ms of one jitted draw of f32[rows, dim] (block None: one jax.random call)."""
    old = R.BLOCK
    R.BLOCK = block if block is not None else rows
    try:
        if kind == "normal":
            f = jax.jit(lambda k: R.normal(k, (rows, dim)))
        else:
            f = jax.jit(lambda k: R.bernoulli(k, 0.7, (rows, dim)))
        f = f.lower(jax.random.key(0)).compile()
    finally:
        R.BLOCK = old
    jax.block_until_ready(f(jax.random.key(0)))
    times = []
    for r in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(jax.random.key(r + 1)))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.random_blocks", description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    ap.add_argument("--blocks", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    forms = [None, *args.blocks]
    head = ["draw", "rows"] + ["one call" if b is None else f"{b} rows" for b in forms]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for kind in ("bernoulli", "normal"):
        for rows in args.rows:
            ms = [time_draw(kind, rows, args.dim, b, repeats=args.repeats) for b in forms]
            ns = [1e6 * m / (rows * args.dim) for m in ms]
            cells = [f"{m:.1f} ms ({n:.1f} ns)" for m, n in zip(ms, ns)]
            print(f"| {kind} | {rows:,} | " + " | ".join(cells) + " |", flush=True)
    print(
        f"\n{jax.default_backend()} backend, d {args.dim}, median of {args.repeats}; current "
        f"BLOCK = {R.BLOCK}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
