"""Users and interest vectors of the phi model (`transferjax.methods.phi.model`).

- `domain_bags` / `gather_rows`: each user's sparse interest vector of one domain, stored as
  compact CSR arrays (highest ratings first, capped at `max_len` when > 0) and gathered into
  fixed-shape padded bags per batch.
- `joint_rows`: the joint user index: one row per warm overlap pair (source, target), one per
  other source user (source, -1) and one per other target user with training data (-1, target).
- `split_entries`: the per-step random split of a bag into input entries and label entries.
- `encoder_init` / `encoder_apply`: phi of one domain, "bag" | "attention" | "id";
  `first_layer`: the bag encoder's first layer, packed or dense.

Interest vector (the input of phi) over the n input entries of a user:

    explicit ratings:  x_i = (r_ui - mu) / (n + SHRINK)   (mu: the domain's mean training rating)
    implicit feedback: x_i = 1 / (n + SHRINK)

a shrunk mean (like a ridge estimate: users with few entries get a smaller vector; a random
subset of the entries gives a similar, a little more shrunk, vector). Explicit data uses the
centred ratings only: an indicator channel "rated" on top made cold-start RMSE worse on the
synthetic benchmark (which items a user rates carries no preference there, and the extra
channel is fitted as noise). The "bag" encoder is an FC+ReLU MLP over x with a linear last
layer. Its first layer `x @ W1` takes one of two exact forms per batch shape (`first_layer`):
packed (`encoders.packed_bag_matmul`: gather the rows of the batch's real entries, at most
`capacity` = the total length of the batch-size longest bags) when
PACKED_COST * capacity <= batch * n_items, else a dense matmul over the scattered vectors. One
packed slot (forward and backward) costs about as much as PACKED_COST cells of the dense
[batch, n_items] product (chosen by `python -m benchmarks.phi_layer`, whose `slot_cost` column
measures it on real bag-length profiles; figures in BENCHMARKS.md), so long-tailed bags
(CDRIB: 6 items on average of 12k, 167 at most) pack and long dense ones (ML-1M: 165 on
average of 3.7k) do not.
A training batch holds distinct users (padded rows read empty bags), so it always fits the
capacity and its packed layer runs without the dense fallback that evaluation batches (which
repeat users) keep.
The "attention" encoder pools the embeddings of the user's input items (rating values unused);
"id" embeds the user index (it memorises, and cannot encode users it never trained on).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.data.batches import interest_bags
from transferjax.models import encoders as E

SHRINK = 5.0  # pseudo-count of the shrunk mean in the interest vector
PACKED_COST = 100  # dense [batch, n_items] cells one packed slot costs (module docstring)
LONGEST_KEPT = 1 << 16  # batch sizes up to this get a capacity below batch * max_len


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """Static facts of one domain's interest vectors (hashable, safe to close over)."""

    n_users: int
    n_items: int
    explicit: bool
    mu: float
    max_len: int
    longest: tuple  # longest[k - 1]: total length of the k longest bags (k <= LONGEST_KEPT)

    def capacity(self, batch: int) -> int:
        """Most entries a batch of `batch` distinct users (or no user: -1) can hold."""
        if batch <= 0 or not self.longest:
            return 0
        if batch <= len(self.longest):
            return self.longest[batch - 1]
        if len(self.longest) >= self.n_users:  # every user's length is in `longest`
            return self.longest[-1]
        return batch * self.max_len


def domain_bags(inter, *, max_len: int = 0) -> tuple[dict, DomainSpec]:
    """Each user's interest entries of one domain as compact CSR arrays, and the domain spec.

    Entries are ordered by user, then highest rating first (`interest_bags`); with
    `max_len > 0` a user keeps its first `max_len`. A user's bag is the window
    `[start[u], start[u] + L)` of the flat arrays, of which the first `length[u]` are real
    (L = the longest kept bag; the flat arrays carry L padding entries at the end), so the
    arrays hold nnz + L entries rather than n_users * L.

    Returns:
      ({"items": i32[nnz + L], "rating": f32[nnz + L], "start": i32[n_users],
        "length": i32[n_users]}, spec).
    """
    h = interest_bags(inter, max_len=max_len if max_len > 0 else None)
    length = np.asarray(h.length, np.int32)
    L = int(h.items.shape[1])
    start = (np.cumsum(length) - length).astype(np.int32)
    items = np.concatenate([h.items[h.mask], np.zeros(L, np.int32)]).astype(np.int32)
    rating = np.concatenate([h.weights[h.mask], np.zeros(L, np.float32)]).astype(np.float32)
    explicit = not inter.implicit
    longest = np.cumsum(np.sort(length)[::-1][:LONGEST_KEPT], dtype=np.int64)
    spec = DomainSpec(n_users=inter.n_users, n_items=inter.n_items, explicit=explicit,
                      mu=float(inter.rating.mean()) if explicit else 0.0,
                      max_len=L, longest=tuple(int(x) for x in longest))
    bags = {"items": items, "rating": rating, "start": start, "length": length}
    return {k: jnp.asarray(v) for k, v in bags.items()}, spec


