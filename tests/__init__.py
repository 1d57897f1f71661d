"""Shared helpers of the test suite."""

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.train.epoch import make_epoch_fn


def view0(built, key=None) -> dict:
    """What a method's losses and scorer read at initialisation (seed 0 unless `key`): its
    params, data and traced values, and the step count 0."""
    params = built.init(jax.random.key(0) if key is None else key)
    return {**built.view(params), "step": jnp.zeros((), jnp.int32)}


def train_stage(stage, view: dict, epochs: int) -> tuple[dict, list[dict]]:
    """`epochs` epochs of `stage` from `view` (its compiled epoch, epoch keys 0, 1, ..., one
    fresh optimizer): (the view with what the stage trains replaced, per-epoch stats as
    floats)."""
    fn = make_epoch_fn(stage)
    part = stage.trained(view)
    opt = stage.optimizer.init(part)
    ex = {k: jnp.asarray(np.asarray(a)) for k, a in stage.examples.items()}
    stats = []
    for ep in range(epochs):
        part, opt, s = fn(part, opt, stage.frozen(view), ex, jax.random.key(ep))
        stats.append({k: float(x) for k, x in s.items()})
    return stage.merged(view, part), stats
