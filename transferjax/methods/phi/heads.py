"""Task heads of the phi model (`transferjax.methods.phi.model`): the multi-task head, per-item
output layers and their per-row losses.

The multi-task head (cfg.phi.head: shared_bottom | mmoe | ple over `heads.py`) is residual:
task k reads `t_k = h + tower_k(h)` with the towers' last layer initialised to zero, so
training starts from the linear model `t_k = h` and the head learns non-linear corrections
where they pay (on the linear synthetic benchmark a plain MLP head overfitted the few users
with both domains and lost most of the transfer).

Output layers over all items of a domain, from a task representation t f32[b, D]:
click logits `t W + c` (c starts at the logit of each item's share of users), ratings
`mu + b_j + t . w_j` (b starts at the shrunk item means minus mu).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.methods.baselines import item_means
from transferjax.models import heads as H


def head_fns(phi_cfg, *, dim: int, n_tasks: int):
    """(init(key) -> params, apply(params, h f32[b, dim]) -> list of n_tasks f32[b, dim])."""
    e, n = phi_cfg.expert_dim, phi_cfg.n_experts
    kw = dict(in_dim=dim, n_tasks=n_tasks, tower=(e,), out_dim=dim)
    if phi_cfg.head == "shared_bottom":
        init, apply = (lambda k: H.shared_bottom_init(k, bottom=(e,), **kw)), H.shared_bottom_apply
    elif phi_cfg.head == "mmoe":
        init, apply = (lambda k: H.mmoe_init(k, n_experts=n, expert=(e,), **kw)), H.mmoe_apply
    elif phi_cfg.head == "ple":  # n_experts split between task-specific and shared experts
        init = lambda k: H.ple_init(
            k, n_task_experts=max(1, n // 2), n_shared_experts=max(1, n - n // 2), expert=(e,), **kw
        )
        apply = H.ple_apply
    else:
        raise ValueError(f"phi.head={phi_cfg.head!r}; valid: shared_bottom, mmoe, ple")

    def init_residual(key):
        p = init(key)
        towers = list(p["towers"])
        towers[-1] = jax.tree.map(jnp.zeros_like, towers[-1])
        return {**p, "towers": towers}

    def apply_residual(params, h):
        return [h + t for t in apply(params, h)[0]]

    return init_residual, apply_residual


def _dense(key, dim: int, bias: np.ndarray) -> dict:
    w = jax.random.normal(key, (dim, bias.shape[0]), jnp.float32) * 0.1 / dim**0.5
    return {"w": w, "b": jnp.asarray(bias, jnp.float32)}


def click_out_init(key, *, dim: int, inter) -> dict:
    """Click layer {"w": f32[dim, n_items], "b": f32[n_items]}; b = logit of item coverage."""
    p = (np.bincount(inter.item, minlength=inter.n_items) + 1.0) / (
        len(inter.users_present()) + 2.0
    )
    p = np.minimum(p, 1.0 - 1e-3)
    return _dense(key, dim, np.log(p / (1.0 - p)))


def rating_out_init(key, *, dim: int, inter, mu: float) -> dict:
    """Rating layer {"w": f32[dim, n_items], "b": f32[n_items]}; b = shrunk item mean - mu."""
    return _dense(key, dim, item_means(inter) - mu)


@jax.custom_vjp
def softplus(x: jax.Array) -> jax.Array:
    """`log(1 + e^x)` computed stably, with the gradient `sigmoid(x)` written directly.

    Same values as `jax.nn.softplus`; its backward pass is one logistic per element where the
    autodiff of `logaddexp` re-evaluates exponentials and selects, which shows on XLA:CPU
    when the click loss runs over every item of a domain.
    """
    return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def _softplus_fwd(x):
    return softplus(x), x


def _softplus_bwd(x, g):
    return (g * jax.nn.sigmoid(x),)


softplus.defvjp(_softplus_fwd, _softplus_bwd)


def click_rows(out: dict, t: jax.Array, inp: tuple, lab: tuple) -> jax.Array:
    """Per-row sigmoid BCE f32[b] of the click logits `t W + c` over the domain's items.

    `L_u = mean_{j not in input(u)} softplus(l_uj) - y_uj l_uj`, y_uj = 1 for the user's label
    entries; the user's input entries are left out of the mean (they are neither positives
    nor negatives), so the loss never rewards copying the input.

    Args:
      out: the click layer.
      t: f32[b, D] task representations.
      inp, lab: (items i32[b, L], rating f32[b, L], mask bool[b, L]) input / label entries.
    """
    logits = t @ out["w"] + out["b"]
    b, n = logits.shape
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], inp[0].shape)

    def scatter(items, mask):
        z = jnp.zeros((b, n), jnp.float32)
        return jax.lax.stop_gradient(
            z.at[rows, jnp.clip(items, 0, n - 1)].max(mask.astype(jnp.float32))
        )

    y, keep = scatter(lab[0], lab[2]), 1.0 - scatter(inp[0], inp[2])
    bce = softplus(logits) - y * logits
    return jnp.sum(keep * bce, axis=1) / jnp.maximum(jnp.sum(keep, axis=1), 1.0)


def rating_rows(out: dict, t: jax.Array, mu: float, lab: tuple) -> tuple[jax.Array, jax.Array]:
    """Per-row (sum of squared errors, count) f32[b] of `mu + b_j + t . w_j` on label entries."""
    items, rating, mask = lab
    n = out["b"].shape[0]
    pred = jnp.take_along_axis(mu + out["b"] + t @ out["w"], jnp.clip(items, 0, n - 1), axis=1)
    err = jnp.where(mask, (pred - jax.lax.stop_gradient(rating)) ** 2, 0.0)
    return jnp.sum(err, axis=1), jnp.sum(mask.astype(jnp.float32), axis=1)


def rating_at(out: dict, t: jax.Array, mu: float, items: jax.Array) -> jax.Array:
    """Predicted ratings f32[c] of users t f32[c, D] for items i32[c]."""
    return mu + out["b"][items] + jnp.sum(t * out["w"].T[items], axis=-1)


def click_at(out: dict, t: jax.Array, items: jax.Array) -> jax.Array:
    """Click logits for items i32[c] or i32[c, m] of users t f32[c, D]."""
    w = jnp.take(out["w"].T, items, axis=0)  # [c, (m,) D]
    t = t if items.ndim == 1 else t[:, None, :]
    return jnp.sum(t * w, axis=-1) + out["b"][items]
