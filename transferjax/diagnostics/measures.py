"""Shift measures between two samples of user vectors, each a pure function of arrays.

`x: f32[n, d]` holds one side's vectors (source users, as the method carries them into the
target space), `y: f32[m, d]` the other's (target users). The two samples need not be the same
users, except for `paired_cosine`, whose row i of both is one overlapping user. Larger values
mean more shift for every measure but `paired_cosine`, where larger means closer.

Estimators, in short (formulas in each docstring):

- `linear_mmd`: unbiased squared MMD with the linear kernel a . b (its expectation is
  ||E x - E y||^2; it can be slightly negative);
- `kernel_mmd`: unbiased (U-statistic) squared MMD with one Gaussian kernel whose bandwidth is
  the median pooled squared distance (the median heuristic; Gretton et al. 2012);
- `coral_distance`: ||C_x - C_y||_F^2 / (4 d^2) over unbiased covariances (Sun & Saenko 2016);
- `proxy_a_distance`: 2 (1 - 2 err) of a logistic domain classifier trained on one half and
  tested on the other (Ben-David et al. 2007; Ganin et al. 2016);
- `paired_cosine`: the mean cosine of paired rows.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from transferjax.align import distances as al

__all__ = [
    "ESTIMATORS",
    "MEASURES",
    "coral_distance",
    "domain_logits",
    "kernel_mmd",
    "linear_mmd",
    "median_sq_distance",
    "paired_cosine",
    "proxy_a_distance",
    "shift_measures",
]

# Rows of each sample the median heuristic reads (their pooled pairwise distances), so its cost
# stays (2 * MEDIAN_ROWS)^2 whatever the samples' sizes; callers pass rows in random order.
MEDIAN_ROWS = 500


def _check(x, y, fn: str, *, least: int = 2) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"{fn}: x {x.shape} and y {y.shape} must be [n, d] and [m, d]")
    if x.shape[0] < least or y.shape[0] < least:
        raise ValueError(f"{fn}: needs >= {least} rows per sample, got {x.shape}, {y.shape}")


def linear_mmd(x: jax.Array, y: jax.Array) -> jax.Array:
    """Unbiased squared MMD with the linear kernel k(a, b) = a . b.

    `MMD^2 = 1/(n(n-1)) sum_{i!=j} x_i.x_j + 1/(m(m-1)) sum_{i!=j} y_i.y_j - 2/(nm) sum_ij x_i.y_j`,
    computed in O((n + m) d) from `sum_{i!=j} x_i.x_j = ||sum_i x_i||^2 - sum_i ||x_i||^2`. Its
    expectation is `||E x - E y||^2`: a shift of the means only.

    Args:
      x: f32[n, d], y: f32[m, d]; n, m >= 2.

    Returns:
      f32[] estimate (0 in expectation for one distribution; can be negative).
    """
    _check(x, y, "linear_mmd")
    hi = jax.lax.Precision.HIGHEST

    def within(a):
        s = jnp.sum(a, axis=0)
        n = a.shape[0]
        return (jnp.dot(s, s, precision=hi) - jnp.sum(a * a)) / (n * (n - 1))

    cross = jnp.dot(jnp.mean(x, axis=0), jnp.mean(y, axis=0), precision=hi)
    return within(x) + within(y) - 2.0 * cross


def median_sq_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    """The median heuristic: median of ||z_i - z_j||^2 over distinct pairs i != j of the pooled
    rows z = [x[:MEDIAN_ROWS]; y[:MEDIAN_ROWS]] (floored at 1e-12). f32[]."""
    _check(x, y, "median_sq_distance")
    z = jnp.concatenate([x[:MEDIAN_ROWS], y[:MEDIAN_ROWS]], axis=0)
    d = al.sq_dists(z, z)
    d = jnp.where(jnp.eye(z.shape[0], dtype=bool), jnp.nan, d)
    return jnp.maximum(jnp.nanmedian(d), 1e-12)


def kernel_mmd(x: jax.Array, y: jax.Array, *, bandwidth: jax.Array | None = None) -> jax.Array:
    """Unbiased squared MMD with one Gaussian kernel (Gretton et al. 2012, eq. 3).

    `k(a, b) = exp(-||a - b||^2 / h)` with `h` = `bandwidth`, by default the median heuristic
    `median_sq_distance(x, y)` (the length-scale form exp(-||a-b||^2 / (2 s^2)) with
    2 s^2 = h), and the U-statistic
    `MMD_u^2 = 1/(n(n-1)) sum_{i!=j} k(x_i,x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i,y_j)
              - 2/(nm) sum_{i,j} k(x_i,y_j)`.

    Args:
      x: f32[n, d], y: f32[m, d]; n, m >= 2.
      bandwidth: optional f32[] squared-distance scale h.

    Returns:
      f32[] estimate in about [-1, 2] (0 in expectation for one distribution).
    """
    _check(x, y, "kernel_mmd")
    h = median_sq_distance(x, y) if bandwidth is None else jnp.asarray(bandwidth, jnp.float32)
    return al.mmd2_unbiased(x, y, bandwidths=jnp.reshape(h, (1,)))


def coral_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    """CORAL distance `||C_x - C_y||_F^2 / (4 d^2)` (Sun & Saenko 2016), with the unbiased
    covariances `C = 1/(n-1) (X - mean X)^T (X - mean X)`.

    Args:
      x: f32[n, d], y: f32[m, d]; n, m >= 2.

    Returns:
      f32[] >= 0.
    """
    _check(x, y, "coral_distance")
    return al.coral(x, y)


def domain_logits(
    z_fit: jax.Array,
    labels: jax.Array,
    z_at: jax.Array,
    *,
    steps: int = 300,
    lr: float = 0.05,
    l2: float = 1e-3,
) -> jax.Array:
    """The logits at `z_at` of a logistic domain classifier fit on `z_fit`.

    `p(label = 1 | z) = sigmoid(w . z + b)` on features standardised by the mean and std of
    `z_fit`, trained full batch for `steps` Adam steps at `lr` from w = 0, b = 0 on the mean
    cross-entropy + l2 ||w||^2. The proxy A-distance and the density ratios of the DEV
    validator (`transferjax.diagnostics.validators`) both read it.

    Args:
      z_fit: f32[n, d] training rows; labels: f32[n] their 0 / 1 labels.
      z_at: f32[k, d] rows to classify.

    Returns:
      f32[k] logits log p(1 | z) / p(0 | z).
    """
    mean, std = jnp.mean(z_fit, axis=0), jnp.maximum(jnp.std(z_fit, axis=0), 1e-6)
    z_fit, z_at = (z_fit - mean) / std, (z_at - mean) / std

    def loss(p):
        logit = z_fit @ p["w"] + p["b"]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logit, labels)) + l2 * jnp.sum(
            p["w"] ** 2
        )

    opt = optax.adam(lr)
    p = {"w": jnp.zeros((z_fit.shape[1],), jnp.float32), "b": jnp.zeros((), jnp.float32)}

    def step(_, carry):
        p, s = carry
        g = jax.grad(loss)(p)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s

    with jax.numpy_dtype_promotion("standard"):  # optax mixes python floats and ints
        p, _ = jax.lax.fori_loop(0, steps, step, (p, opt.init(p)))
    return z_at @ p["w"] + p["b"]


@functools.partial(jax.jit, static_argnames=("steps",))
def proxy_a_distance(
    x: jax.Array,
    y: jax.Array,
    *,
    key: jax.Array,
    steps: int = 300,
    lr: float = 0.05,
    l2: float = 1e-3,
) -> jax.Array:
    """Proxy A-distance `PAD = 2 (1 - 2 err)` (Ben-David et al. 2007; Ganin et al. 2016).

    Both samples are shuffled (`key`) and cut to k = min(n, m) rows, so the classes are
    balanced and chance is err = 0.5. A logistic classifier `p(y | z) = sigmoid(w . z + b)` on
    features standardised by the training half's mean and std is trained on the first
    floor(k / 2) rows of each sample (full batch, `steps` Adam steps at `lr`, loss: mean
    cross-entropy + l2 ||w||^2, from w = 0) and `err` is its error on the remaining rows.
    err is clipped to at most 0.5, so PAD lies in [0, 2]: about 0 for one distribution, 2 for
    separable ones.

    Args:
      x: f32[n, d], y: f32[m, d]; n, m >= 4.
      key: the shuffle's key (a fixed key gives a fixed value).
      steps, lr, l2: the classifier's training.

    Returns:
      f32[] PAD.
    """
    _check(x, y, "proxy_a_distance", least=4)
    k = min(x.shape[0], y.shape[0])
    h = k // 2
    kx, ky = jax.random.split(key)
    x = jax.random.permutation(kx, x)[:k]
    y = jax.random.permutation(ky, y)[:k]
    z_fit = jnp.concatenate([x[:h], y[:h]])
    z_test = jnp.concatenate([x[h:], y[h:]])
    lab_fit = jnp.concatenate([jnp.zeros(h), jnp.ones(h)]).astype(jnp.float32)
    lab_test = jnp.concatenate([jnp.zeros(k - h), jnp.ones(k - h)]).astype(jnp.float32)
    logit = domain_logits(z_fit, lab_fit, z_test, steps=steps, lr=lr, l2=l2)
    wrong = (logit > 0).astype(jnp.float32) != lab_test
    err = jnp.minimum(jnp.mean(wrong.astype(jnp.float32)), 0.5)
    return 2.0 * (1.0 - 2.0 * err)


def paired_cosine(x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean cosine of paired rows, `1/n sum_i x_i . y_i / (||x_i|| ||y_i||)`; a row pair with a
    zero vector counts 0.

    Args:
      x, y: f32[n, d], row i of both the same user (its mapped source vector and its target
        vector); n >= 1.

    Returns:
      f32[] in [-1, 1].
    """
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"paired_cosine: x {x.shape} and y {y.shape} must be equal [n, d], n >= 1")
    dot = jnp.sum(x * y, axis=-1)
    norms = jnp.linalg.norm(x, axis=-1) * jnp.linalg.norm(y, axis=-1)
    return jnp.mean(jnp.where(norms > 0, dot / jnp.maximum(norms, 1e-30), 0.0))


