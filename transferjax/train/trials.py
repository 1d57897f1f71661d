"""The trials of one trainer call: their traced values and learning rates, and the training
state a stage starts from.

A call of the trainer trains n trials at once (a leading trial axis when n > 1). Each trial may
override traced values of the method (`Built.hyper`: loss weights, regularisation, GRL strength)
and the learning rate of any stage (`Stage.lr_key`); sweep points that differ only in them share
one compiled program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from transferjax.train.epoch import TrainState

LR_KEYS = ("trainer.lr", "mf.lr")


def trial_hypers(hyper: dict, overrides: list[dict], *, batched: bool, method: str) -> dict:
    """`hyper` with each key set per trial from `overrides` (keys the method traces, see
    `transferjax.methods.registry`), with a leading trial axis when `batched`; learning-rate
    keys are left to the stages. A key that is neither fails, naming the keys the method
    traces."""
    out = {}
    for key in sorted({k for o in overrides for k in o} - set(LR_KEYS)):
        if key not in hyper:
            raise ValueError(
                f"{key!r} is not a traced value of method {method!r}; traced: "
                f"{', '.join([*LR_KEYS, *sorted(hyper)])}"
            )
    for key, base in hyper.items():
        vals = [float(o.get(key, base)) for o in overrides]
        out[key] = jnp.asarray(vals if batched else vals[0], jnp.float32)
    return out


def with_lrs(opt_state, stage, overrides: list[dict], *, batched: bool):
    """The optimizer state with the per-trial learning rate of `stage.lr_key` where given."""
    lrs = [o.get(stage.lr_key) for o in overrides]
    if all(v is None for v in lrs):
        return opt_state
    base = float(opt_state.hyperparams["learning_rate"].reshape(-1)[0])
    lr = jnp.asarray([base if v is None else v for v in lrs], jnp.float32)
    opt_state.hyperparams["learning_rate"] = lr if batched else lr[0]
    return opt_state


def fresh_state(stage, params, key, overrides, *, batched: bool, n: int) -> TrainState:
    """The state at the start of `stage`: its optimizer initialised on `params` (with the
    trials' learning rates, when `overrides` is given), step 0 per trial."""
    init = jax.vmap(stage.optimizer.init) if batched else stage.optimizer.init
    opt = init(stage.trained(params))
    if overrides is not None:
        opt = with_lrs(opt, stage, overrides, batched=batched)
    step = jnp.zeros((n,) if batched else (), jnp.int32)
    return TrainState(params, opt, step, key)
