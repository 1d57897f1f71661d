"""Distribution-alignment losses on encoder outputs: multi-kernel MMD, CORAL, InfoNCE.

Kernel parameterisation (MMD): a bandwidth `h` is a *squared-distance scale*, and the
multi-kernel is the sum of Gaussians

    k(a, b) = sum_h exp(-||a - b||^2 / h),

as in the DAN reference code (Long et al. 2015). In the length-scale form
`exp(-||a-b||^2 / (2 s^2))` this is `h = 2 s^2`. `median_bandwidths` returns
`h_j = factor_j * median_{i<j} ||z_i - z_j||^2` over the pooled sample.

Row masks (`mask_*: bool[n]` or f32[n] row weights) drop padded rows of fixed-shape batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "coral",
    "gaussian_kernel",
    "info_nce",
    "median_bandwidths",
    "mmd2_linear",
    "mmd2_unbiased",
    "sq_dists",
]


def _weights(mask, n: int, name: str) -> jax.Array:
    if mask is None:
        return jnp.ones((n,), jnp.float32)
    if mask.shape != (n,):
        raise ValueError(f"{name} has shape {mask.shape}, expected ({n},)")
    return mask.astype(jnp.float32)


def _check_pair(x, y, fn: str) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"{fn}: x {x.shape} and y {y.shape} must be [n, d] and [m, d]")


def sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pairwise squared Euclidean distances: a f32[n, d], b f32[m, d] -> f32[n, m] (>= 0)."""
    d = (
        jnp.sum(a * a, axis=-1)[:, None]
        + jnp.sum(b * b, axis=-1)[None, :]
        - 2.0 * jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
    )
    return jnp.maximum(d, 0.0)


def gaussian_kernel(a: jax.Array, b: jax.Array, *, bandwidths) -> jax.Array:
    """Multi-kernel Gram matrix `K_ij = sum_h exp(-||a_i - b_j||^2 / h)`: f32[n, m]."""
    h = jnp.asarray(bandwidths, jnp.float32).reshape(-1)
    d = sq_dists(a, b)
    return jnp.sum(jnp.exp(-d[..., None] / h), axis=-1)


def median_bandwidths(
    x: jax.Array,
    y: jax.Array,
    *,
    factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    mask_x: jax.Array | None = None,
    mask_y: jax.Array | None = None,
) -> jax.Array:
    """Median heuristic: `h_j = factor_j * median_{i<k} ||z_i - z_k||^2`, z = [x; y].

    The median runs over distinct pairs of the pooled valid rows and is wrapped in
    `stop_gradient` (bandwidths are not trained). A zero median (all rows equal) is floored
    at 1e-12 so the kernels stay finite.

    Returns:
      f32[len(factors)] squared-distance bandwidths (see module docstring).
    """
    _check_pair(x, y, "median_bandwidths")
    z = jax.lax.stop_gradient(jnp.concatenate([x, y], axis=0))
    w = jnp.concatenate(
        [_weights(mask_x, x.shape[0], "mask_x"), _weights(mask_y, y.shape[0], "mask_y")]
    )
    iu, ju = np.triu_indices(z.shape[0], k=1)
    d = sq_dists(z, z)[iu, ju]
    valid = (w[iu] > 0) & (w[ju] > 0)
    med = jnp.nanmedian(jnp.where(valid, d, jnp.nan))
    med = jnp.maximum(jnp.nan_to_num(med, nan=1.0), 1e-12)
    return med * jnp.asarray(factors, jnp.float32)


def mmd2_unbiased(
    x: jax.Array,
    y: jax.Array,
    *,
    bandwidths,
    mask_x: jax.Array | None = None,
    mask_y: jax.Array | None = None,
) -> jax.Array:
    """Unbiased (U-statistic) squared MMD with a multi-Gaussian kernel (Gretton et al. 2012).

    `MMD_u^2 = 1/(n(n-1)) sum_{i!=j} k(x_i,x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i,y_j)
              - 2/(nm) sum_{i,j} k(x_i,y_j)`.

    With row weights w (x) and v (y) every sum is weighted by the product of its rows' weights
    and normalised by the sum of those products (`(sum w)^2 - sum w^2` for the within-sample
    terms), which for 0/1 masks is exactly the estimator on the valid rows. It can be negative.

    Args:
      x: f32[n, d] source features (n >= 2 valid rows).
      y: f32[m, d] target features (m >= 2 valid rows).
      bandwidths: f32[k] squared-distance scales h (see module docstring).
      mask_x: optional bool[n] (or f32[n] weights).
      mask_y: optional bool[m] (or f32[m] weights).

    Returns:
      f32[] estimate.
    """
    _check_pair(x, y, "mmd2_unbiased")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"mmd2_unbiased: needs >= 2 rows per sample, got {x.shape}, {y.shape}")
    w = _weights(mask_x, x.shape[0], "mask_x")
    v = _weights(mask_y, y.shape[0], "mask_y")

    def within(a, u):
        k = gaussian_kernel(a, a, bandwidths=bandwidths)
        k = k * (1.0 - jnp.eye(a.shape[0], dtype=k.dtype))
        den = jnp.sum(u) ** 2 - jnp.sum(u * u)
        return (u @ k @ u) / jnp.maximum(den, 1e-12)

    kxy = gaussian_kernel(x, y, bandwidths=bandwidths)
    cross = (w @ kxy @ v) / jnp.maximum(jnp.sum(w) * jnp.sum(v), 1e-12)
    return within(x, w) + within(y, v) - 2.0 * cross


