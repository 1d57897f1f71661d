"""Domain discriminator and the DANN adversarial loss (Ganin & Lempitsky 2015).

The discriminator is an MLP `d -> *hidden -> 1` emitting a logit for "target domain". The DANN
loss applies it to gradient-reversed features, so one minimisation step trains the
discriminator to separate the domains and, through the reversal, pushes the encoder to make
them indistinguishable (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by
Backpropagation").
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from transferjax.models.grl import grad_reverse
from transferjax.models.mlp import mlp_apply, mlp_init

__all__ = ["dann_loss", "discriminator_apply", "discriminator_init"]


def discriminator_init(key, *, in_dim: int, hidden: Sequence[int] = (64,)) -> list:
    """MLP params `in_dim -> *hidden -> 1` (ReLU hidden layers, linear logit)."""
    return mlp_init(key, (in_dim, *hidden, 1))


def discriminator_apply(params: list, z: jax.Array) -> jax.Array:
    """Domain logits: z f32[b, d] -> f32[b] (positive means "target")."""
    return mlp_apply(params, z, final_activation=False)[..., 0]


def _row_weights(mask, n: int) -> jax.Array:
    if mask is None:
        return jnp.ones((n,), jnp.float32)
    if mask.shape != (n,):
        raise ValueError(f"dann_loss: mask shape {mask.shape} != ({n},)")
    return mask.astype(jnp.float32)


def dann_loss(
    disc_params: list,
    z_source: jax.Array,
    z_target: jax.Array,
    *,
    lam,
    mask_source: jax.Array | None = None,
    mask_target: jax.Array | None = None,
):
    """Domain-adversarial loss on gradient-reversed features.

    With `l = D(GRL_lam(z))` and domain label `y` (source 0, target 1), the per-row binary
    cross-entropy from logits, computed stably, is
    `bce(l, y) = softplus(l) - y * l = max(l, 0) - y l + log(1 + exp(-|l|))`, and the loss is
    its mean over all valid rows of both domains (pooled, so each row counts once):
    `L = (sum_s m_s bce(l_s, 0) + sum_t m_t bce(l_t, 1)) / (sum_s m_s + sum_t m_t)`.

    Minimising `L` over discriminator and encoder together trains the discriminator to tell
    the domains apart, while the encoder receives `-lam * dL/dz` (gradient reversal).

    Args:
      disc_params: output of `discriminator_init`.
      z_source: f32[b, d] source-domain features.
      z_target: f32[b2, d] target-domain features.
      lam: reversal strength (python float or traced f32[]).
      mask_source: optional bool[b], False for padded rows.
      mask_target: optional bool[b2], False for padded rows.

    Returns:
      (loss f32[], aux) with aux `{"accuracy", "accuracy_source", "accuracy_target",
      "loss_source", "loss_target"}` (f32[] each; a row is predicted "target" when its logit
      is > 0; per-domain values are means over that domain's valid rows).
    """
    if z_source.ndim != 2 or z_target.ndim != 2 or z_source.shape[1] != z_target.shape[1]:
        raise ValueError(f"dann_loss: z_source {z_source.shape} and z_target {z_target.shape}")
    ws = _row_weights(mask_source, z_source.shape[0])
    wt = _row_weights(mask_target, z_target.shape[0])
    ls = discriminator_apply(disc_params, grad_reverse(z_source, lam))
    lt = discriminator_apply(disc_params, grad_reverse(z_target, lam))
    bce_s = jax.nn.softplus(ls)  # label 0
    bce_t = jax.nn.softplus(-lt)  # label 1: softplus(l) - l
    ns, nt = jnp.sum(ws), jnp.sum(wt)
    loss = (jnp.sum(ws * bce_s) + jnp.sum(wt * bce_t)) / jnp.maximum(ns + nt, 1.0)
    hit_s = (ls <= 0).astype(jnp.float32)
    hit_t = (lt > 0).astype(jnp.float32)
    safe = lambda num, den: num / jnp.maximum(den, 1.0)
    aux = {
        "accuracy": safe(jnp.sum(ws * hit_s) + jnp.sum(wt * hit_t), ns + nt),
        "accuracy_source": safe(jnp.sum(ws * hit_s), ns),
        "accuracy_target": safe(jnp.sum(wt * hit_t), nt),
        "loss_source": safe(jnp.sum(ws * bce_s), ns),
        "loss_target": safe(jnp.sum(wt * bce_t), nt),
    }
    return loss, aux
