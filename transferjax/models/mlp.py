"""Fully connected stacks: `mlp_init(key, sizes) -> params`, `mlp_apply(params, x) -> y`.

Params are a list of `{"w": f32[*lead, in, out], "b": f32[*lead, out]}` layers (He-normal
weights, zero biases); a leading `lead` shape stores several MLPs of one shape stacked (apply
them with `jax.vmap(mlp_apply)`), as the experts and towers of the multi-task heads do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

__all__ = ["dense_init", "mlp_apply", "mlp_init"]


def dense_init(key, fan_in: int, fan_out: int, lead: tuple = ()) -> dict:
    """He-normal weights f32[*lead, fan_in, fan_out] and zero bias f32[*lead, fan_out]."""
    w = jax.random.normal(key, (*lead, fan_in, fan_out), jnp.float32) * math.sqrt(2.0 / fan_in)
    return {"w": w, "b": jnp.zeros((*lead, fan_out), jnp.float32)}


def mlp_init(key, sizes: Sequence[int], *, lead: Sequence[int] = ()) -> list:
    """Initialise a fully connected stack `sizes[0] -> sizes[1] -> ... -> sizes[-1]`.

    Args:
      key: `jax.random.key`.
      sizes: layer widths including the input width; at least two entries.
      lead: leading stack shape, e.g. `(n_experts,)`; empty for one MLP.

    Returns:
      list of `{"w": f32[*lead, in, out], "b": f32[*lead, out]}`, one per layer.
    """
    sizes = tuple(int(s) for s in sizes)
    lead = tuple(int(n) for n in lead)
    if len(sizes) < 2 or min(sizes) <= 0:
        raise ValueError(f"mlp_init: sizes needs >= 2 positive widths, got {sizes}")
    keys = jax.random.split(key, len(sizes) - 1)
    return [dense_init(k, i, o, lead) for k, i, o in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def mlp_apply(
    params: list,
    x: jax.Array,
    *,
    activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
    final_activation: bool = True,
) -> jax.Array:
    """Apply an MLP: `h <- activation(h @ w + b)` per layer.

    Args:
      params: output of `mlp_init`.
      x: f32[..., sizes[0]].
      activation: elementwise non-linearity.
      final_activation: apply `activation` after the last layer too (False: linear output).

    Returns:
      f32[..., sizes[-1]].
    """
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1 or final_activation:
            h = activation(h)
    return h
