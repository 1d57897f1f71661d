"""Shared helpers of the test suite."""

import jax
import jax.numpy as jnp


def view0(built, key=None) -> dict:
    """What a method's losses and scorer read at initialisation (seed 0 unless `key`): its
    params, data and traced values, and the step count 0."""
    params = built.init(jax.random.key(0) if key is None else key)
    return {**built.view(params), "step": jnp.zeros((), jnp.int32)}