def mmd2_linear(x: jax.Array, y: jax.Array, *, bandwidths) -> jax.Array:
    """Linear-time squared MMD estimator (Gretton et al. 2012, Lemma 14; DAN, Long et al. 2015).

    Pairs consecutive samples: with `n' = n / 2`,
    `MMD_l^2 = 1/n' sum_i h(i)`, `h(i) = k(x_{2i}, x_{2i+1}) + k(y_{2i}, y_{2i+1})
    - k(x_{2i}, y_{2i+1}) - k(x_{2i+1}, y_{2i})`. O(n) kernel evaluations.

    Args:
      x: f32[n, d], y: f32[n, d]; n even and equal for both.
      bandwidths: f32[k] squared-distance scales h (see module docstring).

    Returns:
      f32[] unbiased estimate (higher variance than `mmd2_unbiased`).
    """
    _check_pair(x, y, "mmd2_linear")
    n = x.shape[0]
    if y.shape[0] != n or n % 2 or n == 0:
        raise ValueError(f"mmd2_linear: needs equal, even, non-zero n, got {x.shape}, {y.shape}")
    h = jnp.asarray(bandwidths, jnp.float32).reshape(-1)
    k = lambda a, b: jnp.sum(jnp.exp(-jnp.sum((a - b) ** 2, -1)[:, None] / h), -1)
    x0, x1, y0, y1 = x[0::2], x[1::2], y[0::2], y[1::2]
    return jnp.mean(k(x0, x1) + k(y0, y1) - k(x0, y1) - k(x1, y0))


def _cov(x: jax.Array, w: jax.Array) -> jax.Array:
    n = jnp.sum(w)
    mean = (w @ x) / jnp.maximum(n, 1.0)
    xc = x - mean
    return ((xc * w[:, None]).T @ xc) / jnp.maximum(n - 1.0, 1.0)


def coral(
    x_s: jax.Array,
    x_t: jax.Array,
    *,
    mask_s: jax.Array | None = None,
    mask_t: jax.Array | None = None,
) -> jax.Array:
    """Deep CORAL loss (Sun & Saenko 2016, "Deep CORAL: Correlation Alignment for Deep Domain
    Adaptation").

    `L = ||C_s - C_t||_F^2 / (4 d^2)`, with the unbiased covariance
    `C = 1/(n-1) (X - mean(X))^T (X - mean(X))` of each domain's valid rows.

    Args:
      x_s: f32[n, d] source features (masks: optional bool[n] selecting valid rows).
      x_t: f32[m, d] target features.
      mask_s: optional bool[n].
      mask_t: optional bool[m].

    Returns:
      f32[] loss.
    """
    _check_pair(x_s, x_t, "coral")
    ws = _weights(mask_s, x_s.shape[0], "mask_s")
    wt = _weights(mask_t, x_t.shape[0], "mask_t")
    d = x_s.shape[1]
    diff = _cov(x_s, ws) - _cov(x_t, wt)
    return jnp.sum(diff * diff) / (4.0 * d * d)


def info_nce(
    z_a: jax.Array,
    z_b: jax.Array,
    *,
    temperature: float = 0.2,
    symmetric: bool = True,
    mask: jax.Array | None = None,
) -> jax.Array:
    """InfoNCE over paired rows (Oord et al. 2018, "Representation Learning with Contrastive
    Predictive Coding"), e.g. one overlapping user's source and target representations.

    `s_ij = cos(a_i, b_j) / temperature`; row i of `z_a` and `z_b` is a positive pair, every
    other valid row a negative:
    `L_ab = -1/|V| sum_{i in V} log( exp(s_ii) / sum_{j in V} exp(s_ij) )`.
    With `symmetric`, `L = (L_ab + L_ba) / 2` where `L_ba` uses `s^T`. Rows outside the valid
    set V (mask False) are neither anchors, positives nor negatives.

    Args:
      z_a: f32[b, d].
      z_b: f32[b, d].
      temperature: softmax temperature (> 0; traced ok).
      symmetric: average both directions.
      mask: optional bool[b], False for padded rows.

    Returns:
      f32[] loss (0 when no row is valid).
    """
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(f"info_nce: z_a {z_a.shape} and z_b {z_b.shape} must be equal [b, d]")
    b = z_a.shape[0]
    valid = _weights(mask, b, "mask") > 0
    # rsqrt of the clamped squared norm: finite value and gradient for an all-zero row (the
    # gradient of ||z|| at 0 is NaN even behind a maximum).
    norm = lambda z: z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-16))
    s = (norm(z_a) @ norm(z_b).T) / temperature
    pair_ok = valid[:, None] & valid[None, :]
    s = jnp.where(pair_ok, s, -1e9)
    n = jnp.maximum(jnp.sum(valid.astype(jnp.float32)), 1.0)

    def one_way(logits):
        nll = -jnp.diagonal(jax.nn.log_softmax(logits, axis=-1))
        return jnp.sum(jnp.where(valid, nll, 0.0)) / n

    if symmetric:
        return 0.5 * (one_way(s) + one_way(s.T))
    return one_way(s)
