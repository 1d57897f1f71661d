"""The trainer: `make_train(cfg, split) -> train(key)`.

A method is built into initial params, a sequence of `Stage`s and a `Scorer`
(`transferjax.transfer.registry`). Each stage trains one part of the params (the others are
frozen) over a table of training examples, one epoch per call of a jitted `lax.scan` over
fixed-shape batches (the last batch padded and masked), so nothing recompiles between epochs.
Stages marked `select` are evaluated on the valid split after every `eval_every` epochs; the
epoch with the best valid metric is selected. Test metrics are computed at the same points for
the record but never read by the selection.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from transferjax.data.batches import epoch_batches


@dataclasses.dataclass(frozen=True)
class Stage:
    """One optimisation stage.

    Attributes:
      name: stage name used in logs ("source_mf", "mapping", ...).
      part: key of the params dict this stage trains; every other key is frozen.
      loss: `loss(params, batch, key) -> (scalar, aux dict)` over the full params dict;
        `batch` holds the rows of `examples` plus `mask` bool[batch].
      examples: dict of parallel numpy arrays, one row per training example.
      epochs, batch_size: passes over the examples and rows per step.
      optimizer: an optax transformation for the trained part.
      select: evaluate on valid after epochs and keep the best epoch's metrics.
    """

    name: str
    part: str
    loss: Callable
    examples: dict
    epochs: int
    batch_size: int
    optimizer: optax.GradientTransformation
    select: bool = False


def make_optimizer(name: str, *, lr: float, weight_decay: float = 0.0):
    """optax optimizer by name: adam | adamw | sgd | adagrad."""
    if name == "adam":
        return optax.adam(lr)
    if name == "adamw":
        return optax.adamw(lr, weight_decay=weight_decay)
    if name == "sgd":
        return optax.sgd(lr)
    if name == "adagrad":
        return optax.adagrad(lr)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, adamw, sgd, adagrad")


def make_epoch_fn(stage: Stage) -> Callable:
    """Jitted `epoch(part, opt_state, frozen, examples, key) -> (part, opt_state, stats)`."""
    n = len(next(iter(stage.examples.values())))
    batch_size = min(stage.batch_size, n)
    steps = math.ceil(n / batch_size)

    def epoch(part, opt_state, frozen, examples, key):
        k_perm, k_step = jax.random.split(key)
        idx, mask = epoch_batches(k_perm, n, batch_size)

        def step(carry, xs):
            p, s = carry
            i, m, t = xs
            batch = {k: v[i] for k, v in examples.items()}
            batch["mask"] = m

            def f(p_):
                return stage.loss({**frozen, stage.part: p_}, batch, jax.random.fold_in(k_step, t))

            (loss, aux), grads = jax.value_and_grad(f, has_aux=True)(p)
            with jax.numpy_dtype_promotion("standard"):  # optax mixes python floats and ints
                updates, s = stage.optimizer.update(grads, s, p)
                p = optax.apply_updates(p, updates)
            return (p, s), (loss, aux)

        (part, opt_state), (losses, aux) = jax.lax.scan(
            step, (part, opt_state), (idx, mask, jnp.arange(steps))
        )
        stats = {"loss": jnp.mean(losses), **{k: jnp.mean(v) for k, v in aux.items()}}
        return part, opt_state, stats

    return jax.jit(epoch, donate_argnums=(0, 1))


def lower_is_better(metric: str) -> bool:
    return metric in ("mae", "rmse") or metric.endswith("loss")


def select_best(valid_history: list[dict], metric: str) -> int:
    """Index of the best entry by `metric` (first one on ties). Reads valid metrics only."""
    if not valid_history:
        raise ValueError("nothing to select from: no evaluation ran")
    if metric not in valid_history[0]:
        raise ValueError(f"selection metric {metric!r} not computed; have {sorted(valid_history[0])}")
    vals = np.array([h[metric] for h in valid_history], dtype=np.float64)
    vals = np.where(np.isnan(vals), np.inf if lower_is_better(metric) else -np.inf, vals)
    return int(np.argmin(vals) if lower_is_better(metric) else np.argmax(vals))


@dataclasses.dataclass
class Result:
    """What `train(key)` returns: final params, the evaluation history and the selection."""

    params: Any
    history: list
    selected: int
    select_metric: str
    wall_time: float
    train_time: float

    @property
    def best(self) -> dict:
        return self.history[self.selected]


def make_train(cfg, split, *, evaluate: Callable, log: Callable | None = None) -> Callable:
    """Returns `train(key) -> Result` for `cfg.method` on `split`.

    Args:
      cfg: a `RunConfig`.
      split: a `Split`.
      evaluate: `evaluate(scorer, params, heldout) -> dict` (see `transferjax.train.evaluate`).
      log: optional `log(step, scalars: dict)` called after each epoch and evaluation.
    """
    from transferjax.train.evaluate import default_select_metric
    from transferjax.transfer.registry import get_method

    method = get_method(cfg.method)
    metric = cfg.eval.select if cfg.eval.select != "auto" else default_select_metric(cfg, split)
    log = log or (lambda step, scalars: None)

    def train(key: jax.Array) -> Result:
        t0 = time.perf_counter()
        k_init, k_train = jax.random.split(key)
        built = method.build(cfg, split, key=k_init)
        params, history, step = built.params, [], 0
        train_time = 0.0

        def record(stage: str, epoch: int, stats: dict):
            entry = {"stage": stage, "epoch": epoch, "step": step, "train": stats,
                     "valid": evaluate(built.scorer, params, split.valid),
                     "test": evaluate(built.scorer, params, split.test)}
            history.append(entry)
            log(step, {**{f"train/{k}": v for k, v in stats.items()},
                       **{f"valid/{k}": v for k, v in entry["valid"].items()},
                       **{f"test/{k}": v for k, v in entry["test"].items()}})

        for s_idx, stage in enumerate(built.stages):
            epoch_fn = make_epoch_fn(stage)
            examples = {k: jnp.asarray(v) for k, v in stage.examples.items()}
            part = params[stage.part]
            opt_state = stage.optimizer.init(part)
            for ep in range(stage.epochs):
                frozen = {k: v for k, v in params.items() if k != stage.part}
                k_ep = jax.random.fold_in(jax.random.fold_in(k_train, s_idx), ep)
                t1 = time.perf_counter()
                part, opt_state, stats = epoch_fn(part, opt_state, frozen, examples, k_ep)
                stats = {k: float(v) for k, v in stats.items()}
                train_time += time.perf_counter() - t1
                params = {**params, stage.part: part}
                step += 1
                if stage.select and ((ep + 1) % cfg.trainer.eval_every == 0 or ep + 1 == stage.epochs):
                    record(stage.name, ep + 1, stats)
                else:
                    log(step, {f"train/{stage.name}/{k}": v for k, v in stats.items()})
        if not history:  # nothing selects (closed-form baselines): one evaluation at the end
            record("final", 0, {})
        selected = select_best([h["valid"] for h in history], metric)
        return Result(params=params, history=history, selected=selected, select_metric=metric,
                      wall_time=time.perf_counter() - t0, train_time=train_time)

    return train
