"""Gradient reversal layer (GRL) and lambda schedules for adversarial domain adaptation.

`grad_reverse(x, lam)` is the identity in the forward pass and multiplies the incoming
gradient by `-lam` in the backward pass (Ganin & Lempitsky 2015, "Unsupervised Domain
Adaptation by Backpropagation"). `lam` is a traced scalar, so it can change every step, be
produced by a schedule inside `lax.scan`, and be `jax.vmap`-ed over; it receives a zero
gradient itself.

Schedules are factories returning pure functions `step -> f32[]` of a traced step count:
`constant`, `ganin` and `warmup`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Schedule = Callable[[jax.Array], jax.Array]

__all__ = ["Schedule", "constant", "ganin", "grad_reverse", "warmup"]


@jax.custom_vjp
def _reverse(x, lam):
    return x


def _reverse_fwd(x, lam):
    return x, lam


def _reverse_bwd(lam, g):
    gx = jax.tree.map(lambda t: (-lam).astype(t.dtype) * t, g)
    return gx, jnp.zeros_like(lam)


_reverse.defvjp(_reverse_fwd, _reverse_bwd)


def grad_reverse(x, lam) -> jax.Array:
    """Gradient reversal: identity forward, `-lam * g` backward.

    Args:
      x: f32[...] array (or a pytree of arrays) whose gradient is reversed.
      lam: scalar reversal strength (python float or traced f32[]); it gets a zero gradient.

    Returns:
      `x` unchanged. Under `jax.grad`, the cotangent reaching `x` is `-lam * g` where `g` is
      the cotangent arriving at the output.
    """
    return _reverse(x, jnp.asarray(lam, jnp.float32))


def _as_step(step) -> jax.Array:
    return jnp.asarray(step).astype(jnp.float32)


def constant(lam) -> Schedule:
    """Constant schedule: `lam(step) = lam`."""

    def schedule(step):
        del step
        return jnp.asarray(lam, jnp.float32)

    return schedule


def ganin(*, lam_max: float = 1.0, gamma: float = 10.0, total_steps: int) -> Schedule:
    """Ganin & Lempitsky (2015) schedule.

    `lam(step) = lam_max * (2 / (1 + exp(-gamma * p)) - 1)` with `p = clip(step / total_steps,
    0, 1)` the training progress; it rises from 0 at step 0 to about `lam_max` at the end,
    which suppresses the noisy discriminator signal early in training.

    Args:
      lam_max: final strength.
      gamma: steepness (10 in the paper).
      total_steps: steps of training (> 0).
    """
    if total_steps <= 0:
        raise ValueError(f"ganin: total_steps must be > 0, got {total_steps}")

    def schedule(step):
        p = jnp.clip(_as_step(step) / float(total_steps), 0.0, 1.0)
        return lam_max * (2.0 / (1.0 + jnp.exp(-gamma * p)) - 1.0)

    return schedule


def warmup(*, lam: float, warmup_steps: int, delay_steps: int = 0) -> Schedule:
    """Delayed linear warm-up to a constant.

    `lam(step) = 0` for `step <= delay_steps`, then rises linearly and reaches `lam` at
    `step = delay_steps + warmup_steps`, constant afterwards:
    `lam * clip((step - delay_steps) / warmup_steps, 0, 1)`. With `warmup_steps = 0` it is a
    step function: 0 up to `delay_steps`, `lam` after it.

    Args:
      lam: final strength.
      warmup_steps: length of the linear ramp (>= 0).
      delay_steps: steps with `lam = 0` before the ramp starts (>= 0).
    """
    if warmup_steps < 0 or delay_steps < 0:
        raise ValueError(
            f"warmup: warmup_steps and delay_steps must be >= 0, got {warmup_steps}, {delay_steps}"
        )

    def schedule(step):
        s = _as_step(step) - float(delay_steps)
        if warmup_steps == 0:
            frac = (s > 0).astype(jnp.float32)
        else:
            frac = jnp.clip(s / float(warmup_steps), 0.0, 1.0)
        return jnp.asarray(lam, jnp.float32) * frac

    return schedule
