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
