"""Embedding mapping: EMCDR (Man et al., "Cross-Domain Recommendation: An Embedding and Mapping
Approach", IJCAI 2017).

Three stages: (1) biased MF in the source domain, (2) biased MF in the target domain, (3) a
mapping f trained on the warm overlapping users (those with training data in both domains):

    min_f  mean_u || f(x_u^s) - x_u^t ||^2 + reg * ||W||^2,   x_u = [p_u, b_u] (factors and bias)

with the MF params frozen. A cold user's target representation is f(x_u^s); the score is
mu_t + b_hat_u + b_i + <p_hat_u, q_i>. Users with target training data keep their own factors.
Mapping the bias along with the factors is a small extension of the paper (which maps factors
only); with `mapping="linear"` f is x -> x W without bias, as in the paper.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from transferjax.config import section
from transferjax.methods.api import (
    Built,
    Represent,
    hyper_init,
    own_or_fallback,
    selected_stage,
)
from transferjax.methods.mf import MF_TRACED, bridge_pretraining, known_users, mf_scorer
from transferjax.methods.registry import register


@section("emcdr")
@dataclasses.dataclass(frozen=True, kw_only=True)
class EMCDRConfig:
    """EMCDR mapping (Man et al., IJCAI 2017): f(source user factors) -> target user factors.

    mapping: "linear" (no bias, as in the paper) or "mlp" (one hidden layer, tanh).
    """

    mapping: Literal["linear", "mlp"] = "mlp"
    hidden: int = 64
    reg: float = 1e-4


def mapping_init(key: jax.Array, *, dim_in: int, dim_out: int, kind: str, hidden: int) -> dict:
    """Params of f: linear {"w": f32[in, out]} or MLP {"w1", "b1", "w2", "b2"}."""
    k1, k2 = jax.random.split(key)
    if kind == "linear":
        return {"w": jnp.eye(dim_in, dim_out, dtype=jnp.float32)}
    if kind == "mlp":
        return {
            "w1": jax.random.normal(k1, (dim_in, hidden), jnp.float32) * (1.0 / dim_in) ** 0.5,
            "b1": jnp.zeros((hidden,), jnp.float32),
            "w2": jax.random.normal(k2, (hidden, dim_out), jnp.float32) * (1.0 / hidden) ** 0.5,
            "b2": jnp.zeros((dim_out,), jnp.float32),
        }
    raise ValueError(f"unknown mapping {kind!r}; valid: linear, mlp")


def mapping_apply(params: dict, x: jax.Array) -> jax.Array:
    """f32[b, in] -> f32[b, out]."""
    if "w" in params:
        return x @ params["w"]
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def _user_x(mf: dict, users: jax.Array) -> jax.Array:
    """f32[b, d + 1] concatenated user factors and bias."""
    return jnp.concatenate([mf["user"][users], mf["user_bias"][users][:, None]], axis=-1)


def mapping_loss(params: dict, batch: dict, *, reg: float) -> tuple[jax.Array, dict]:
    """Masked mean squared mapping error + reg * sum of squared weights (MF params frozen)."""
    x = jax.lax.stop_gradient(_user_x(params["source"], batch["src"]))
    y = jax.lax.stop_gradient(_user_x(params["target"], batch["tgt"]))
    err = jnp.sum((mapping_apply(params["map"], x) - y) ** 2, axis=-1)
    m = batch["mask"].astype(err.dtype)
    mse = jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0)
    l2 = sum(jnp.sum(w**2) for k, w in params["map"].items() if k.startswith("w"))
    return mse + reg * l2, {"map_mse": mse}


EMCDR_TRACED = (*MF_TRACED, "emcdr.reg")


@register("emcdr", traced=EMCDR_TRACED)
def build_emcdr(cfg, split) -> Built:
    """EMCDR: MF per domain, then a linear or MLP map trained on warm overlap users."""
    (src_init, src_stage), (tgt_init, tgt_stage) = bridge_pretraining(cfg, split, "EMCDR")
    d = cfg.mf.dim + 1

    def init(key):
        k_s, k_t, k_m = jax.random.split(key, 3)
        return {
            "source": src_init(k_s),
            "target": tgt_init(k_t),
            "map": mapping_init(
                k_m, dim_in=d, dim_out=d, kind=cfg.emcdr.mapping, hidden=cfg.emcdr.hidden
            ),
        }

    map_stage = selected_stage(
        cfg,
        name="mapping",
        part="map",
        loss=lambda p, batch, k: mapping_loss(p, batch, reg=p["hyper"]["emcdr.reg"]),
        examples={"src": split.warm_pairs[:, 0], "tgt": split.warm_pairs[:, 1]},
    )

    def user_repr(p, src, tgt):
        t = p["target"]
        own = (t["user"][tgt], t["user_bias"][tgt])
        mapped = mapping_apply(p["map"], _user_x(p["source"], jnp.maximum(src, 0)))
        fallback = (mapped[:, :-1], mapped[:, -1])
        # no source profile (src < 0) and no target history: item baseline only.
        has_src = src >= 0
        fallback = (
            jnp.where(has_src[:, None], fallback[0], 0.0),
            jnp.where(has_src, fallback[1], 0.0),
        )
        return own_or_fallback(p["known_target"], own, fallback, tgt)

    return Built(
        init=init,
        stages=(src_stage, tgt_stage, map_stage),
        scorer=mf_scorer(user_repr),
        data={"known_target": known_users(split.target_train)},
        hyper=hyper_init(cfg, EMCDR_TRACED),
        represent=Represent(
            source=lambda p, src: mapping_apply(p["map"], _user_x(p["source"], src)),
            target=lambda p, tgt: _user_x(p["target"], tgt),
            space="EMCDR: mapped source [p_u, b_u] f(x^s_u) vs target MF [p_u, b_u]",
        ),
    )
