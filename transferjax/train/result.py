"""What a trial's training returns, and the selection rule that reads only valid metrics."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np


def lower_is_better(metric: str) -> bool:
    return metric in ("mae", "rmse") or metric.endswith("loss")


def select_best(valid_history: list[dict], metric: str) -> int:
    """Index of the best entry by `metric` (first one on ties). Reads valid metrics only."""
    if not valid_history:
        raise ValueError("nothing to select from: no evaluation ran")
    if metric not in valid_history[0]:
        raise ValueError(
            f"selection metric {metric!r} not computed; have {sorted(valid_history[0])}"
        )
    vals = np.array([h[metric] for h in valid_history], dtype=np.float64)
    vals = np.where(np.isnan(vals), np.inf if lower_is_better(metric) else -np.inf, vals)
    return int(np.argmin(vals) if lower_is_better(metric) else np.argmax(vals))


@dataclasses.dataclass
class Result:
    """One trial's outcome: final params, the evaluation history and the selection."""

    params: Any
    history: list
    selected: int
    select_metric: str
    wall_time: float
    train_time: float
    compile_time: float = 0.0
    resumed_from: int | None = None
    hyper: dict = dataclasses.field(default_factory=dict)  # the trial's traced values

    @property
    def best(self) -> dict:
        return self.history[self.selected]


def trial_view(batched: bool, tree, i: int):
    """Trial `i` of a pytree with a leading trial axis (the tree itself when not batched)."""
    return jax.tree.map(lambda x: x[i], tree) if batched else tree
