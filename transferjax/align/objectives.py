"""Alignment objectives on phi outputs, by name: "none", "dann", "mmd", "coral", "infonce".

An objective is one pure function over a batch of source and target representations

    fn(z_s: f32[b, d], z_t: f32[b2, d], *, mask_s: bool[b], mask_t: bool[b2], paired: bool,
       params, step: f32[], total_steps: int, cfg: RunConfig, key, hyper: dict)
       -> (loss f32[], aux dict)

registered with `@register_objective(name)`; it may declare `init(key, *, dim, cfg) -> params`
for trainable params of its own (DANN's discriminator), which train with the encoders. Masks
drop padded rows and rows of users without that domain; `paired` says row i of `z_s` and
`z_t` is the same user (then b == b2), which contrastive objectives need. `step` is the traced
global training step and `total_steps` the number of steps of the stage (known at build time).
`hyper` maps config keys to traced f32[] values ("align.lam", "align.temperature"): read those
rather than `cfg`, so that sweeps over them share one compiled program.
Objectives that need only some arguments take the rest as `**_`:

    @register_objective("mean_l2")
    def mean_l2(z_s, z_t, *, mask_s, mask_t, **_):
        ms, mt = mask_s.astype(z_s.dtype), mask_t.astype(z_t.dtype)
        mean = lambda z, m: (m @ z) / jnp.maximum(jnp.sum(m), 1.0)
        return jnp.sum((mean(z_s, ms) - mean(z_t, mt)) ** 2), {}

Defined in an experiment file (which `transferjax run` imports), `--set align.objective=mean_l2`
then trains the phi model with it. The phi model passes z_s through stop_gradient, so its
objectives adapt the target encoder towards the source space (see `transferjax.methods.phi.model`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from transferjax.align import distances as al
from transferjax.align.config import AlignConfig  # noqa: F401  (registers the align section)
from transferjax.models import grl
from transferjax.models.discriminator import dann_loss, discriminator_init

__all__ = [
    "Objective",
    "available_objectives",
    "get_objective",
    "lam_schedule",
    "register_objective",
]


def _no_params(key, *, dim, cfg) -> dict:
    return {}


@dataclasses.dataclass(frozen=True)
class Objective:
    """A registered objective: `fn` (see module docstring) and `init` of its params."""

    name: str
    fn: Callable
    init: Callable = _no_params
    doc: str = ""


_OBJECTIVES: dict[str, Objective] = {}


def register_objective(name: str, *, init: Callable | None = None) -> Callable:
    """Decorator registering `fn` under `name`; `init(key, *, dim, cfg) -> params` optional."""

    def deco(fn: Callable) -> Callable:
        if name in _OBJECTIVES and _OBJECTIVES[name].fn is not fn:
            raise ValueError(f"objective {name!r} is already registered")
        _OBJECTIVES[name] = Objective(
            name=name, fn=fn, init=init or _no_params, doc=(fn.__doc__ or "").strip()
        )
        return fn

    return deco


def available_objectives() -> list[str]:
    return sorted(_OBJECTIVES)


def get_objective(name: str) -> Objective:
    if name not in _OBJECTIVES:
        raise ValueError(
            f"unknown alignment objective {name!r} (align.objective); "
            f"valid: {', '.join(available_objectives())}"
        )
    return _OBJECTIVES[name]


def lam_schedule(align, *, total_steps: int, lam=None) -> grl.Schedule:
    """The GRL strength schedule of `align` (an `AlignConfig`): constant | ganin | warmup, to
    the final strength `lam` (a traced value; default align.lam)."""
    lam = align.lam if lam is None else lam
    if align.lam_schedule == "constant":
        return grl.constant(lam)
    if align.lam_schedule == "ganin":
        return grl.ganin(lam_max=lam, gamma=align.gamma, total_steps=max(total_steps, 1))
    if align.lam_schedule == "warmup":
        return grl.warmup(lam=lam, warmup_steps=align.warmup_steps)
    raise ValueError(f"align.lam_schedule={align.lam_schedule!r}; valid: constant, ganin, warmup")


@register_objective("none")
def none_objective(z_s, z_t, **_):
    """No alignment: loss 0."""
    return jnp.zeros((), jnp.float32), {}


def _dann_init(key, *, dim, cfg) -> list:
    return discriminator_init(key, in_dim=dim, hidden=(cfg.align.disc_hidden,))


@register_objective("dann", init=_dann_init)
def dann_objective(z_s, z_t, *, mask_s, mask_t, params, step, total_steps, cfg, hyper=None, **_):
    """DANN (Ganin & Lempitsky 2015): domain BCE of a discriminator on gradient-reversed z.

    `lam = schedule(step)` (align.lam_schedule, align.lam, align.gamma, align.warmup_steps);
    minimising the loss trains the discriminator and, through the reversal, pushes the encoders
    towards domain-indistinguishable outputs (see `discriminator.dann_loss`).
    """
    lam = lam_schedule(cfg.align, total_steps=total_steps, lam=(hyper or {}).get("align.lam"))(step)
    loss, aux = dann_loss(params, z_s, z_t, lam=lam, mask_source=mask_s, mask_target=mask_t)
    return loss, {"disc_acc": aux["accuracy"], "lam": lam}


def _mmd2_linear_masked(x, y, *, bandwidths, mask_x, mask_y) -> jax.Array:
    """Linear-time MMD^2 (Gretton et al. 2012, Lemma 14) over the valid rows of each sample.

    Valid rows are moved to the front (stable), then consecutive pairs (2i, 2i + 1) are used
    while both samples have them: `1/n' sum_i k(x_2i, x_2i+1) + k(y_2i, y_2i+1)
    - k(x_2i, y_2i+1) - k(x_2i+1, y_2i)`, n' = floor(min(n_x, n_y) / 2) quadruples (0 if none).
    """
    x = x[jnp.argsort(~mask_x, stable=True)]
    y = y[jnp.argsort(~mask_y, stable=True)]
    n = min(x.shape[0], y.shape[0]) // 2 * 2
    x, y = x[:n], y[:n]
    h = jnp.asarray(bandwidths, jnp.float32).reshape(-1)
    k = lambda a, b: jnp.sum(jnp.exp(-jnp.sum((a - b) ** 2, -1)[:, None] / h), -1)
    terms = k(x[0::2], x[1::2]) + k(y[0::2], y[1::2]) - k(x[0::2], y[1::2]) - k(x[1::2], y[0::2])
    n_valid = jnp.minimum(jnp.sum(mask_x.astype(jnp.int32)), jnp.sum(mask_y.astype(jnp.int32)))
    ok = (2 * jnp.arange(n // 2) + 1 < n_valid).astype(jnp.float32)
    return jnp.sum(ok * terms) / jnp.maximum(jnp.sum(ok), 1.0)


@register_objective("mmd")
def mmd_objective(z_s, z_t, *, mask_s, mask_t, cfg, **_):
    """Multi-kernel MMD^2 (Long et al. 2015, DAN) between source and target rows.

    Bandwidths: median heuristic over the pooled valid rows times align.mmd_factors; estimator
    align.mmd_estimator: "unbiased" (U-statistic, O(b^2)) or "linear" (O(b)).
    """
    bw = al.median_bandwidths(z_s, z_t, factors=cfg.align.mmd_factors, mask_x=mask_s, mask_y=mask_t)
    if cfg.align.mmd_estimator == "linear":
        loss = _mmd2_linear_masked(z_s, z_t, bandwidths=bw, mask_x=mask_s, mask_y=mask_t)
    else:
        loss = al.mmd2_unbiased(z_s, z_t, bandwidths=bw, mask_x=mask_s, mask_y=mask_t)
    return loss, {"mmd2": loss}


@register_objective("coral")
def coral_objective(z_s, z_t, *, mask_s, mask_t, **_):
    """Deep CORAL (Sun & Saenko 2016): ||C_s - C_t||_F^2 / (4 d^2) over the valid rows."""
    loss = al.coral(z_s, z_t, mask_s=mask_s, mask_t=mask_t)
    return loss, {"coral": loss}


@register_objective("infonce")
def infonce_objective(z_s, z_t, *, mask_s, mask_t, paired, cfg, hyper=None, **_):
    """Symmetric InfoNCE (Oord et al. 2018) between a user's source and target representations.

    Positives are the two rows of one user; only rows where the user has both (mask_s &
    mask_t) take part, the other valid rows of the batch are the negatives. Needs paired rows.
    """
    if not paired:
        raise ValueError("infonce needs paired rows (row i of z_s and z_t is one user)")
    valid = mask_s & mask_t

    def unit(z):  # normalised here with an epsilon: the gradient of ||z|| is NaN at z = 0
        z = jnp.where(valid[:, None], z, 1.0)
        return z * jax.lax.rsqrt(jnp.sum(z * z, axis=-1, keepdims=True) + 1e-12)

    temperature = (hyper or {}).get("align.temperature", cfg.align.temperature)
    loss = al.info_nce(unit(z_s), unit(z_t), temperature=temperature, mask=valid)
    return loss, {"infonce": loss}
