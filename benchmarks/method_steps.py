"""Training steps of a registered method, timed as the trainer runs them.

The method is built as a run builds it, `get_method(cfg.method).build(cfg, split)`, and its first
stage runs as the trainer's compiled epoch program (`transferjax.train.epoch.stage_epoch`:
the batch gather, the method's loss and gradient, the optimizer update, all in one program). One
`run()` is one epoch over the stage's first `steps * batch` examples (a fixed set, reshuffled
each epoch on the host as the trainer does on a CPU), so a step's time is the epoch's over
`steps`. Used by the DANN step benchmark (`benchmarks.dann_step`) and the side-by-side step
times against official code (`benchmarks.reproduce.step_time`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import jaxprs_in_params

from benchmarks.measure import Variant, xla_memory_mb
from transferjax.data.batches import host_epoch_indices
from transferjax.methods.registry import get_method
from transferjax.train.epoch import TrainState, stage_epoch


def first_steps(stage, *, steps: int | None):
    """`stage` over its first `steps * batch_size` examples: an epoch of `steps` steps (None:
    every example, the stage's whole epoch)."""
    n = len(next(iter(stage.examples.values())))
    n = n if steps is None else min(steps * stage.batch_size, n)
    return dataclasses.replace(stage, examples={k: v[:n] for k, v in stage.examples.items()})


class MethodSteps(Variant):
    """`steps` training steps of `cfg.method`'s first stage (one epoch program) per run; None:
    the stage's whole epoch (`steps` is set to its step count by `setup`).

    step0: the step counter the state starts from (a method whose loss switches on the step,
    such as a warm-up, is timed past the switch with a large step0)."""

    def __init__(
        self, cfg, split, *, steps: int | None, seed: int = 0, device=None, step0: int = 0
    ):
        self.cfg, self.split, self.steps, self.seed, self.step0 = cfg, split, steps, seed, step0
        self.device = device or jax.devices()[0]

    def setup(self) -> None:
        self.prepare()
        t0 = time.perf_counter()
        self.program = stage_epoch(self.stage, batched=False).lower(*self._args()).compile()
        self.compile_s = time.perf_counter() - t0

    def prepare(self) -> None:
        """The method built, its first stage, state and data on the device: all of `setup` but
        the compile."""
        built = get_method(self.cfg.method).build(self.cfg, self.split)
        self.built = built
        self.stage = first_steps(built.stages[0], steps=self.steps)
        put = lambda x: jax.device_put(x, self.device)  # noqa: E731
        self.shared, self.hyper = put(built.data), put(built.hyper)
        self.examples = put({k: np.asarray(v) for k, v in self.stage.examples.items()})
        k_init, key = jax.random.split(jax.random.key(self.seed))
        params = put(built.init(k_init))
        opt = self.stage.optimizer.init(self.stage.trained(params))
        self.state = TrainState(params, opt, jnp.asarray(self.step0, jnp.int32), key)
        self.n_rows = len(next(iter(self.stage.examples.values())))
        self.steps = -(-self.n_rows // self.stage.batch_size)  # ceil: the steps of the epoch
        self.host_shuffle = self.device.platform == "cpu"  # as the trainer
        self.epoch = 0

    def _args(self) -> tuple:
        k_ep = jax.random.fold_in(jax.random.fold_in(self.state.key, 0), self.epoch)
        idx = None
        if self.host_shuffle:
            idx = jnp.asarray(
                host_epoch_indices(
                    jax.random.fold_in(k_ep, 1 << 30),
                    self.n_rows,
                    min(self.stage.batch_size, self.n_rows),
                )
            )
        return (self.state, self.hyper, self.shared, self.examples, k_ep, idx)

    def run(self) -> float:
        self.state, stats = self.program(*self._args())
        self.epoch += 1
        return float(jax.block_until_ready(stats["loss"]))

    def info(self) -> dict:
        return {
            "compile_s": self.compile_s,
            "steps": self.steps,
            "steps_total": self.epoch * self.steps,
            **xla_memory_mb(self.program),
        }


def product_flops(jaxpr) -> float:
    """FLOPs of the dense and sparse products of `jaxpr` (a ClosedJaxpr or Jaxpr): 2 x the
    output's size x the contracted size for each `dot_general`, and 2 per element that a
    floating-point scatter-add accumulates (a sparse product's multiply-add per nonzero and
    column, as sparse products' FLOPs are counted by nonzeros; the gradient of a row gather is
    one too); a scan's body times its length, a cond's costliest branch, any other inner
    program (jit, custom derivatives, remat, a while loop's body) once. Other elementwise work
    and gathers are left out, and integer work (dropout's hash) is never counted."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            out, lhs = eqn.outvars[0].aval.shape, eqn.invars[0].aval.shape
            total += 2.0 * math.prod(out) * math.prod(lhs[d] for d in contract)
        elif name == "scatter-add":
            updates = eqn.invars[2].aval
            total += 2.0 * updates.size if jnp.issubdtype(updates.dtype, jnp.floating) else 0.0
        elif name == "cond":
            total += max(product_flops(b) for b in eqn.params["branches"])
        else:
            inner = sum(product_flops(j) for j in jaxprs_in_params(eqn.params))
            total += inner * (eqn.params["length"] if name == "scan" else 1)
    return total


def step_flops(cfg, split, *, step0: int = 0) -> float:
    """FLOPs of the dense and sparse products of one training step of `cfg.method`'s first stage
    on `split` from step `step0` (forward and backward): `product_flops` of its one-step epoch
    program."""
    one = MethodSteps(cfg, split, steps=1, step0=step0)
    one.prepare()  # traced, not compiled
    return product_flops(jax.make_jaxpr(stage_epoch(one.stage, batched=False))(*one._args()))
