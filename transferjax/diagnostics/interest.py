"""Shift between the two domains' raw interests, before any model: the "interest" vectors.

The domains' items differ, so users' raw interest vectors (their rows of the rating matrix)
live in different spaces. Each domain's users are embedded in its own space by a truncated SVD
of its training interactions, and the source embedding is carried into the target's by a ridge
map fit on half of the warm overlap users; the measures then compare the mapped source users
with the target users, and the mean cosine is taken over the other, held-out half of the pairs.

    R_ui = r_ui - mean_u(r)  (explicit),  1 / sqrt(n_u)  (implicit);  0 where u did not rate i
    R ~ U_k S_k V_k^T   (randomised SVD, Halko et al. 2011, two power iterations)
    e_u = U_k[u] S_k - mean over the domain's users with data          f32[k]
    W = argmin_W sum_{fit pairs} ||[e^s_u, 1] W - e^t_u||^2 + lam ||W||^2,
        lam = ridge * tr(X^T X) / (k + 1)
    x = [e^s, 1] W  (source users),  y = e^t  (target users)

Both sides read what the data says about shared taste: when the domains agree (a synthetic
shift angle near 0) a user's source embedding predicts its target embedding and the mapped
source users spread like the target users; when they do not, the map shrinks towards 0 and
the held-out cosine towards 0.
"""

from __future__ import annotations

import numpy as np

from transferjax.diagnostics.vectors import ShiftVectors, UserSets

OVERSAMPLE = 8  # extra random directions of the randomised SVD
POWER_ITERATIONS = 2
MIN_PAIRS = 8  # warm pairs needed: half fit the map, half measure the cosine


def _times(rows, cols, vals, m: np.ndarray, n_rows: int) -> np.ndarray:
    """R @ m for the sparse R[rows, cols] = vals: f64[n_rows, k]."""
    return np.stack(
        [np.bincount(rows, weights=vals * m[cols, j], minlength=n_rows) for j in range(m.shape[1])],
        axis=1,
    )


def interest_matrix(inter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, value) of R (module docstring): user-centred ratings (explicit) or
    1 / sqrt(n_u) (implicit), f64 values."""
    u, i = inter.user, inter.item
    r = inter.rating.astype(np.float64)
    count = np.bincount(u, minlength=inter.n_users)
    if inter.implicit:
        return u, i, 1.0 / np.sqrt(count[u])
    mean = np.bincount(u, weights=r, minlength=inter.n_users) / np.maximum(count, 1)
    return u, i, r - mean[u]


def interest_embedding(inter, *, dim: int, seed: int = 0) -> np.ndarray:
    """Each user's truncated-SVD embedding `U_k S_k` of one domain (module docstring), centred
    over the users with data (users without data keep 0): f32[n_users, k], k = min(dim,
    n_users, n_items)."""
    u, i, v = interest_matrix(inter)
    n, m = inter.n_users, inter.n_items
    k = min(dim, n, m)
    p = min(k + OVERSAMPLE, n, m)
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(_times(u, i, v, rng.standard_normal((m, p)), n))[0]
    for _ in range(POWER_ITERATIONS):
        z = np.linalg.qr(_times(i, u, v, q, m))[0]
        q = np.linalg.qr(_times(u, i, v, z, n))[0]
    b = _times(i, u, v, q, m).T  # Q^T R: [p, m]
    ub, s, _ = np.linalg.svd(b, full_matrices=False)
    emb = (q @ ub[:, :k]) * s[:k]
    seen = np.bincount(u, minlength=n) > 0
    emb[seen] -= emb[seen].mean(axis=0)
    return emb.astype(np.float32)


def ridge_map(x: np.ndarray, y: np.ndarray, *, ridge: float) -> np.ndarray:
    """W f64[k_x + 1, k_y] minimising ||[x, 1] W - y||^2 + lam ||W||^2, lam = ridge *
    tr(X^T X) / (k_x + 1) with X = [x, 1] (scale-free); x f32[w, k_x], y f32[w, k_y]."""
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype(np.float64)
    g = xb.T @ xb
    lam = ridge * np.trace(g) / g.shape[0]
    return np.linalg.solve(g + lam * np.eye(g.shape[0]), xb.T @ y.astype(np.float64))


def interest_vectors(
    split, sets: UserSets, *, dim: int, ridge: float, seed: int = 0
) -> ShiftVectors | str:
    """The interest vectors of `split`'s training interactions (module docstring), for the
    users of `sets`; or, without `MIN_PAIRS` warm overlap pairs, the reason as a string.

    The map is fit on the first half of `sets.pairs` (drawn at random) and the cosine read on
    the second half.
    """
    pairs = sets.pairs
    if len(pairs) < MIN_PAIRS:
        return f"needs >= {MIN_PAIRS} warm overlapping users to map the domains, has {len(pairs)}"
    e_s = interest_embedding(split.source_train, dim=dim, seed=seed)
    e_t = interest_embedding(split.target_train, dim=dim, seed=seed + 1)
    half = len(pairs) // 2
    fit, held = pairs[:half], pairs[half:]
    w = ridge_map(e_s[fit[:, 0]], e_t[fit[:, 1]], ridge=ridge)

    def mapped(users):
        x = e_s[users].astype(np.float64)
        return (x @ w[:-1] + w[-1]).astype(np.float32)

    return ShiftVectors(
        source=mapped(sets.source),
        target=e_t[sets.target],
        pair_source=mapped(held[:, 0]),
        pair_target=e_t[held[:, 1]],
        space=f"raw interests: SVD-{e_s.shape[1]} source embedding, ridge-mapped, vs "
        f"SVD-{e_t.shape[1]} target embedding",
    )
