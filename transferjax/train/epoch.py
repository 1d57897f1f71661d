"""One epoch of one stage as a compiled program, and the train state it advances.

`make_epoch_fn(stage)` is the epoch of a stage over its part of the params: a `lax.scan` of
fixed-shape steps (the last batch padded and masked), so nothing recompiles between epochs.
`stage_epoch(stage, ...)` lifts it to a `TrainState` (every part of the params, the optimizer
state of the stage's part, the stage's step count and the trial's key), the pytree the trainer
carries, vmaps over trials and checkpoints.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from transferjax.data.batches import epoch_batches
from transferjax.methods.api import Stage
from transferjax.train.mesh import Layout


class TrainState(NamedTuple):
    """The state of one trial (or, with a leading axis, of a batch of trials).

    Attributes:
      params: `{part: pytree}`, every trainable part of the method.
      opt: the optimizer state of the stage in progress (over `stage.trained(params)`).
      step: i32[] steps the stage in progress has taken (schedules read it as `view["step"]`).
      key: the trial's training key; epoch keys are `fold_in(fold_in(key, stage), epoch)`.
    """

    params: dict
    opt: Any
    step: jax.Array
    key: jax.Array


def row_taker(examples: dict, *, pack: bool = True) -> Callable:
    """`take(i) -> {name: examples[name][i]}` for i32[batch] row indices, in one gather.

    The 1-D 32-bit columns (int32, uint32, float32) are bit-cast to uint32 and stacked into one
    [n, columns] table (once per epoch), so a shuffled batch reads each example's fields from
    one place instead of making one random read per column; on a CPU those reads dominate
    batch assembly for tables of a million examples. The values come back bit-exact; other
    columns are gathered on their own (all of them without `pack`).

    Args:
      examples: {name: array with rows on axis 0}, all with the same number of rows.
    Returns:
      take: i32[batch] -> {name: rows of examples[name]}.
    """
    packable = [
        k
        for k, v in examples.items()
        if v.ndim == 1 and np.dtype(v.dtype) in (np.int32, np.uint32, np.float32)
    ]
    if len(packable) < 2 or not pack:
        return lambda i: {k: v[i] for k, v in examples.items()}
    table = jnp.stack(
        [jax.lax.bitcast_convert_type(examples[k], jnp.uint32) for k in packable], axis=1
    )
    rest = {k: v for k, v in examples.items() if k not in packable}

    def take(i):
        rows = table[i]
        out = {
            k: jax.lax.bitcast_convert_type(rows[:, c], examples[k].dtype)
            for c, k in enumerate(packable)
        }
        return {**out, **{k: v[i] for k, v in rest.items()}}

    return take


def steps_per_epoch(stage: Stage) -> int:
    n = len(next(iter(stage.examples.values())))
    return math.ceil(n / min(stage.batch_size, n))


def make_epoch_fn(
    stage: Stage, *, batched: bool = False, jit: bool = True, layout: Layout | None = None
) -> Callable:
    """`epoch(part, opt_state, frozen, examples, key, idx=None, shared=None, step0=0) -> (part,
    opt_state, stats)`.

    One pass over `stage.examples` as a `lax.scan` of fixed-shape steps, in the order `idx`
    (i32[steps, batch] from `host_epoch_indices`) or, without it, a shuffle drawn in the graph.
    Each step's loss reads the view `{**frozen, **shared, part: p, "step": step0 + t}`.
    With `batched`, part, opt_state, frozen, key and idx carry a leading trial axis (seeds,
    learning rates) under `vmap`; examples, shared data and step0 are shared. Jitted with part
    and opt_state donated unless `jit=False`. With a `layout` (`transferjax.train.mesh`), the
    batch rows of each step are split over its "data" axis and batched trials over "trial".
    """
    n = len(next(iter(stage.examples.values())))
    batch_size = min(stage.batch_size, n)
    steps = math.ceil(n / batch_size)

    def epoch(part, opt_state, frozen, examples, key, idx=None, shared=None, step0=0):
        k_perm, k_step = jax.random.split(key)
        if idx is None:
            idx, mask = epoch_batches(k_perm, n, batch_size)
        else:  # host-side shuffle (`host_epoch_indices`), i32[steps, batch]
            mask = (jnp.arange(steps * batch_size) < n).reshape(steps, batch_size)
        if layout is not None:
            idx = layout.constrain_rows(idx, batched=False)  # vmap adds the trial axis
        take = row_taker(examples)
        const = {**frozen, **(shared or {})}

        def step(carry, xs):
            p, s = carry
            i, m, t = xs
            batch = take(i)
            batch["mask"] = m
            k = jax.random.fold_in(k_step, t)
            view = {**const, "step": jnp.asarray(step0, jnp.int32) + t}
            if stage.step is not None:
                p, s, loss, aux = stage.step(p, s, view, batch, k)
                return (p, s), (loss, aux)

            def f(p_):
                return stage.loss(stage.merged(view, p_), batch, k)

            (loss, aux), grads = jax.value_and_grad(f, has_aux=True)(p)
            with jax.numpy_dtype_promotion("standard"):  # optax mixes python floats and ints
                updates, s = stage.optimizer.update(grads, s, p)
                p = optax.apply_updates(p, updates)
            return (p, s), (loss, aux)

        (part, opt_state), (losses, aux) = jax.lax.scan(
            step, (part, opt_state), (idx, mask, jnp.arange(steps, dtype=jnp.int32))
        )
        stats = {"loss": jnp.mean(losses), **{k: jnp.mean(v) for k, v in aux.items()}}
        return part, opt_state, stats

    if batched:
        trial_axis = None if layout is None else "trial"
        axes = (0, 0, 0, None, 0, 0, None, None)
        fn = jax.vmap(epoch, in_axes=axes, spmd_axis_name=trial_axis)
    else:
        fn = epoch
    return jax.jit(fn, donate_argnums=(0, 1)) if jit else fn


def stage_epoch(stage: Stage, *, batched: bool, layout: Layout | None = None) -> Callable:
    """`run(state, hyper, shared, examples, key, idx) -> (state, stats)`: one epoch of `stage`
    over a `TrainState` (jitted with the state donated).

    `hyper` is the trials' traced values (leading trial axis when `batched`), `shared` the
    method's data, `key` the epoch key, `idx` the host shuffle or None. With a `layout`, the
    arguments come placed by `Layout.place_epoch_args` and the new state leaves on the
    shardings it came in on (`Layout.state_shardings`: tables split by rows over "model"), so
    the next epoch takes it as it is.
    """
    epoch = make_epoch_fn(stage, batched=batched, jit=False, layout=layout)
    steps = steps_per_epoch(stage)

    def run(state: TrainState, hyper, shared, examples, key, idx):
        frozen = {**stage.frozen(state.params), "hyper": hyper}
        step0 = state.step[0] if batched else state.step
        part, opt, stats = epoch(
            stage.trained(state.params), state.opt, frozen, examples, key, idx, shared, step0
        )
        new = TrainState(stage.merged(state.params, part), opt, state.step + steps, state.key)
        if layout is not None:  # the shardings the state came in on (`Layout.state_shardings`)
            new = layout.constrain_state(new, batched=batched)
            stats = jax.lax.with_sharding_constraint(stats, layout.replicated())
        return new, stats

    return jax.jit(run, donate_argnums=(0,))


def to_host(state: TrainState) -> dict:
    """The state as a checkpointable pytree of plain arrays (the key as its raw data)."""
    return {
        "params": state.params,
        "opt": state.opt,
        "step": state.step,
        "key": jax.random.key_data(state.key),
    }


def from_host(tree: dict, *, like: TrainState) -> TrainState:
    impl = jax.random.key_impl(like.key)
    return TrainState(
        tree["params"], tree["opt"], tree["step"], jax.random.wrap_key_data(tree["key"], impl=impl)
    )


class Programs:
    """The compiled epoch program of each (stage, batched) of a method, compiled on first use
    (`stage_epoch(...).lower(...).compile()`); the first thread to need one compiles it, the
    others wait and reuse it. `seconds` sums the compile times."""

    def __init__(self, stages, layout: Layout | None = None):
        self.stages, self.lock, self.compiled, self.seconds = stages, threading.Lock(), {}, 0.0
        self.layout = layout

    def get(self, s_idx: int, batched: bool, args) -> Callable:
        """The compiled program of stage `s_idx` for arguments shaped like `args`."""
        with self.lock:
            key = (
                s_idx,
                batched,
                jax.tree.structure(args),
                tuple(np.shape(x) for x in jax.tree.leaves(args)),
            )
            if key in self.compiled:
                return self.compiled[key]
            t0 = time.perf_counter()
            fn = stage_epoch(self.stages[s_idx], batched=batched, layout=self.layout)
            self.compiled[key] = fn.lower(*args).compile()
            self.seconds += time.perf_counter() - t0
            return self.compiled[key]
