"""The host-side record of one trainer call: histories, clocks, logging, checkpoints, the
trials that failed and each trial's selected params.

A `Book` lives for one call of the trainer (`transferjax.train.trainer`). It holds what the
host needs between epochs and what a checkpoint stores beside the training state (stage, epoch,
step, histories, train and wall time, failures, the state's structure, the selected params), so
that a resumed call continues exactly where the interrupted one stopped.

Clocks that span processes: a checkpoint stores the training seconds so far (`train_s`) and the
run's wall seconds so far (`wall_time`: the wall seconds before this process, `wall_before`,
plus this process's since `started`, the perf_counter value at which its run began). A resumed
call reads both back, so the times a resumed run reports count every process up to the
checkpoint it resumed from (what ran after that checkpoint was done again, and counts once).

The selected params: after each evaluation, a trial whose newest entry becomes its selected one
(`select_best` over its valid history, the rule the result's selection uses) copies its params
into `Book.best` on the device (`keep`, one small program; the next epoch donates the state's
buffers, so these are copies). A trained result therefore holds the params of the epoch it
reports, not the last epoch's, and every checkpoint holds them too: `transferjax diagnose`
measures the selected model even when that epoch's own checkpoint is long gone. The cost is a
second copy of the params in memory and in each checkpoint; `trainer.keep_selected=off` drops
it (the results then hold the last epoch's params).

Early stopping (`trainer.patience` = P > 0): a trial whose selected entry is P evaluations old
is done (`Book.done`): its later evaluations are not recorded and its divergence is not judged
(vmapped with others, it trains on unread), and the call ends once every trial is done or
failed. Being a function of the history alone, it needs nothing more in a checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.errors import DivergenceError
from transferjax.train.checkpoint import Checkpointer
from transferjax.train.epoch import TrainState, from_host, to_host
from transferjax.train.progress import Progress
from transferjax.train.result import select_best
from transferjax.train.trials import fresh_state


@jax.jit
def keep(best, params, mask: jax.Array):
    """`params` where `mask` (bool[trials] against the leaves' leading trial axis, or a scalar
    for one trial), else `best`: new buffers, never `params`' own."""

    def one(b, p):
        return jnp.where(mask.reshape(mask.shape + (1,) * (p.ndim - mask.ndim)), p, b)

    return jax.tree.map(one, best, params)


def checkpoint_tree(state: TrainState, best) -> dict:
    """What a checkpoint holds: the state's host form (`to_host`) and the selected params
    (none with `trainer.keep_selected=off`: `best` None)."""
    return {**to_host(state), **({} if best is None else {"best": best})}


