"""Biased matrix factorisation for one domain: r_ui = mu + b_u + b_i + <p_u, q_i>.

Params are a dict pytree:
  user: f32[n_users, dim], item: f32[n_items, dim], user_bias: f32[n_users],
  item_bias: f32[n_items], mu: f32[] (global offset, initialised to the training mean and trained).

Losses take a batch dict of `user`, `item`, `rating` (i32/i32/f32[batch]) and `mask` bool[batch]
(padding rows of the last batch are masked out).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from transferjax.models.pointwise import first_unseen


def mf_init(
    key: jax.Array, *, n_users: int, n_items: int, dim: int, init_std: float = 0.1, mu: float = 0.0
) -> dict:
    """Gaussian factors N(0, init_std^2), zero biases, `mu` as given."""
    ku, ki = jax.random.split(key)
    return {
        "user": init_std * jax.random.normal(ku, (n_users, dim), jnp.float32),
        "item": init_std * jax.random.normal(ki, (n_items, dim), jnp.float32),
        "user_bias": jnp.zeros((n_users,), jnp.float32),
        "item_bias": jnp.zeros((n_items,), jnp.float32),
        "mu": jnp.asarray(mu, jnp.float32),
    }


def mf_score(
    user_vec: jax.Array, user_bias: jax.Array, params: dict, items: jax.Array
) -> jax.Array:
    """Scores of given user representations on items.

    Args:
      user_vec: f32[b, dim]; user_bias: f32[b].
      items: i32[b] (one item per user) or i32[b, m] (m items per user).
    Returns:
      f32[b] or f32[b, m]: mu + b_u + b_i + <p_u, q_i>.
    """
    q = params["item"][items]
    bi = params["item_bias"][items]
    if items.ndim == 1:
        return params["mu"] + user_bias + bi + jnp.sum(user_vec * q, axis=-1)
    return params["mu"] + user_bias[:, None] + bi + jnp.einsum("bd,bmd->bm", user_vec, q)


def mf_score_all(user_vec: jax.Array, user_bias: jax.Array, params: dict) -> jax.Array:
    """f32[b, n_items] scores of user representations against every item."""
    return (
        params["mu"] + user_bias[:, None] + params["item_bias"][None] + user_vec @ params["item"].T
    )


def _reg(params: dict, users: jax.Array, items: jax.Array) -> jax.Array:
    """f32[b] per-example squared L2 norm of the rows an example touches."""
    return (
        jnp.sum(params["user"][users] ** 2, -1)
        + jnp.sum(params["item"][items] ** 2, -1)
        + params["user_bias"][users] ** 2
        + params["item_bias"][items] ** 2
    )


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    m = mask.astype(x.dtype)
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def mse_loss(params: dict, batch: dict, *, reg: float) -> tuple[jax.Array, dict]:
    """Mean over unmasked rows of (r - r_hat)^2 + reg * ||rows||^2 (explicit ratings)."""
    u, i = batch["user"], batch["item"]
    pred = mf_score(params["user"][u], params["user_bias"][u], params, i)
    err = (batch["rating"] - pred) ** 2
    loss = _masked_mean(err + reg * _reg(params, u, i), batch["mask"])
    return loss, {"mse": _masked_mean(err, batch["mask"])}


def sample_negatives(
    params: dict, key: jax.Array, items: jax.Array, users: jax.Array | None = None, *, tries=8
) -> jax.Array:
    """Uniform negatives shaped like `items`: rows of `params["item"]`, or, when the item table
    is shared by two domains (CMF over overlapping items), entries of `params["neg_items"]`
    (i32[n]: the joint rows of this domain's items).

    With `params["positives"]` (a `transferjax.models.pointwise.positive_index` of the training
    rows, in the item rows returned here), a draw that is one of its user's (`users`, shaped
    like `items`) positives is drawn again, up to `tries` draws taken at once, as RecBole's
    samplers draw negatives (`mf.negatives=unseen`); a row whose every draw is a positive keeps
    the first. Without it, a negative may be one of the user's positives (the classic BPR
    sampler)."""
    pool = params.get("neg_items")
    n = params["item"].shape[0] if pool is None else pool.shape[0]
    index = params.get("positives")
    shape = items.shape if index is None else (tries, *items.shape)
    draws = jax.random.randint(key, shape, 0, n, dtype=items.dtype)
    draws = draws if pool is None else pool[draws]
    if index is None:
        return draws
    return first_unseen(index, users, draws)


def bpr_loss(params: dict, batch: dict, *, reg: float, key: jax.Array) -> tuple[jax.Array, dict]:
    """Bayesian personalised ranking (Rendle et al., UAI 2009) with one uniform negative.

    loss = mean -log sigmoid(s_ui - s_uj) + reg * (||rows_ui||^2 + ||q_j||^2 + b_j^2), j ~ U(items).
    (A sampled negative may be one of the user's positives, the usual practice, unless params
    hold "positives": `sample_negatives`.)
    """
    return _pair_loss(params, batch, reg=reg, key=key, kind="bpr")


def bce_loss(params: dict, batch: dict, *, reg: float, key: jax.Array) -> tuple[jax.Array, dict]:
    """Pointwise binary cross-entropy with one uniform negative per positive (label 1 for the
    training pair, 0 for the sampled item), as pointwise implicit-feedback trainers do:

    loss = mean (-log sigmoid(s_ui) - log sigmoid(-s_uj)) / 2 + reg * (||rows_ui||^2 + ||q_j||^2
    + b_j^2), j ~ U(items): the mean over the 2b labelled rows of a batch of b positives.
    Unlike BPR, mu and b_u do not cancel: they calibrate the probability.
    """
    return _pair_loss(params, batch, reg=reg, key=key, kind="bce")


def _pair_loss(params: dict, batch: dict, *, reg: float, key: jax.Array, kind: str):
    u, i = batch["user"], batch["item"]
    j = sample_negatives(params, key, i, u)
    pu, bu = params["user"][u], params["user_bias"][u]
    s_i, s_j = mf_score(pu, bu, params, i), mf_score(pu, bu, params, j)
    nll = pair_nll(s_i, s_j, kind=kind)
    r = _reg(params, u, i) + jnp.sum(params["item"][j] ** 2, -1) + params["item_bias"][j] ** 2
    loss = _masked_mean(nll + reg * r, batch["mask"])
    return loss, {kind: _masked_mean(nll, batch["mask"])}


def pair_nll(s_i: jax.Array, s_j: jax.Array, *, kind: str) -> jax.Array:
    """f32[b] per positive: BPR's -log sigmoid(s_i - s_j) or BCE's (-log sigmoid(s_i) -
    log sigmoid(-s_j)) / 2, for the scores of positives s_i and sampled negatives s_j."""
    if kind == "bpr":
        return -jax.nn.log_sigmoid(s_i - s_j)
    return -(jax.nn.log_sigmoid(s_i) + jax.nn.log_sigmoid(-s_j)) / 2


PAIR_KINDS = ("bpr", "bce")  # the losses that sample one negative item per positive


def mf_loss(params: dict, batch: dict, *, kind: str, reg: float, key: jax.Array):
    """Dispatches to `mse_loss`, `bpr_loss` or `bce_loss` by `kind`."""
    if kind == "mse":
        return mse_loss(params, batch, reg=reg)
    if kind in PAIR_KINDS:
        return _pair_loss(params, batch, reg=reg, key=key, kind=kind)
    raise ValueError(f"unknown MF loss {kind!r}; valid: mse, bpr, bce")
