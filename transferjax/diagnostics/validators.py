"""Validators: scores of a trained model that read no cold-valid label, each a pure function.

They choose among trained models (epochs, sweep points) when the target labels of the cold
users are not to be used. In unsupervised domain adaptation the labelled "source" is what the
model may be checked on and the unlabelled "target" is what it must serve; here the labelled
users are the warm overlap users (a held-out share of them scored as if cold, see
`transferjax.diagnostics.selection`) and the unlabelled ones the cold-valid users, of whom only
the source profile and the model's scores are read.

- `dev_risk`: importance-weighted validation with a control variate (DEV; You et al., "Towards
  Accurate Model Selection in Deep Unsupervised Domain Adaptation", ICML 2019), over the
  losses of labelled rows and their density ratios (`density_ratios`);
- `prediction_entropy` and `information_maximization`: the mean entropy of each cold user's
  softmax over candidate scores, and IM = H(mean p) - mean H(p) (the information-maximization
  objective of Krause et al. 2010 / SHOT, Liang et al. ICML 2020, used as a validator);
- `soft_neighborhood_density`: SND (Saito et al., "Tune it the Right Way: Unsupervised
  Validation of Domain Adaptation via Soft Neighborhood Density", ICCV 2021);
- `sampled_ndcg_loss`: the per-row ranking loss of the labelled rows, 1 - NDCG of the
  positive among its sampled candidates.

Entropies are in nats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from transferjax.diagnostics.measures import domain_logits

# The validators, as the metric names a run records ("unsup/<name>"), with their direction.
LOWER_IS_BETTER = ("source_risk", "dev", "entropy")
HIGHER_IS_BETTER = ("im", "snd")
NAMES = ("source_risk", "dev", "entropy", "im", "snd")
PREFIX = "unsup/"


def metric_name(name: str) -> str:
    """The valid-metric key of validator `name` ("dev" -> "unsup/dev")."""
    return PREFIX + name


def lower_is_better(metric: str) -> bool | None:
    """Whether a lower value of validator metric `metric` ("unsup/dev") is better; None for a
    metric that is no validator."""
    if not metric.startswith(PREFIX):
        return None
    return metric[len(PREFIX) :] in LOWER_IS_BETTER


def dev_risk(losses: jax.Array, weights: jax.Array) -> jax.Array:
    """DEV: the importance-weighted validation loss with a control variate (You et al. 2019,
    eq. 10 and Alg. 1).

    `L_dev = mean(w l) + eta mean(w) - eta`, `eta = -Cov(w l, w) / Var(w)` (sample moments,
    ddof = 1). Since E_s[w] = 1, the term `eta (mean(w) - 1)` has expectation 0 and, with this
    eta, the least variance. Var(w) = 0 (e.g. w == 1) gives eta = 0, so then L_dev = mean(l).

    Args:
      losses: f32[n] losses l of the labelled validation rows (n >= 2).
      weights: f32[n] their density ratios w = p_t(x) / p_s(x).

    Returns:
      f32[] L_dev (lower is better).
    """
    wl = weights * losses
    var = jnp.var(weights, ddof=1)
    cov = jnp.sum((wl - jnp.mean(wl)) * (weights - jnp.mean(weights))) / (weights.shape[0] - 1)
    eta = jnp.where(var > 1e-12, -cov / jnp.maximum(var, 1e-12), 0.0)
    return jnp.mean(wl) + eta * jnp.mean(weights) - eta


def density_ratios(
    source: jax.Array, target: jax.Array, at: jax.Array, *, steps: int = 300, l2: float = 1e-3
) -> jax.Array:
    """Density ratios `w(x) = p_t(x) / p_s(x)` at `at`, from a logistic domain classifier
    (`transferjax.diagnostics.measures.domain_logits`) fit on source (label 0) against target
    (label 1) rows: `w = (n / m) p(t | x) / p(s | x) = (n / m) exp(logit(x))`, the class prior
    n / m undone (DEV's discriminative density-ratio estimate).

    Args:
      source: f32[n, d], target: f32[m, d] feature rows; at: f32[k, d] where to evaluate.

    Returns:
      f32[k] > 0.
    """
    n, m = source.shape[0], target.shape[0]
    z = jnp.concatenate([source, target])
    labels = jnp.concatenate([jnp.zeros(n), jnp.ones(m)]).astype(jnp.float32)
    logit = domain_logits(z, labels, at, steps=steps, l2=l2)
    return (n / m) * jnp.exp(jnp.clip(logit, -30.0, 30.0))


def _entropy(p: jax.Array) -> jax.Array:
    """H(p) = -sum_j p_j log p_j over the last axis (0 log 0 = 0)."""
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)


def prediction_entropy(scores: jax.Array, *, temperature: float = 1.0) -> jax.Array:
    """The mean entropy of the users' prediction distributions, `mean_u H(p_u)` with
    `p_u = softmax(scores_u / temperature)` over the candidates (entropy minimisation as a
    validator: confident predictions score low; Grandvalet & Bengio 2005).

    Args:
      scores: f32[u, c] each user's scores of the same c candidate items.

    Returns:
      f32[] in [0, log c] (lower is better).
    """
    return jnp.mean(_entropy(jax.nn.softmax(scores / temperature, axis=-1)))


def information_maximization(scores: jax.Array, *, temperature: float = 1.0) -> jax.Array:
    """Information maximization `IM = H(mean_u p_u) - mean_u H(p_u)`, the mutual information
    between user and predicted item under `p_u = softmax(scores_u / temperature)`: high when
    each user's prediction is confident and the users' predictions differ (Krause et al.,
    NeurIPS 2010; the SHOT objective, Liang et al., ICML 2020).

    Args:
      scores: f32[u, c] each user's scores of the same c candidate items.

    Returns:
      f32[] in [0, log c] (higher is better); 0 when every user gets the same distribution.
    """
    p = jax.nn.softmax(scores / temperature, axis=-1)
    return _entropy(jnp.mean(p, axis=0)) - jnp.mean(_entropy(p))


def soft_neighborhood_density(features: jax.Array, *, temperature: float = 0.05) -> jax.Array:
    """Soft neighbourhood density (Saito et al. 2021, eq. 1-3).

    Rows are L2-normalised, `S_ij = f_i . f_j` for j != i (the diagonal left out),
    `P_i = softmax(S_i / temperature)` over the other n - 1 rows, and
    `SND = mean_i H(P_i) = -1/n sum_i sum_{j != i} P_ij log P_ij`. Dense soft neighbourhoods
    (target points that cluster) give a high SND. The paper's features are the classifier's
    softmax outputs; `transferjax.diagnostics.selection` passes each cold user's prediction
    distribution over the candidate items.

    Args:
      features: f32[n, d], n >= 2.
      temperature: tau (the paper's 0.05).

    Returns:
      f32[] in [0, log(n - 1)] (higher is better); identical rows give log(n - 1).
    """
    f = features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    s = (f @ f.T) / temperature
    n = features.shape[0]
    s = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, s)
    return jnp.mean(_entropy(jax.nn.softmax(s, axis=-1)))


def sampled_ndcg_loss(pos: jax.Array, neg: jax.Array) -> jax.Array:
    """Per-row ranking loss `1 - 1 / log2(2 + r)`, r = the number of sampled negatives scored
    at least as high as the positive (ties count against it, as the evaluator's pessimistic
    ranks): 1 - NDCG of the positive among its candidates.

    Args:
      pos: f32[n] the positive's score; neg: f32[n, k] its negatives' scores.

    Returns:
      f32[n] in [0, 1).
    """
    r = jnp.sum(neg >= pos[:, None], axis=-1).astype(jnp.float32)
    return 1.0 - 1.0 / jnp.log2(2.0 + r)