@dataclasses.dataclass
class Book:
    """The record of one call that trains `n` trials (`batched`: a leading trial axis)."""

    n: int
    batched: bool
    log: Callable
    ckpt: Checkpointer | None
    bar: Progress | None
    history: list = dataclasses.field(default_factory=list)
    step: int = 0
    train_s: float = 0.0
    started: float = dataclasses.field(default_factory=time.perf_counter)  # the run's start
    wall_before: float = 0.0  # the run's wall seconds in earlier processes (module docstring)
    resumed: int | None = None
    meta: dict | None = None
    labels: list = dataclasses.field(default_factory=list)  # "seed 3", ... (messages)
    failed: list = dataclasses.field(default_factory=list)  # None or the failure, per trial
    overrides: list = dataclasses.field(default_factory=list)  # the trials' traced values
    restored: TrainState | None = None
    structures: tuple = ()  # per stage: the fingerprint of its checkpointed state
    last_save: float = dataclasses.field(default_factory=time.perf_counter)  # or the start
    patience: int = 0  # `trainer.patience`: evaluations without a better one (0: no limit)
    keep: bool = True  # `trainer.keep_selected`: hold the selected params in `best`
    best: Any = None  # the params of each trial's selected evaluation (its trial axis)
    best_index: list = dataclasses.field(default_factory=list)  # per trial: history index
    saved_step: int | None = None  # the step of this call's newest checkpoint

    def stats(self, stats: dict) -> list[dict]:
        """Per-trial floats from an epoch's fetched stats (arrays [n] when batched)."""
        return [
            {k: float(v[i] if self.batched else v) for k, v in stats.items()} for i in range(self.n)
        ]

    @property
    def stopped(self) -> bool:
        """Every trial has failed or stopped early: nothing is left to train."""
        return all(f is not None or self.done(i) for i, f in enumerate(self.failed))

    @property
    def all_failed(self) -> bool:
        """Every trial has failed: nothing is checkpointed any more."""
        return all(f is not None for f in self.failed)

    def done(self, i: int) -> bool:
        """Trial `i` stopped early: its last `patience` evaluations (`trainer.patience` > 0)
        found no better valid value than its selected one. Derived from the history, so a
        resumed call stops where an uninterrupted one does."""
        at = self.best_index[i] if self.best_index else None
        return (
            self.patience > 0 and at is not None and len(self.history[i]) - 1 - at >= self.patience
        )

    def resume(self, template: Callable[[dict], TrainState]) -> None:
        """Restores the newest checkpoint that restores, before any training (a damaged one is
        skipped with a warning; see `Checkpointer.restore_newest`). `template(meta)` is the
        fresh state of the checkpoint's stage, the shapes and types to restore into."""
        like = {}

        def host_template(meta):
            like["state"] = template(meta)
            return checkpoint_tree(like["state"], like["state"].params if self.keep else None)

        try:
            found = self.ckpt.restore_newest(
                host_template, structure_for=lambda meta: self.structures[meta["stage"]]
            )
        except BaseException:
            self.ckpt.close()  # no orbax threads left behind by a refused resume
            raise
        if found is None:
            return
        step, meta, state = found
        self.meta = {**meta, "_step": step}
        self.restored = from_host(state, like=like["state"])
        self.best, self.best_index = state.get("best"), meta["best_index"]
        self.history, self.resumed = meta["history"], step
        self.failed = list(meta.get("failed") or [None] * self.n)
        self.step, self.train_s = meta["step"], meta["train_time"]
        # checkpoints from before wall times were kept: their training time, a lower bound
        self.wall_before = meta.get("wall_time", meta["train_time"])

    def take_restored(self, s_idx: int) -> tuple[TrainState, int] | None:
        """The restored state and its first epoch to run, once, when the call resumes inside
        stage `s_idx`; else None."""
        meta = self.meta
        if meta is None or meta["stage"] != s_idx:
            return None
        state, self.meta, self.restored = self.restored, None, None
        return state, meta["epoch"]

    def save_due(self, min_interval_s: float) -> bool:
        """Whether `min_interval_s` seconds passed since the previous checkpoint of this call
        (or since it began)."""
        return time.perf_counter() - self.last_save >= min_interval_s

    def selected(self, i: int) -> bool:
        """Whether `best` holds trial `i`'s selected params (not for a failed trial, a
        closed-form baseline's final evaluation, or any with `trainer.keep_selected=off`)."""
        return self.failed[i] is None and self.best_index[i] is not None and self.best is not None

    def start_best(self, params) -> None:
        """Before training: unless a checkpoint restored them, every trial's selected params are
        a copy of `params` (replaced at its first evaluation; none when not `keep`)."""
        if not self.best_index:
            self.best_index = [None] * self.n
            if self.keep:
                self.best = keep(params, params, self._mask([True] * self.n))

    def keep_best(self, params, metric: str) -> None:
        """After an evaluation of `params`: each trial whose newest history entry is now its
        selected one by `metric` keeps these params as its best."""
        better = []
        for i, hist in enumerate(self.history):
            newest = len(hist) - 1
            try:
                chosen = select_best([h["valid"] for h in hist], metric) if hist else None
            except DivergenceError:  # no finite value to select from (a failed trial)
                chosen = None
            better.append(
                self.failed[i] is None and chosen == newest and self.best_index[i] != newest
            )
            if better[-1]:
                self.best_index[i] = newest
        if any(better) and self.best is not None:
            self.best = keep(self.best, params, self._mask(better))

    def _mask(self, flags: list[bool]) -> np.ndarray:
        return np.asarray(flags) if self.batched else np.asarray(flags[0])

    def save(self, s_idx: int, epoch: int, state: TrainState) -> None:
        """Checkpoints `state` and the selected params after `epoch` of stage `s_idx`, with the
        record beside it."""
        self.last_save, self.saved_step = time.perf_counter(), self.step
        self.ckpt.save(
            self.step,
            checkpoint_tree(state, self.best),
            {
                "stage": s_idx,
                "epoch": epoch,
                "step": self.step,
                "history": self.history,
                "best_index": self.best_index,
                "train_time": self.train_s,
                "wall_time": self.wall_before + time.perf_counter() - self.started,
                "failed": self.failed,
                "state_structure": self.structures[s_idx],
            },
        )

    def record(self, i: int, entry: dict) -> None:
        """Appends trial `i`'s evaluation `entry` to its history and logs it (batched trials
        with a `trial{i}/` prefix): its train, valid and test values and, when present, its
        shift diagnostics."""
        self.history[i].append(entry)
        prefix = f"trial{i}/" if self.batched else ""
        scalars = {f"{prefix}train/{k}": v for k, v in entry["train"].items()}
        for split in ("valid", "test", "diagnostics"):
            if split not in entry:
                continue
            scalars.update({f"{prefix}{split}/{k}": v for k, v in entry[split].items()})
        self.log(self.step, scalars)

    def close(self) -> None:
        for closer in (self.ckpt, self.bar):
            if closer is not None:
                closer.close()


def stage_shapes(built, n: int, *, keep: bool = True) -> list:
    """The checkpointed state (`checkpoint_tree`: the `TrainState`'s host form and, with `keep`
    (`trainer.keep_selected=on`), the selected params) of each stage of `built` when `n` trials
    train as one call (a leading trial axis when n > 1), as `jax.ShapeDtypeStruct` leaves: what
    a checkpoint of that stage restores into. Nothing is computed."""
    batched = n > 1

    def states(keys):
        init = jax.vmap(built.init) if batched else built.init
        params = init(keys)
        return [
            checkpoint_tree(
                fresh_state(stage, params, keys, None, batched=batched, n=n),
                params if keep else None,
            )
            for stage in built.stages
        ]

    k = jax.random.key(0)
    return jax.eval_shape(states, jax.random.split(k, n) if batched else k)
