"""Fully connected stacks: `mlp_init(key, sizes) -> params`, `mlp_apply(params, x) -> y`.

Params are a list of `{"w": f32[*lead, in, out], "b": f32[*lead, out]}` layers (He-normal
weights by default, Xavier-normal on request; zero biases); a leading `lead` shape stores
several MLPs of one shape stacked (apply them with `jax.vmap(mlp_apply)`), as the experts and
towers of the multi-task heads do. `dense_parts` applies one layer to a concatenation given
as its parts, which need only broadcast against each other (a user-item network scores
[users, items] pairs without building the [users, items, 2 dim] input).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp

from transferjax.models import draws

__all__ = ["dense_init", "dense_parts", "dropout", "mlp_apply", "mlp_init", "xavier_normal"]


def xavier_normal(key, shape: tuple) -> jax.Array:
    """f32[shape] ~ N(0, 2 / (shape[-2] + shape[-1])) (Glorot & Bengio, 2010), the init
    `torch.nn.init.xavier_normal_` gives a [fan_out, fan_in] weight or a [rows, dim] table."""
    return jax.random.normal(key, shape, jnp.float32) * math.sqrt(2.0 / (shape[-2] + shape[-1]))


def dense_init(
    key, fan_in: int, fan_out: int, lead: tuple = (), *, init: Literal["he", "xavier"] = "he"
) -> dict:
    """Weights f32[*lead, fan_in, fan_out] (He-normal N(0, 2 / fan_in), or Xavier-normal) and
    zero bias f32[*lead, fan_out]."""
    if init == "xavier":
        w = xavier_normal(key, (*lead, fan_in, fan_out))
    elif init == "he":
        w = jax.random.normal(key, (*lead, fan_in, fan_out), jnp.float32)
        w = w * math.sqrt(2.0 / fan_in)
    else:
        raise ValueError(f"dense_init: init={init!r}; valid: he, xavier")
    return {"w": w, "b": jnp.zeros((*lead, fan_out), jnp.float32)}


def dense_parts(layer: dict, parts: Sequence[jax.Array]) -> jax.Array:
    """`concat(parts, -1) @ w + b`, computed as `sum_k parts[k] @ w[rows of part k] + b`.

    Args:
      layer: `{"w": f32[sum of part widths, out]}`, optionally `"b": f32[out]`.
      parts: arrays f32[..., d_k] whose leading shapes broadcast against each other, e.g. users
        f32[c, 1, d] and items f32[1, n, d].

    Returns:
      f32[broadcast leading shape, out].
    """
    w, start, out = layer["w"], 0, 0.0
    for x in parts:
        out = out + x @ w[start : start + x.shape[-1]]
        start += x.shape[-1]
    if start != w.shape[0]:
        raise ValueError(f"dense_parts: parts have {start} features, the layer takes {w.shape[0]}")
    return out + layer["b"] if "b" in layer else out


def mlp_init(
    key, sizes: Sequence[int], *, lead: Sequence[int] = (), init: Literal["he", "xavier"] = "he"
) -> list:
    """Initialise a fully connected stack `sizes[0] -> sizes[1] -> ... -> sizes[-1]`.

    Args:
      key: `jax.random.key`.
      sizes: layer widths including the input width; at least two entries.
      lead: leading stack shape, e.g. `(n_experts,)`; empty for one MLP.
      init: "he" or "xavier" weights (`dense_init`).

    Returns:
      list of `{"w": f32[*lead, in, out], "b": f32[*lead, out]}`, one per layer.
    """
    sizes = tuple(int(s) for s in sizes)
    lead = tuple(int(n) for n in lead)
    if len(sizes) < 2 or min(sizes) <= 0:
        raise ValueError(f"mlp_init: sizes needs >= 2 positive widths, got {sizes}")
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        dense_init(k, i, o, lead, init=init)
        for k, i, o in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


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


def dropout(x: jax.Array, rate, key: jax.Array | None) -> jax.Array:
    """Inverted dropout (torch's `F.dropout` in training): each entry of x is zeroed with
    probability `rate` and the rest scaled by 1 / (1 - rate); the identity when key is None
    (scoring). `rate` may be traced (a swept hyperparameter). The mask is
    `jax.random.bernoulli(key, 1 - rate, x.shape)`, drawn by `draws.bernoulli`."""
    if key is None:
        return x
    keep = 1.0 - rate
    return jnp.where(draws.bernoulli(key, keep, x.shape), x / keep, 0.0)