# The measures `shift_measures` returns, in the order reports show them, and what each is.
MEASURES = ("linear_mmd", "kernel_mmd", "coral", "pad", "cosine")
ESTIMATORS = {
    "linear_mmd": "squared MMD, linear kernel a.b, unbiased U-statistic (expectation "
    "||E x - E y||^2)",
    "kernel_mmd": "squared MMD, Gaussian kernel exp(-||a-b||^2 / h), h = median pooled squared "
    f"distance (first {MEDIAN_ROWS} rows of each sample), unbiased U-statistic",
    "coral": "||C_x - C_y||_F^2 / (4 d^2), unbiased covariances",
    "pad": "proxy A-distance 2 (1 - 2 err), logistic domain classifier fit on one half of each "
    "balanced sample, err on the other half (clipped to <= 0.5)",
    "cosine": "mean cosine of an overlapping user's source-side and target-side vectors",
}


@functools.partial(jax.jit, static_argnames=("pad_steps",))
def shift_measures(
    x: jax.Array,
    y: jax.Array,
    pair_x: jax.Array | None,
    pair_y: jax.Array | None,
    *,
    key: jax.Array,
    pad_steps: int = 300,
) -> dict:
    """Every measure of one pair of samples, as one compiled program.

    Args:
      x: f32[n, d] source-side vectors; y: f32[m, d] target-side vectors (n, m >= 4).
      pair_x, pair_y: f32[w, d] the two vectors of w overlapping users, or None (no "cosine").
      key: the proxy A-distance's shuffle.
      pad_steps: its classifier's training steps.

    Returns:
      {name: f32[]} over `MEASURES` ("cosine" only with pairs).
    """
    out = {
        "linear_mmd": linear_mmd(x, y),
        "kernel_mmd": kernel_mmd(x, y),
        "coral": coral_distance(x, y),
        "pad": proxy_a_distance(x, y, key=key, steps=pad_steps),
    }
    if pair_x is not None:
        out["cosine"] = paired_cosine(pair_x, pair_y)
    return out