def joint_rows(split) -> tuple[np.ndarray, np.ndarray]:
    """(src i32[n], tgt i32[n]) training rows; -1 marks a domain the user has no data in."""
    s_known = np.flatnonzero(split.source_train.user_counts() > 0)
    t_known = np.flatnonzero(split.target_train.user_counts() > 0)
    warm = split.warm_pairs
    s_only = np.setdiff1d(s_known, warm[:, 0])
    t_only = np.setdiff1d(t_known, warm[:, 1])
    src = np.concatenate([warm[:, 0], s_only, np.full(len(t_only), -1)]).astype(np.int32)
    tgt = np.concatenate([warm[:, 1], np.full(len(s_only), -1), t_only]).astype(np.int32)
    return src, tgt


def gather_rows(bags: dict, users: jax.Array, *, max_len: int):
    """(items i32[b, L], rating f32[b, L], mask bool[b, L]) of `users` i32[b] (-1: empty)."""
    u = jnp.maximum(users, 0)
    pos = jnp.arange(max_len, dtype=jnp.int32)
    idx = bags["start"][u][:, None] + pos
    mask = (pos < bags["length"][u][:, None]) & (users >= 0)[:, None]
    return bags["items"][idx], bags["rating"][idx], mask


def split_entries(key, mask: jax.Array, *, keep: float) -> tuple[jax.Array, jax.Array]:
    """Disjoint (input, label) bool[b, L] masks: each real entry is input with prob `keep`."""
    inp = mask & jax.random.bernoulli(key, keep, mask.shape)
    return inp, mask & ~inp


def _interest(items, rating, mask, spec: DomainSpec):
    """The interest vector as a padded bag (items, weights, mask); see the module docstring."""
    items = jnp.clip(items, 0, spec.n_items - 1)  # padding is masked; keep gathers in range
    m = mask.astype(jnp.float32)
    w = m / (jnp.sum(m, axis=1, keepdims=True) + SHRINK)
    return items, (rating - spec.mu) * w if spec.explicit else w, mask


def first_layer(emb: jax.Array, items, weights, mask, spec: DomainSpec, *,
                distinct: bool = False) -> jax.Array:
    """`x @ emb` f32[b, d] for the padded bags [b, L]: packed or dense (module docstring).

    `distinct`: the rows are distinct users (or empty), as in a training batch, so the packed
    form always fits its capacity and needs no dense fallback (which `vmap` over trials would
    otherwise run beside it); a batch that breaks the promise gets NaN, not dropped entries.
    """
    b = mask.shape[0]
    capacity = spec.capacity(b)
    if PACKED_COST * capacity <= b * spec.n_items:
        return E.packed_bag_matmul(emb, items, weights, mask, capacity=capacity,
                                   overflow="nan" if distinct else "dense")
    return E.bag_to_dense(items, weights, mask, n_items=spec.n_items) @ emb


def encoder_init(key, *, kind: str, spec: DomainSpec, dims) -> dict:
    """Params of phi for one domain: kind "bag" | "attention" | "id", layers `dims`."""
    dims = tuple(int(d) for d in dims)
    k1, k2 = jax.random.split(key)
    mlp = E.mlp_init(k2, dims) if len(dims) > 1 else []
    if kind == "bag":
        return E.bag_encoder_init(k1, n_items=spec.n_items, dims=dims)
    if kind == "attention":
        return {"pool": E.attention_pool_init(k1, n_items=spec.n_items, dim=dims[0]), "mlp": mlp}
    if kind == "id":
        return {"id": E.id_encoder_init(k1, n_users=spec.n_users, dim=dims[0]), "mlp": mlp}
    raise ValueError(f"phi.encoder={kind!r}; valid: bag, attention, id")


def encoder_apply(params: dict, *, kind: str, spec: DomainSpec, items, rating, mask,
                  users, distinct: bool = False) -> jax.Array:
    """phi of a batch: f32[b, dims[-1]].

    The first layer (embedding bag / attention pool / id embedding) is followed by ReLU and
    the FC+ReLU layers of `dims`; the last layer is linear (the common space is signed).

    Args:
      items, rating, mask: the input entries i32/f32/bool[b, L] (see `gather_rows`).
      users: i32[b] user indices (used by "id" only).
      distinct: the rows are distinct users or empty (a training batch; see `first_layer`).
    """
    if kind == "bag":
        h = first_layer(params["emb"], *_interest(items, rating, mask, spec), spec,
                        distinct=distinct) + params["b"]
    elif kind == "attention":
        h = E.attention_pool_apply(params["pool"], items, mask)
    elif kind == "id":
        h = E.id_encoder_apply(params["id"], jnp.maximum(users, 0))
    else:
        raise ValueError(f"phi.encoder={kind!r}; valid: bag, attention, id")
    if not params["mlp"]:
        return h
    return E.mlp_apply(params["mlp"], jax.nn.relu(h), final_activation=False)
