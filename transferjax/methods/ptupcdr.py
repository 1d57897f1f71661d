"""PTUPCDR (Zhu et al., "Personalized Transfer of User Preferences for Cross-domain
Recommendation", WSDM 2022): a meta network emits a personalised bridge per user.

Three stages: (1) biased MF in the source domain, (2) biased MF in the target domain (both
`mf.bridge_pretraining`, as in EMCDR), (3) the meta stage, MF params frozen:

    characteristic  c_u = sum_j a_uj q^s_j,   a_u = masked_softmax_j(w_2^T relu(W_1 q^s_j + b_1))
                    over up to `hist_len` source items j the user rated >= `min_rating` (all
                    items for implicit data); users without such items use all their source
                    items, users without any use c_u = 0 (attention weights all zero).
    bridge          W_u = reshape(V_2 relu(V_1 c_u + e_1) + e_2, (d + 1, d + 1))  (meta_hidden)
    transfer        [p_hat_u, b_hat_u] = [p^s_u, b^s_u] @ W_u
    loss            mean over the target TRAINING rows (u, j, r) of warm overlap users of
                    (r - (mu_t + b_hat_u + b^t_j + <p_hat_u, q^t_j>))^2   (explicit), or BPR
                    with one uniform negative (implicit), as in the paper (not an embedding
                    distance, unlike EMCDR).

User bias: the paper's MF has no biases; here the bridge acts on [p_u, b_u] (d + 1, as EMCDR's
mapping does), so it also predicts the cold user's target bias. The attention reads the frozen
source item factors q^s only, as in the paper's code. Scoring: users with target training data
keep their own target factors; cold users use the bridged representation; users with neither a
source profile nor target data get the item baseline mu_t + b^t_j.

The padded histories are kept in the frozen params key "history" ({"items": i32[n_s, L],
"mask": bool[n_s, L]}) so the scorer of a cold user can read them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.config import FINITE, section, setting
from transferjax.data.batches import History, padded_history
from transferjax.methods.api import (
    Built,
    Represent,
    hyper_init,
    own_or_fallback,
    selected_stage,
)
from transferjax.methods.mf import (
    MF_TRACED,
    bridge_positives,
    bridge_pretraining,
    known_users,
    mf_loss_kind,
    mf_scorer,
)
from transferjax.methods.registry import register
from transferjax.models.mf import PAIR_KINDS, mf_score, pair_nll


@section("ptupcdr")
@dataclasses.dataclass(frozen=True, kw_only=True)
class PTUPCDRConfig:
    """PTUPCDR (Zhu et al., WSDM 2022): personalised bridge from a user's source history.

    hist_len: up to this many positively rated source items (rating >= min_rating).
    meta_hidden: hidden size of the meta network that emits the d x d bridge.
    """

    hist_len: int = 20
    min_rating: float = setting(4.0, allowed=FINITE)
    meta_hidden: int = 64


_NEG = -1e30  # logit of a masked history slot (finite, so no inf - inf)


def ptupcdr_history(inter, *, max_len: int, min_rating: float | None) -> History:
    """Each source user's positive items (rating >= min_rating, best first), up to max_len.

    Users with no positive item fall back to all their items (best first); users with no item
    keep an all-False mask. `min_rating=None` (implicit data) keeps every item.
    """
    pos = padded_history(inter, max_len=max_len, min_rating=min_rating)
    if min_rating is None:
        return pos
    every = padded_history(inter, max_len=max_len)
    empty = pos.length == 0

    def pick(name):
        a, b = getattr(pos, name), getattr(every, name)
        return np.where(empty.reshape((-1,) + (1,) * (a.ndim - 1)), b, a)

    return History(
        items=pick("items"), weights=pick("weights"), mask=pick("mask"), length=pick("length")
    )


def _dense(key, n_in, n_out, *, scale=1.0, bias=True) -> dict:
    w = jax.random.normal(key, (n_in, n_out), jnp.float32) * (scale / n_in**0.5)
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)} if bias else {"w": w}


def meta_init(key: jax.Array, *, dim: int, hidden: int) -> dict:
    """Params of the characteristic encoder and the meta network, for item factors f32[., dim].

    The last layer is scaled by 1/sqrt(dim + 1) so x @ W_u starts at about the norm of x.
    """
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return {
        "att1": _dense(k1, dim, dim),
        "att2": _dense(k2, dim, 1, bias=False),
        "meta1": _dense(k3, dim, hidden),
        "meta2": _dense(k4, hidden, (dim + 1) ** 2, scale=(dim + 1) ** -0.5),
    }


def characteristic(
    meta: dict, item_factors: jax.Array, items: jax.Array, mask: jax.Array
) -> jax.Array:
    """Attention-pooled history c_u (PTUPCDR's characteristic encoder).

    Args:
      meta: params of `meta_init`.
      item_factors: f32[n_items, d] (frozen) source item factors.
      items: i32[b, L] history items; mask: bool[b, L] real entries.

    Returns:
      f32[b, d]: sum_j a_uj q_j with a_u a softmax over the unmasked slots (zeros if none).
      Masked slots get weight exactly 0, so their item index never matters.
    """
    e = item_factors[items]  # [b, L, d]
    h = jax.nn.relu(e @ meta["att1"]["w"] + meta["att1"]["b"])
    logit = jnp.where(mask, (h @ meta["att2"]["w"])[..., 0], _NEG)  # [b, L]
    z = jnp.exp(logit - jnp.max(logit, axis=-1, keepdims=True)) * mask.astype(jnp.float32)
    att = z / jnp.maximum(jnp.sum(z, axis=-1, keepdims=True), 1e-30)
    return jnp.einsum("bl,bld->bd", att, jnp.where(mask[..., None], e, 0.0))


def bridge_from_characteristic(meta: dict, c: jax.Array) -> jax.Array:
    """f32[b, d] -> f32[b, d + 1, d + 1] the meta network's per-user bridge W_u."""
    d1 = c.shape[-1] + 1
    h = jax.nn.relu(c @ meta["meta1"]["w"] + meta["meta1"]["b"])
    return (h @ meta["meta2"]["w"] + meta["meta2"]["b"]).reshape(-1, d1, d1)


def ptupcdr_bridge(params: dict, src_users: jax.Array) -> jax.Array:
    """Per-user bridge W_u: f32[b, d + 1, d + 1] for source users i32[b] (acts on [p_u, b_u])."""
    hist = params["history"]
    items = jax.lax.stop_gradient(params["source"]["item"])  # frozen source item factors
    c = characteristic(params["meta"], items, hist["items"][src_users], hist["mask"][src_users])
    return bridge_from_characteristic(params["meta"], c)


def ptupcdr_user(params: dict, src_users: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Bridged target representation: (p_hat f32[b, d], b_hat f32[b]) = [p^s_u, b^s_u] @ W_u."""
    s = params["source"]
    x = jnp.concatenate([s["user"][src_users], s["user_bias"][src_users][:, None]], axis=-1)
    y = jnp.einsum("bi,bij->bj", jax.lax.stop_gradient(x), ptupcdr_bridge(params, src_users))
    return y[:, :-1], y[:, -1]


def ptupcdr_loss(params: dict, batch: dict, *, kind: str, key: jax.Array) -> tuple[jax.Array, dict]:
    """Meta-stage loss on target ratings of warm users (only params["meta"] gets gradients).

    Args:
      batch: `src` i32[b] source user, `item` i32[b] target item, `rating` f32[b], `mask` bool[b].
      kind: "mse": masked mean of (r - r_hat)^2; "bpr" / "bce": masked mean of
        `pair_nll(s_ui, s_uj)` (BPR's -log sigmoid(s_ui - s_uj), Rendle et al., UAI 2009, or
        pointwise BCE), j ~ U(target items).
    """
    vec, bias = ptupcdr_user(params, batch["src"])
    tgt = jax.lax.stop_gradient(params["target"])
    m = batch["mask"].astype(jnp.float32)
    pos = mf_score(vec, bias, tgt, batch["item"])
    if kind == "mse":
        err = (batch["rating"] - pos) ** 2
    elif kind in PAIR_KINDS:
        j = jax.random.randint(key, batch["item"].shape, 0, tgt["item"].shape[0], dtype=jnp.int32)
        err = pair_nll(pos, mf_score(vec, bias, tgt, j), kind=kind)
    else:
        raise ValueError(f"unknown PTUPCDR loss {kind!r}; valid: mse, bpr, bce")
    loss = jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0)
    return loss, {f"meta_{kind}": loss}


def _joined(user: tuple) -> jax.Array:
    """(vec f32[b, d], bias f32[b]) -> f32[b, d + 1]."""
    return jnp.concatenate([user[0], user[1][:, None]], axis=-1)


def warm_rows(split) -> dict:
    """Target training rows of warm overlap users: {"src", "item", "rating"} numpy arrays."""
    tr = split.target_train
    src_of = np.full(tr.n_users, -1, np.int32)
    src_of[split.warm_pairs[:, 1]] = split.warm_pairs[:, 0]
    keep = src_of[tr.user] >= 0
    return {"src": src_of[tr.user[keep]], "item": tr.item[keep], "rating": tr.rating[keep]}


@register("ptupcdr", traced=MF_TRACED)
def build_ptupcdr(cfg, split) -> Built:
    """PTUPCDR: MF per domain, then a meta network's per-user bridge trained on target ratings."""
    (src_init, src_stage), (tgt_init, tgt_stage) = bridge_pretraining(cfg, split, "PTUPCDR")
    pc = cfg.ptupcdr
    min_rating = None if split.source_train.implicit else pc.min_rating
    hist = ptupcdr_history(split.source_train, max_len=pc.hist_len, min_rating=min_rating)
    kind = mf_loss_kind(cfg, split.target_train)
    meta_stage = selected_stage(
        cfg,
        name="meta",
        part="meta",
        loss=lambda p, batch, k: ptupcdr_loss(p, batch, kind=kind, key=k),
        examples=warm_rows(split),
    )

    def init(key):
        k_s, k_t, k_m = jax.random.split(key, 3)
        return {
            "source": src_init(k_s),
            "target": tgt_init(k_t),
            "meta": meta_init(k_m, dim=cfg.mf.dim, hidden=pc.meta_hidden),
        }

    def user_repr(p, src, tgt):
        t = p["target"]
        own = (t["user"][tgt], t["user_bias"][tgt])
        vec, bias = ptupcdr_user(p, jnp.maximum(src, 0))
        has_src = src >= 0
        fallback = (jnp.where(has_src[:, None], vec, 0.0), jnp.where(has_src, bias, 0.0))
        return own_or_fallback(p["known_target"], own, fallback, tgt)

    data = {
        "history": {"items": jnp.asarray(hist.items), "mask": jnp.asarray(hist.mask)},
        "known_target": known_users(split.target_train),
        **bridge_positives(cfg, split),
    }
    return Built(
        init=init,
        stages=(src_stage, tgt_stage, meta_stage),
        scorer=mf_scorer(user_repr),
        data=data,
        hyper=hyper_init(cfg, MF_TRACED),
        represent=Represent(
            source=lambda p, src: _joined(ptupcdr_user(p, src)),
            target=lambda p, tgt: _joined(
                (p["target"]["user"][tgt], p["target"]["user_bias"][tgt])
            ),
            space="PTUPCDR: bridged source [p_u, b_u] W_u vs target MF [p_u, b_u]",
        ),
    )
