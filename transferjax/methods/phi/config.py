"""The config section `phi` of the phi-family methods."""

from __future__ import annotations

import dataclasses
from typing import Literal

from transferjax.config import COUNT0, PROBABILITY, section, setting


@section("phi")
@dataclasses.dataclass(frozen=True, kw_only=True)
class PhiConfig:
    """The multi-task transfer model over phi encoders (see transferjax.methods.phi.model).

    encoder: phi of a user's bag of one domain: a kind of `transferjax.models.phi` ("bag": an
      MLP over the interest vector, "attention", "id") or a name registered with
      `transferjax.methods.phi.register_encoder` (checked when the method is built).
    dims: encoder layer sizes (the first is the first layer's width, the last the common
      space's).
    head: "shared_bottom" | "mmoe" | "ple"; n_experts experts (mmoe/ple).
    task_weighting: "fixed" (source_weight) or "uncertainty" (Kendall et al. 2018).
    """

    encoder: str = "bag"
    dims: tuple[int, ...] = (256, 128)
    head: Literal["shared_bottom", "mmoe", "ple"] = "shared_bottom"
    n_experts: int = 4
    expert_dim: int = 64
    task_weighting: Literal["fixed", "uncertainty"] = "fixed"
    source_weight: float = setting(0.5, allowed=PROBABILITY)
    max_len: int = setting(0, allowed=COUNT0)  # 0: no cap
