"""The config section `align`: the alignment objective added on phi outputs."""

from __future__ import annotations

import dataclasses
from typing import Literal

from transferjax.config import section


@section("align")
@dataclasses.dataclass(frozen=True, kw_only=True)
class AlignConfig:
    """Alignment objective added on phi outputs of source and target users.

    objective: "none", "dann", "mmd", "coral", "infonce" or any registered objective.
    weight: multiplier of the objective in the total loss.
    lam / lam_schedule / gamma / warmup_steps: DANN gradient-reversal strength and schedule
      ("constant", "ganin": lam * (2 / (1 + exp(-gamma p)) - 1), "warmup": linear ramp).
    mmd_estimator / mmd_factors: "unbiased" or "linear"; bandwidth factors times the median.
    temperature: InfoNCE temperature.
    """

    objective: str = "none"
    weight: float = 1.0
    lam: float = 1.0
    lam_schedule: Literal["constant", "ganin", "warmup"] = "ganin"
    gamma: float = 10.0
    warmup_steps: int = 1000
    disc_hidden: int = 64
    mmd_estimator: Literal["unbiased", "linear"] = "unbiased"
    mmd_factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    temperature: float = 0.2
