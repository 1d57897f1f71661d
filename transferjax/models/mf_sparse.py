"""Row-sparse training steps for the MF family (`Stage.step` hooks of `transferjax.methods.api`).

A dense step differentiates the loss w.r.t. whole tables (a zeros-like table gradient, then
Adam over every row). These steps gather the batch's rows first and differentiate w.r.t. the
gathered rows only:

    rows  = {user: P[u], user_bias: b_u[u], item: Q[i], item_bias: b_i[i]  (+ neg: Q[j],
             neg_bias: b_i[j] for BPR, j the sampled negatives)}
    (loss, aux), d rows, d mu = value_and_grad(row loss)(rows, mu)
    params, state = optimizer.sparse_update(params, state, {table: (idx, d rows)}, {mu: d mu})

The row loss is the same formula as `transferjax.models.mf.mse_loss` / `bpr_loss` (masked mean
of the error plus `reg` times the squared norm of the rows each example touches) and BPR
samples its negatives with the same call, so a sparse step computes the same loss and, summed
over duplicate rows, the same gradient as the dense one. Masked (padding) examples get index -1,
so they change no row and no moment (not even row 0's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from transferjax.models.mf import PAIR_KINDS, pair_nll, sample_negatives
from transferjax.models.sparse import SparseOptimizer


def _masked_means(mask: jax.Array, *xs: jax.Array) -> list[jax.Array]:
    """Means of each x f32[b] over the rows where mask bool[b] is set (0 when none is)."""
    m = mask.astype(xs[0].dtype)
    sums = jnp.stack([jnp.sum(x * m) for x in xs] + [jnp.sum(m)])  # one output of the sums
    return [sums[k] / jnp.maximum(sums[-1], 1.0) for k in range(len(xs))]


def mf_rows(mf: dict, batch: dict, key: jax.Array, *, kind: str) -> tuple[dict, dict]:
    """Gathers the rows a batch touches.

    Args:
      mf: MF params (`transferjax.models.mf.mf_init`): user f32[n_u, d], item f32[n_i, d],
        user_bias f32[n_u], item_bias f32[n_i], mu f32[].
      batch: user, item i32[b], rating f32[b], mask bool[b].
      key: BPR negatives, drawn as in `bpr_loss` (`sample_negatives`, shape of `item`).
      kind: "mse", "bpr" or "bce".

    Returns:
      rows: {"user": f32[b, d], "user_bias": f32[b], "item": f32[b, d], "item_bias": f32[b]}
        plus "neg": f32[b, d], "neg_bias": f32[b] for BPR and BCE.
      idx: {"user": i32[b], "item": i32[b] (mse) or i32[2b] (bpr, bce: positives then
        negatives)}
        with -1 where the example is masked.
    """
    if kind not in ("mse", *PAIR_KINDS):
        raise ValueError(f"unknown MF loss {kind!r}; valid: mse, bpr, bce")
    u, i, mask = batch["user"], batch["item"], batch["mask"]
    rows = {
        "user": mf["user"][u],
        "user_bias": mf["user_bias"][u],
        "item": mf["item"][i],
        "item_bias": mf["item_bias"][i],
    }
    item_idx = [i]
    if kind in PAIR_KINDS:
        j = sample_negatives(mf, key, i, u)
        rows["neg"], rows["neg_bias"] = mf["item"][j], mf["item_bias"][j]
        item_idx.append(j)
    pad = jnp.asarray(-1, u.dtype)
    idx = {
        "user": jnp.where(mask, u, pad),
        "item": jnp.concatenate([jnp.where(mask, x, pad) for x in item_idx]),
    }
    return rows, idx


def mf_row_loss(
    rows: dict, mu: jax.Array, batch: dict, *, kind: str, reg: float
) -> tuple[jax.Array, dict]:
    """The MF loss of `transferjax.models.mf.mf_loss` over gathered rows.

    mse: mean_b (r - (mu + b_u + b_i + <p_u, q_i>))^2 + reg (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2).
    bpr: mean_b -log sigmoid(s_ui - s_uj) + reg (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2 + |q_j|^2
      + b_j^2) (Rendle et al., UAI 2009); bce: the same with BCE's nll (`pair_nll`). Means over
      unmasked rows.

    Args:
      rows: from `mf_rows`; mu: f32[]; batch: rating f32[b], mask bool[b].
    """
    pu, bu, qi, bi = rows["user"], rows["user_bias"], rows["item"], rows["item_bias"]
    s_i = mu + bu + bi + jnp.sum(pu * qi, axis=-1)
    norm = jnp.sum(pu * pu, -1) + jnp.sum(qi * qi, -1) + bu * bu + bi * bi
    if kind == "mse":
        err = (batch["rating"] - s_i) ** 2
        mse, loss = _masked_means(batch["mask"], err, err + reg * norm)
        return loss, {"mse": mse}
    qj, bj = rows["neg"], rows["neg_bias"]
    s_j = mu + bu + bj + jnp.sum(pu * qj, axis=-1)
    nll = pair_nll(s_i, s_j, kind=kind)
    norm = norm + jnp.sum(qj * qj, -1) + bj * bj
    term, loss = _masked_means(batch["mask"], nll, nll + reg * norm)
    return loss, {kind: term}


def table_grads(idx: dict, g: dict, *, prefix: str = "", item_prefix: str | None = None) -> dict:
    """{table path: (idx, row gradients)} for `sparse_update` from `mf_rows`' idx and the
    gradient of the rows dict (BPR negatives join the item table's rows)."""
    ip = prefix if item_prefix is None else item_prefix
    item_g, item_bg = g["item"], g["item_bias"]
    if "neg" in g:
        item_g = jnp.concatenate([item_g, g["neg"]])
        item_bg = jnp.concatenate([item_bg, g["neg_bias"]])
    return {
        f"{prefix}user": (idx["user"], g["user"]),
        f"{prefix}user_bias": (idx["user"], g["user_bias"]),
        f"{ip}item": (idx["item"], item_g),
        f"{ip}item_bias": (idx["item"], item_bg),
    }


def _value(v, frozen: dict):
    """A hyperparameter given as a number, or as a config key read (traced) from
    `view["hyper"]` (see `transferjax.methods.registry`)."""
    return frozen["hyper"][v] if isinstance(v, str) else v


def mf_sparse_step(
    *, kind: str, reg: float | str, optimizer: SparseOptimizer, positives: str | None = None
):
    """`step(part, opt_state, frozen, batch, key) -> (part, opt_state, loss, aux)` for a Stage
    training one domain's MF params (`part`) with a row-sparse optimizer; mu is updated densely.
    `reg`: a number or a key of the traced `frozen["hyper"]` ("mf.reg"). `positives`: the key
    of the domain's positive index in `frozen["mf_positives"]`, when negatives avoid the user's
    positives (`transferjax.models.mf.sample_negatives`).
    """

    def step(part, opt_state, frozen, batch, key):
        view = (
            part if positives is None else {**part, "positives": frozen["mf_positives"][positives]}
        )
        rows, idx = mf_rows(view, batch, key, kind=kind)

        def f(r, mu):
            return mf_row_loss(r, mu, batch, kind=kind, reg=_value(reg, frozen))

        (loss, aux), (g_rows, g_mu) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(
            rows, part["mu"]
        )
        part, opt_state = optimizer.sparse_update(
            part, opt_state, table_grads(idx, g_rows), {"mu": g_mu}
        )
        return part, opt_state, loss, aux

    return step


def cmf_sparse_step(
    *,
    source_weight: float | str,
    kinds: tuple[str, str],
    reg: float | str,
    source_batch: int,
    optimizer: SparseOptimizer,
    share: str = "users",
):
    """Row-sparse step for CMF (`transferjax.methods.cmf`): the same objective and the
    same sampling as its dense loss (a source batch of `source_batch` rows drawn from
    `frozen["source_rows"]`); the shared rows (`share`: "users" or "items") of both batches
    are coalesced into one update; mu_s and mu_t stay fixed (stop-gradient in the dense loss).
    `source_weight` and `reg`: numbers or keys of the traced `frozen["hyper"]`; with shared
    items, BPR negatives come from `frozen["neg_items"][domain]`, and they avoid the user's
    positives when `frozen["mf_positives"][domain]` is there
    (`transferjax.methods.mf.mf_positives`)."""
    shared = ("user", "user_bias") if share == "users" else ("item", "item_bias")

    def step(part, opt_state, frozen, batch, key):
        w, lam = _value(source_weight, frozen), _value(reg, frozen)
        src_rows = frozen["source_rows"]
        n_s = src_rows["user"].shape[0]
        k_idx, k_loss = jax.random.split(key)
        sel = jax.random.randint(k_idx, (source_batch,), 0, n_s, dtype=jnp.int32)
        sb = {name: v[sel] for name, v in src_rows.items()}
        sb["mask"] = jnp.ones((source_batch,), bool)
        k_s, k_t = jax.random.split(k_loss)
        gathered = {}
        for dom, b, k, kd in (("source", sb, k_s, kinds[0]), ("target", batch, k_t, kinds[1])):
            view = {
                t: part[t] if t in shared else part[dom][t]
                for t in ("user", "user_bias", "item", "item_bias")
            }
            if share == "items" and "neg_items" in frozen:
                view["neg_items"] = frozen["neg_items"][dom]
            if "mf_positives" in frozen:
                view["positives"] = frozen["mf_positives"][dom]
            gathered[dom] = mf_rows(view, b, k, kind=kd)

        def f(rs, rt):
            l_s, _ = mf_row_loss(rs, part["source"]["mu"], sb, kind=kinds[0], reg=lam)
            l_t, _ = mf_row_loss(rt, part["target"]["mu"], batch, kind=kinds[1], reg=lam)
            return w * l_s + (1.0 - w) * l_t, {"source_loss": l_s, "target_loss": l_t}

        (loss, aux), (g_s, g_t) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(
            gathered["source"][0], gathered["target"][0]
        )

        def grads(dom, g):  # the shared tables unprefixed, the domain's own under "dom/"
            users = share == "users"
            return table_grads(
                gathered[dom][1],
                g,
                prefix="" if users else f"{dom}/",
                item_prefix=f"{dom}/" if users else "",
            )

        gs, gt = grads("source", g_s), grads("target", g_t)
        row_grads = {**gs, **gt}
        joint_idx = jnp.concatenate([gs[shared[0]][0], gt[shared[0]][0]])  # one plan for both
        for name in shared:  # shared rows: one coalesced update
            row_grads[name] = (joint_idx, jnp.concatenate([gs[name][1], gt[name][1]]))
        part, opt_state = optimizer.sparse_update(part, opt_state, row_grads, {})
        return part, opt_state, loss, aux

    return step
