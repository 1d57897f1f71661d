"""The config section `diagnostics`: what `transferjax diagnose` and the training log measure."""

from __future__ import annotations

import dataclasses
from typing import Literal

from transferjax.config import POSITIVE, Range, section, setting


@section("diagnostics")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DiagnosticsConfig:
    """Shift diagnostics between source and target user vectors (`transferjax.diagnostics`).

    log: "on" measures the model's user vectors after every evaluated epoch of a selected stage
      and logs the values into the run's history and scalars (`diagnostics/<measure>`); "off"
      (the default) measures nothing while training, so no number or timing changes.
      `transferjax diagnose RUN_FOLDER` measures a finished run either way.
    max_users: at most this many users per sample (source users, target users, overlapping
      pairs), drawn once with `seed`; the kernel MMD costs O(max_users^2).
    interest_dim: dimensions of each domain's truncated-SVD user embedding of its raw
      training interactions (the "interest" vectors, `transferjax.diagnostics.interest`).
    ridge: weight of the ridge map from source to target interest embeddings, relative to the
      mean diagonal of X^T X.
    pad_steps: training steps of the proxy A-distance's domain classifier.
    seed: the user samples, the halves of the proxy A-distance and the SVD's random start.
    """

    log: Literal["off", "on"] = "off"
    max_users: int = setting(2000, allowed=Range(lo=8, integer=True))
    interest_dim: int = 16
    ridge: float = setting(0.1, allowed=POSITIVE)
    pad_steps: int = setting(300, allowed=Range(lo=1, integer=True))
    seed: int = 0


@section("validators")
@dataclasses.dataclass(frozen=True, kw_only=True)
class ValidatorsConfig:
    """The validators' settings (`transferjax.diagnostics.selection`); which validators a run
    computes is `eval.validators` (and the one `eval.select` names).

    holdout: share of the warm overlap users (not valid or test users) whose target training
      rows are held out, so that they are trained as cold users and their rows label the
      `source_risk` and `dev` validators. Only when one of those two is computed; it then
      changes the training data (the bridge trains on the other warm users).
    n_negatives: sampled negatives per held-out row for the ranking loss (ranking runs).
    max_users: at most this many cold-valid users, drawn once with `seed`, whose candidate
      scores (entropy, im, snd) and source-side vectors (dev) are read.
    n_candidates: target items, drawn once with `seed`, that every such user's prediction
      distribution is over (all items when fewer).
    temperature: the prediction distribution's softmax temperature, softmax(scores / T).
    snd_temperature: SND's tau over cosine similarities (Saito et al.: 0.05).
    dev_steps: training steps of DEV's logistic domain classifier.
    seed: the held-out users, their negatives, the user sample and the candidates.
    """

    holdout: float = setting(0.1, allowed=Range(lo=0, hi=1, lo_open=True, hi_open=True))
    n_negatives: int = setting(99, allowed=Range(lo=1, integer=True))
    max_users: int = setting(1000, allowed=Range(lo=4, integer=True))
    n_candidates: int = setting(500, allowed=Range(lo=2, integer=True))
    temperature: float = setting(1.0, allowed=POSITIVE)
    snd_temperature: float = setting(0.05, allowed=POSITIVE)
    dev_steps: int = setting(300, allowed=Range(lo=1, integer=True))
    seed: int = 0
