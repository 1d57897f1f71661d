"""The graph methods' adjacency products: chunked sums against one segment_sum over all edges.

    python -m benchmarks.graph_products                  # ML-1M-sized graph, d 64 and 128
    python -m benchmarks.graph_products --chunks 1024 2048 4096 --dims 64

One step is what a graph layer costs in training: `to_users` and `to_items`
(`transferjax.models.bipartite`) forward and backward, jitted, on a graph of random edges with
ML-1M's sizes (6,038 users, 3,307 items, 835,789 edges, the RecBole-filtered source domain of
`ml1m_to_ml100k`). "all" sums every edge in one `jax.ops.segment_sum` (the form other backends
use); a number sums that many edges per `lax.fori_loop` step, the CPU form, whose chunk size is
`transferjax.models.bipartite.CHUNK`. Every form gives the same bits (checked here). Median of
`--repeats` timed steps after one warm-up, ms.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.models import bipartite as B

SIZES = (6038, 3307, 835_789)  # users, items, edges


def _step(g, n_users, n_items):
    def loss(x, y):
        return jnp.sum(B.to_users(g, "w", x, n_users) ** 2) + jnp.sum(
            B.to_items(g, "w", y, n_items) ** 2
        )

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def time_chunk(chunk: int | None, dim: int, *, repeats: int, seed: int = 0) -> tuple[float, list]:
    """(median ms of one step, its outputs) with `CHUNK = chunk` (None: one segment_sum)."""
    n_users, n_items, e = SIZES
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, n_users, e), rng.integers(0, n_items, e)
    g = {k: jnp.asarray(a) for k, a in B.bipartite(u, i, w=rng.random(e)).items()}
    x = jnp.asarray(rng.standard_normal((n_items, dim)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((n_users, dim)), jnp.float32)
    old = B.CHUNK
    B.CHUNK = e if chunk is None else chunk  # read when the step is traced
    try:
        step = _step(g, n_users, n_items)
        out = jax.block_until_ready(step(x, y))
    finally:
        B.CHUNK = old
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(step(x, y))
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times)), jax.tree.leaves(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.graph_products", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--chunks", type=int, nargs="+", default=[512, 1024, 2048, 4096, 16384])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    res = {}
    print("| d | " + " | ".join(["all", *map(str, args.chunks)]) + " |")
    print("|---|" + "---:|" * (len(args.chunks) + 1))
    for d in args.dims:
        row, ref = {}, None
        for c in (None, *args.chunks):
            ms, out = time_chunk(c, d, repeats=args.repeats)
            if ref is None:
                ref = out
            elif not all(bool(jnp.all(a == b)) for a, b in zip(ref, out, strict=True)):
                raise AssertionError(f"chunk {c}: not the bits of one segment_sum")
            row["all" if c is None else c] = ms
        res[d] = row
        print(f"| {d} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |", flush=True)
    print(f"\nms per step; CHUNK = {B.CHUNK}; jax {jax.__version__} on {jax.default_backend()}")
    return res


if __name__ == "__main__":
    main()
