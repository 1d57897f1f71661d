"""Where the time of a row-sparse MF step goes (`mf.sparse`, `transferjax.models.sparse`).

Each part runs a jitted `lax.scan` of steps and reports microseconds per step (best of 5):
  plan       `coalesce_plan` of 1,024 indices into 6,040 rows: scratch table vs sort
  adam_rule  lazy Adam's update rule on 1,024 x 32 gathered rows
  mf_step    the library's sparse MF epoch on ML-1M (`benchmarks.mf_bench.JaxMF`, batch 1,024,
             dim 32): the whole step vs the step without its row updates

    python -m benchmarks.sparse_step                 # JSON: benchmarks/results/sparse_step.json
    taskset -c 0 python -m benchmarks.sparse_step    # the same pinned to one core
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.models import sparse as SP
from transferjax.train.outputs import usable_cores

N, D, K, T = 6040, 32, 1024, 300


def _per_step(body, carry, xs) -> float:
    fn = jax.jit(lambda c, x: jax.lax.scan(lambda c, i: (body(c, i), None), c, x)[0])
    jax.block_until_ready(fn(carry, xs))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(carry, xs))
        best = min(best, time.perf_counter() - t0)
    return best / xs.shape[0] * 1e6


def plan() -> dict:
    idx = jnp.asarray(np.random.default_rng(0).integers(0, N, (T, K)), jnp.int32)

    def body(c, i):
        u, s = SP.coalesce_plan(i, N)
        return c + u[0] + s[0]

    out = {"scratch_us": _per_step(body, jnp.asarray(0), idx)}
    keep = SP.SCRATCH_ROWS_PER_INDEX
    SP.SCRATCH_ROWS_PER_INDEX = 0
    try:
        out["sort_us"] = _per_step(body, jnp.asarray(0), idx)
    finally:
        SP.SCRATCH_ROWS_PER_INDEX = keep
    return out


def adam_rule() -> dict:
    lib = SP._adam_rule(b1=0.9, b2=0.999, eps=1e-8)
    g = jnp.asarray(np.random.default_rng(1).normal(size=(K, D)), jnp.float32)

    def body(c, i):
        w, m, v, t = c
        dw, (m, v) = lib.delta(g + i, (m, v), t=t + 1, lr=1e-3)
        w = w + dw
        return w, m, v, t + 1

    z = jnp.zeros((K, D))
    return {"rule_us": _per_step(body, (z, z, z, jnp.asarray(0)), jnp.arange(T, dtype=jnp.float32))}


def mf_step() -> dict:
    from benchmarks import mf_bench as M

    train, valid = M.random_split(M.load_ml1m())
    steps = -(-len(train) // M.BATCH)
    real = SP.sparse_update
    out = {}
    for name, rows in (("whole_step_ms", True), ("without_row_updates_ms", False)):
        SP.sparse_update = (
            real
            if rows
            else (
                lambda params, state, row_grads, dense_grads, *, rule: real(
                    params, state, {}, dense_grads, rule=rule
                )
            )
        )
        try:
            v = M.JaxMF(train, valid, sparse=True)
            v.setup()
            v.run()
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                v.run()
                best = min(best, time.perf_counter() - t0)
        finally:
            SP.sparse_update = real
        out[name] = best / steps * 1e3
    return out


def main(argv=None) -> dict:
    argparse.ArgumentParser(
        prog="python -m benchmarks.sparse_step", description=__doc__.splitlines()[0]
    ).parse_args(argv)
    res = {
        "cpus": usable_cores(),
        "loadavg_1min": os.getloadavg()[0],
        "backend": jax.default_backend(),
        "plan": plan(),
        "adam_rule": adam_rule(),
        "mf_step": mf_step(),
    }
    print(json.dumps(res, indent=2))
    out = pathlib.Path("benchmarks/results/sparse_step.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
