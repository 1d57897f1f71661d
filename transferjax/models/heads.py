"""Multi-task heads over a shared input: shared-bottom, MMoE, PLE; and task-loss weighting.

All heads take `x: f32[batch, in_dim]` and return `(outputs, gates)` where `outputs` is a
list with one tower output f32[batch, out_dim] per task (linear, e.g. logits) and `gates`
holds the gate distributions for inspection (None for shared-bottom).

Experts and towers of one kind are stored stacked (leading axis = expert or task) and applied
with `jax.vmap`, so the number of experts does not grow the traced program.

- Shared-bottom (Caruana 1997): one bottom MLP, one tower per task.
- MMoE (Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning with Multi-gate
  Mixture-of-Experts"): `n_experts` MLP experts; task t mixes them with its own softmax gate
  `g_t(x) = softmax(x W_t + b_t)`.
- PLE (Tang et al. 2020, "Progressive Layered Extraction"): per level, task-specific and shared
  experts; task t's gate mixes (task t experts + shared experts) of its own input; between
  levels a shared gate mixes all experts of the shared input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from transferjax.models.mlp import mlp_apply, mlp_init

__all__ = [
    "fixed_weights",
    "mmoe_apply",
    "mmoe_init",
    "ple_apply",
    "ple_init",
    "shared_bottom_apply",
    "shared_bottom_init",
    "uncertainty_weights",
]


def _stacked_mlp_init(key, n: int, sizes: Sequence[int]):
    """n MLPs with identical sizes, stacked along a leading axis of every leaf."""
    return mlp_init(key, sizes, lead=(n,))


def _stacked_mlp_apply(params, x, *, final_activation: bool, shared_input: bool):
    """Apply stacked MLPs: x f32[b, d] (shared_input) or f32[n, b, d] -> f32[n, b, out]."""
    fn = lambda p, h: mlp_apply(p, h, final_activation=final_activation)
    return jax.vmap(fn, in_axes=(0, None if shared_input else 0))(params, x)


def _gate_init(key, n_gates: int, in_dim: int, n_out: int) -> dict:
    w = jax.random.normal(key, (n_gates, in_dim, n_out), jnp.float32) / math.sqrt(in_dim)
    return {"w": w, "b": jnp.zeros((n_gates, n_out), jnp.float32)}


def _check(n_tasks: int, **counts: int) -> None:
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    for name, c in counts.items():
        if c < 1:
            raise ValueError(f"{name} must be >= 1, got {c}")


# ----------------------------------------------------------------------------- shared bottom


def shared_bottom_init(
    key, *, in_dim: int, n_tasks: int, bottom=(64,), tower=(32,), out_dim: int = 1
) -> dict:
    """Shared bottom MLP `in_dim -> *bottom`; per-task towers `bottom[-1] -> *tower -> out_dim`."""
    _check(n_tasks)
    kb, kt = jax.random.split(key)
    return {
        "bottom": mlp_init(kb, (in_dim, *bottom)),
        "towers": _stacked_mlp_init(kt, n_tasks, (bottom[-1], *tower, out_dim)),
    }


def shared_bottom_apply(params: dict, x: jax.Array):
    """x: f32[b, in_dim] -> (list of n_tasks f32[b, out_dim], None)."""
    h = mlp_apply(params["bottom"], x)
    out = _stacked_mlp_apply(params["towers"], h, final_activation=False, shared_input=True)
    return list(out), None


# ----------------------------------------------------------------------------- MMoE


def mmoe_init(
    key,
    *,
    in_dim: int,
    n_tasks: int,
    n_experts: int,
    expert=(64,),
    tower=(32,),
    out_dim: int = 1,
) -> dict:
    """MMoE: stacked experts `in_dim -> *expert`, n_tasks gates `in_dim -> n_experts`, towers."""
    _check(n_tasks, n_experts=n_experts)
    ke, kg, kt = jax.random.split(key, 3)
    return {
        "experts": _stacked_mlp_init(ke, n_experts, (in_dim, *expert)),
        "gates": _gate_init(kg, n_tasks, in_dim, n_experts),
        "towers": _stacked_mlp_init(kt, n_tasks, (expert[-1], *tower, out_dim)),
    }


def mmoe_apply(params: dict, x: jax.Array):
    """MMoE forward: `h_t = sum_e g_t(x)_e f_e(x)`, `y_t = tower_t(h_t)`.

    Args:
      params: output of `mmoe_init`.
      x: f32[b, in_dim].

    Returns:
      (list of n_tasks f32[b, out_dim], gates f32[n_tasks, b, n_experts]).
    """
    experts = _stacked_mlp_apply(params["experts"], x, final_activation=True, shared_input=True)
    gates = jax.nn.softmax(
        jnp.einsum("bi,tie->tbe", x, params["gates"]["w"]) + params["gates"]["b"][:, None], -1
    )
    h = jnp.einsum("tbe,ebd->tbd", gates, experts)
    out = _stacked_mlp_apply(params["towers"], h, final_activation=False, shared_input=False)
    return list(out), gates


# ----------------------------------------------------------------------------- PLE


def ple_init(
    key,
    *,
    in_dim: int,
    n_tasks: int,
    n_levels: int = 1,
    n_task_experts: int = 1,
    n_shared_experts: int = 1,
    expert=(64,),
    tower=(32,),
    out_dim: int = 1,
) -> dict:
    """PLE with `n_levels` extraction levels.

    Returns:
      `{"levels": [level, ...], "towers": stacked towers}`; each level holds
      `task_experts` (leaves [n_tasks, n_task_experts, ...]), `shared_experts`
      ([n_shared_experts, ...]), `task_gates` (w f32[n_tasks, d, n_task_experts +
      n_shared_experts]) and, except on the last level, `shared_gate` (w f32[1, d,
      n_tasks * n_task_experts + n_shared_experts]).
    """
    _check(
        n_tasks, n_levels=n_levels, n_task_experts=n_task_experts, n_shared_experts=n_shared_experts
    )
    keys = jax.random.split(key, n_levels + 1)
    levels, d = [], in_dim
    for lvl in range(n_levels):
        kt, ks, kg, kh = jax.random.split(keys[lvl], 4)
        sizes = (d, *expert)
        level = {
            "task_experts": mlp_init(kt, sizes, lead=(n_tasks, n_task_experts)),
            "shared_experts": _stacked_mlp_init(ks, n_shared_experts, sizes),
            "task_gates": _gate_init(kg, n_tasks, d, n_task_experts + n_shared_experts),
        }
        if lvl < n_levels - 1:
            level["shared_gate"] = _gate_init(kh, 1, d, n_tasks * n_task_experts + n_shared_experts)
        levels.append(level)
        d = expert[-1]
    towers = _stacked_mlp_init(keys[-1], n_tasks, (d, *tower, out_dim))
    return {"levels": levels, "towers": towers}


def _gate(g: dict, h: jax.Array) -> jax.Array:
    """Softmax gates: h f32[n, b, d] with w f32[n, d, e] -> f32[n, b, e]."""
    return jax.nn.softmax(jnp.einsum("nbd,nde->nbe", h, g["w"]) + g["b"][:, None], axis=-1)


def ple_apply(params: dict, x: jax.Array):
    """PLE forward.

    Per level, with task inputs `h_t` and shared input `h_s` (both `x` at level 0):
    `h_t <- sum_e g_t(h_t)_e [E_t(h_t); E_s(h_s)]_e` and, between levels,
    `h_s <- sum_e g_s(h_s)_e [E_1(h_1); ...; E_T(h_T); E_s(h_s)]_e`; then `y_t = tower_t(h_t)`.

    Args:
      params: output of `ple_init`.
      x: f32[b, in_dim].

    Returns:
      (list of n_tasks f32[b, out_dim], gates): `gates` is a list with one dict per level,
      `{"task": f32[n_tasks, b, n_task_experts + n_shared_experts]}` plus, on every level but
      the last, `"shared": f32[b, n_tasks * n_task_experts + n_shared_experts]`.
    """
    n_tasks = params["towers"][0]["w"].shape[0]
    h_t = jnp.broadcast_to(x, (n_tasks, *x.shape))
    h_s = x
    all_gates = []
    for level in params["levels"]:
        task_out = jax.vmap(
            lambda p, h: _stacked_mlp_apply(p, h, final_activation=True, shared_input=True)
        )(level["task_experts"], h_t)  # [T, Et, b, d]
        shared_out = _stacked_mlp_apply(
            level["shared_experts"], h_s, final_activation=True, shared_input=True
        )  # [Es, b, d]
        t, et, b, d = task_out.shape
        g_task = _gate(level["task_gates"], h_t)  # [T, b, Et + Es]
        cand = jnp.concatenate(
            [task_out, jnp.broadcast_to(shared_out, (t, *shared_out.shape))], axis=1
        )
        new_t = jnp.einsum("tbe,tebd->tbd", g_task, cand)
        gates = {"task": g_task}
        if "shared_gate" in level:
            g_sh = _gate(level["shared_gate"], h_s[None])[0]  # [b, T*Et + Es]
            cand_s = jnp.concatenate([task_out.reshape(t * et, b, d), shared_out], axis=0)
            h_s = jnp.einsum("be,ebd->bd", g_sh, cand_s)
            gates["shared"] = g_sh
        h_t = new_t
        all_gates.append(gates)
    out = _stacked_mlp_apply(params["towers"], h_t, final_activation=False, shared_input=False)
    return list(out), all_gates


# ----------------------------------------------------------------------------- loss weighting


def uncertainty_weights(losses: jax.Array, log_vars: jax.Array) -> jax.Array:
    """Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla 2018).

    `L = sum_i exp(-s_i) L_i + s_i` with learned `s_i = log sigma_i^2`; large `s_i`
    down-weights task i, the `+ s_i` term keeps `s_i` from growing without bound.

    Args:
      losses: f32[tasks] per-task losses.
      log_vars: f32[tasks] learned log variances s_i.

    Returns:
      f32[] total loss.
    """
    if losses.shape != log_vars.shape:
        raise ValueError(f"losses {losses.shape} and log_vars {log_vars.shape} differ in shape")
    return jnp.sum(jnp.exp(-log_vars) * losses + log_vars)


def fixed_weights(losses: jax.Array, *, weights) -> jax.Array:
    """Fixed weighting `L = sum_i w_i L_i`; losses f32[tasks], weights f32[tasks] (traced ok)."""
    weights = jnp.asarray(weights, losses.dtype)
    if weights.shape != losses.shape:
        raise ValueError(f"losses {losses.shape} and weights {weights.shape} differ in shape")
    return jnp.sum(weights * losses)
