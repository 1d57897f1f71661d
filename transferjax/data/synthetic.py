"""Synthetic cross-domain data with a known ground truth.

`make_synthetic` draws people with latent interests, two item catalogues, and who-rated-what,
and returns the `CrossDomainData` together with a `SyntheticTruth` that knows every user's
noise-free preferences, so tests can check that transfer helps when the domains agree
(`shift_deg` near 0) and that it cannot help when they do not (`shift_deg` = 90).

Construction (d = dim_shared + dim_private, a = shift_deg in radians):

    person p:     z_sh ~ N(0, I_{dim_shared}),  z_sp, z_tp ~ N(0, I_{dim_private}),
                  z_turn ~ N(0, I_{dim_shared})   (target-private, the direction the shift turns to)
    source view:  u_s(p) = [z_sh,                               z_sp]
    target view:  u_t(p) = [cos(a) z_sh + sin(a) z_turn,        z_tp]
    items:        V_s ~ N(0, I)[n_items_source, d],  V_t ~ N(0, I)[n_items_target, d]  (own spaces)
                  b_s, b_t ~ N(0, item_bias^2) item biases
    scores:       f_s(p, i) = u_s(p) . V_s[i] / sqrt(d) + b_s[i]   (Var ~ 1 + item_bias^2)
                  f_t(p, j) = u_t(p) . V_t[j] / sqrt(d) + b_t[j]

Since cos^2 + sin^2 = 1 the target view keeps unit variance at every angle. At 0 deg the
shared part of target taste equals the source's z_sh (target taste is predicted from the source
up to the target-private z_tp); at 90 deg it is z_turn, independent of everything the source
sees. Which items a user touches: each user's count is
`max(min_per_user, round(density * n_items * LogNormal(-s^2/2, s)))` (s = 0.5, mean density
kept), and the items are drawn without replacement with probability proportional to exposure
`w_i = (rank_i + 1) ** -popularity_skew` (a random rank per item, Zipf-like) via Gumbel top-k.
Explicit: `rating = clip(round(3 + rating_scale * (f + noise * eps)), 1, 5)`, items chosen by
exposure only. Implicit: rating 1.0 and items chosen with logits
`log w_i + selection_strength * (f + noise * eps)`, so positives follow preference.

Users are overlap persons, then source-only, then target-only; each domain shuffles its own
user indices, so an overlap person has unrelated integer ids in the two domains (listed in
`CrossDomainData.overlap`). `Interactions.user_ids` maps a domain user index to its person id.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transferjax.data.types import CrossDomainData, Interactions

_ACTIVITY_SIGMA = 0.5
_CHUNK = 1 << 22  # elements of a users x items block drawn at once


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticTruth:
    """Latent factors behind a synthetic dataset (see the module docstring for the formulas).

    Attributes:
      shared: f32[n_persons, dim_shared] z_sh.
      source_private: f32[n_persons, dim_private] z_sp.
      target_private: f32[n_persons, dim_private] z_tp.
      target_turn: f32[n_persons, dim_shared] z_turn, where the target's shared view turns to.
      source_items: f32[n_items_source, d] V_s.    target_items: f32[n_items_target, d] V_t.
      source_bias: f32[n_items_source] b_s.        target_bias: f32[n_items_target] b_t.
      source_person: int32[n_source_users] person id of each source user index.
      target_person: int32[n_target_users] person id of each target user index.
      shift_deg: the shift angle a in degrees.
    """

    shared: np.ndarray
    source_private: np.ndarray
    target_private: np.ndarray
    target_turn: np.ndarray
    source_items: np.ndarray
    target_items: np.ndarray
    source_bias: np.ndarray
    target_bias: np.ndarray
    source_person: np.ndarray
    target_person: np.ndarray
    shift_deg: float

    def source_user_factors(self, source_users) -> np.ndarray:
        """u_s: f32[u, d] source view of the given source user indices."""
        p = self.source_person[np.asarray(source_users)]
        return np.concatenate([self.shared[p], self.source_private[p]], axis=1)

    def target_user_factors(self, target_users) -> np.ndarray:
        """u_t: f32[u, d] target view of the given target user indices."""
        p = self.target_person[np.asarray(target_users)]
        a = np.deg2rad(self.shift_deg)
        sh = np.float32(np.cos(a)) * self.shared[p] + np.float32(np.sin(a)) * self.target_turn[p]
        return np.concatenate([sh, self.target_private[p]], axis=1)

    def source_scores(self, source_users) -> np.ndarray:
        """f_s: f32[u, n_items_source] noise-free source preferences."""
        return _scores(self.source_user_factors(source_users), self.source_items, self.source_bias)

    def target_scores(self, target_users) -> np.ndarray:
        """f_t: f32[u, n_items_target] noise-free target preferences."""
        return _scores(self.target_user_factors(target_users), self.target_items, self.target_bias)


def _scores(users: np.ndarray, items: np.ndarray, bias: np.ndarray) -> np.ndarray:
    scale = np.float32(1.0 / np.sqrt(items.shape[1]))
    return (users @ items.T * scale + bias[None, :]).astype(np.float32)


def _sample_domain(
    rng,
    *,
    scores_fn,
    n_users,
    n_items,
    density,
    skew,
    noise,
    implicit,
    selection_strength,
    rating_scale,
    min_per_user,
    name,
):
    """Draws one domain's (user, item, rating, timestamp) rows; see the module docstring."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"make_synthetic: density of {name} must be in (0, 1], got {density}")
    if min_per_user > n_items:
        raise ValueError(
            f"make_synthetic: min_per_user={min_per_user} > n_items={n_items} ({name})"
        )
    log_w = -skew * np.log1p(rng.permutation(n_items)).astype(np.float32)
    act = rng.lognormal(-(_ACTIVITY_SIGMA**2) / 2, _ACTIVITY_SIGMA, size=n_users)
    count = np.clip(np.round(density * n_items * act), min_per_user, n_items).astype(np.int64)
    users, items, ratings = [], [], []
    step = max(1, _CHUNK // n_items)
    for lo in range(0, n_users, step):
        u = np.arange(lo, min(lo + step, n_users))
        f = scores_fn(u) + np.float32(noise) * rng.standard_normal((len(u), n_items), np.float32)
        logits = log_w[None, :] + rng.gumbel(size=(len(u), n_items)).astype(np.float32)
        if implicit:
            logits = logits + np.float32(selection_strength) * f
        order = np.argsort(-logits, axis=1, kind="stable")
        take = np.arange(n_items)[None, :] < count[u][:, None]
        rows = np.broadcast_to(u[:, None], order.shape)[take]
        cols = order[take]
        users.append(rows)
        items.append(cols)
        if implicit:
            ratings.append(np.ones(len(rows), np.float32))
        else:
            r = np.clip(np.round(3.0 + rating_scale * f[rows - lo, cols]), 1, 5)
            ratings.append(r.astype(np.float32))
    user, item, rating = (np.concatenate(x) for x in (users, items, ratings))
    timestamp = rng.integers(0, 2**31, size=len(user), dtype=np.int64)
    return user, item, rating, timestamp


def make_synthetic(
    *,
    n_overlap: int = 1000,
    n_source_only: int = 500,
    n_target_only: int = 200,
    n_items_source: int = 600,
    n_items_target: int = 600,
    dim_shared: int = 8,
    dim_private: int = 4,
    shift_deg: float = 0.0,
    density_source: float = 0.05,
    density_target: float = 0.02,
    popularity_skew: float = 0.8,
    noise: float = 0.1,
    implicit: bool = False,
    seed: int = 0,
    name: str = "synthetic",
    min_per_user: int = 5,
    item_bias: float = 0.3,
    rating_scale: float = 1.0,
    selection_strength: float = 2.0,
) -> tuple[CrossDomainData, SyntheticTruth]:
    """Generates a cross-domain dataset and its ground truth (formulas in the module docstring).

    Args:
      n_overlap / n_source_only / n_target_only: persons in both domains / only one.
      n_items_source / n_items_target: catalogue sizes.
      dim_shared / dim_private: latent sizes of z_sh and of each domain's private part.
      shift_deg: angle a between the source's and the target's view of the shared interests.
      density_source / density_target: mean fraction of the catalogue a user interacts with.
      popularity_skew: Zipf exponent of item exposure (0 = uniform).
      noise: std of the Gaussian added to f before quantising (explicit) or selecting (implicit).
      implicit: positives only (rating 1.0) instead of 1..5 ratings.
      seed: seed of `np.random.default_rng`; the same seed gives identical arrays.
      name: dataset name.
      min_per_user: every user has at least this many interactions in each of its domains.
      item_bias: std of the per-item bias b.
      rating_scale: slope from score to rating (explicit).
      selection_strength: weight of preference in the choice of positives (implicit only).

    Returns:
      (data, truth): `CrossDomainData` with timestamps, and the `SyntheticTruth`.

    Raises:
      ValueError: negative counts, a domain without users, density outside (0, 1], or
        min_per_user above a catalogue size.
      DataError: n_overlap = 0 (`CrossDomainData` needs shared users or items).
    """
    for k, v in (
        ("n_overlap", n_overlap),
        ("n_source_only", n_source_only),
        ("n_target_only", n_target_only),
    ):
        if v < 0:
            raise ValueError(f"make_synthetic: {k} must be >= 0, got {v}")
    if n_overlap + n_source_only == 0 or n_overlap + n_target_only == 0:
        raise ValueError("make_synthetic: each domain needs at least one user")
    rng = np.random.default_rng(seed)
    n_persons = n_overlap + n_source_only + n_target_only
    d = dim_shared + dim_private
    normal = lambda *shape: rng.standard_normal(shape, np.float32)  # noqa: E731
    shared, sp, tp, turn = (
        normal(n_persons, dim_shared),
        normal(n_persons, dim_private),
        normal(n_persons, dim_private),
        normal(n_persons, dim_shared),
    )
    v_s, v_t = normal(n_items_source, d), normal(n_items_target, d)
    b_s = np.float32(item_bias) * normal(n_items_source)
    b_t = np.float32(item_bias) * normal(n_items_target)
    src_persons = np.arange(n_overlap + n_source_only)
    tgt_persons = np.concatenate(
        [np.arange(n_overlap), np.arange(n_target_only) + n_overlap + n_source_only]
    )
    source_person = rng.permutation(src_persons).astype(np.int32)
    target_person = rng.permutation(tgt_persons).astype(np.int32)
    truth = SyntheticTruth(
        shared, sp, tp, turn, v_s, v_t, b_s, b_t, source_person, target_person, float(shift_deg)
    )
    common = dict(
        skew=popularity_skew,
        noise=noise,
        implicit=implicit,
        min_per_user=min_per_user,
        selection_strength=selection_strength,
        rating_scale=rating_scale,
    )
    domains = []
    for dom, fn, n_users, n_items, density in (
        ("source", truth.source_scores, len(source_person), n_items_source, density_source),
        ("target", truth.target_scores, len(target_person), n_items_target, density_target),
    ):
        user, item, rating, ts = _sample_domain(
            rng, scores_fn=fn, n_users=n_users, n_items=n_items, density=density, name=dom, **common
        )
        domains.append(
            Interactions(
                user,
                item,
                rating,
                n_users,
                n_items,
                timestamp=ts,
                user_ids=(source_person if dom == "source" else target_person),
                item_ids=np.arange(n_items),
                name=f"{name}/{dom}",
            )
        )
    src_index = np.empty(n_persons, np.int64)
    src_index[source_person] = np.arange(len(source_person))
    tgt_index = np.empty(n_persons, np.int64)
    tgt_index[target_person] = np.arange(len(target_person))
    ov = np.arange(n_overlap)
    overlap = np.stack([src_index[ov], tgt_index[ov]], axis=1).astype(np.int32)
    overlap = overlap[np.argsort(overlap[:, 0])]
    data = CrossDomainData(domains[0], domains[1], overlap, name=name)
    return data, truth
