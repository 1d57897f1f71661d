"""What a trial's training returns, and the selection rule that reads only valid metrics."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from transferjax.diagnostics import validators
from transferjax.errors import DivergenceError


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of `metric` is better: rmse, mae, losses and the validators
    `unsup/source_risk`, `unsup/dev`, `unsup/entropy` (`transferjax.diagnostics.validators`)."""
    unsup = validators.lower_is_better(metric)
    if unsup is not None:
        return unsup
    return metric in ("mae", "rmse") or metric.endswith("loss")


def select_best(valid_history: list[dict], metric: str) -> int:
    """Index of the best entry by `metric` (first one on ties). Reads valid metrics only.

    Entries whose `metric` is NaN or infinite are never chosen; when every entry's is, the
    run has diverged (DivergenceError)."""
    if not valid_history:
        raise ValueError("nothing to select from: no evaluation ran")
    if metric not in valid_history[0]:
        raise ValueError(
            f"selection metric {metric!r} not computed; have {sorted(valid_history[0])}"
        )
    vals = np.array([h[metric] for h in valid_history], dtype=np.float64)
    finite = np.isfinite(vals)
    if not finite.any():
        raise DivergenceError(
            f"no evaluation has a finite valid {metric} to select from "
            f"(got {vals.tolist()}); the training diverged: lower the learning rate"
        )
    vals = np.where(finite, vals, np.inf if lower_is_better(metric) else -np.inf)
    return int(np.argmin(vals) if lower_is_better(metric) else np.argmax(vals))


@dataclasses.dataclass
class Result:
    """One trial's outcome: the params of the selected evaluation (the epoch whose metrics
    `best` reports; the final params when nothing was selected: a failed trial, or a method
    with nothing to train), the evaluation history and the selection.

    A trial that diverged under `trainer.on_nonfinite=fail` has `status` "failed", `failure`
    {stage, epoch, setting, reason, message}, `selected` None and only the finite evaluations
    before the divergence in `history`.

    Clocks: `wall_time` is this call's seconds; `train_time` the training seconds of every
    process that trained the trial (a resumed call adds its own to those its checkpoint
    recorded); `wall_before` the run's wall seconds in the processes before this one, as that
    checkpoint recorded them (0 when not resumed).
    """

    params: Any
    history: list
    selected: int | None
    select_metric: str
    wall_time: float
    train_time: float
    compile_time: float = 0.0
    resumed_from: int | None = None
    wall_before: float = 0.0  # resumed: the run's wall seconds before this process, as saved
    hyper: dict = dataclasses.field(default_factory=dict)  # the trial's traced values
    status: str = "ok"  # or "failed"
    failure: dict | None = None
    stopped_early: bool = False  # `trainer.patience` ended it; the history's last entry says when

    @property
    def best(self) -> dict | None:
        """The selected evaluation; None for a failed trial."""
        return None if self.selected is None else self.history[self.selected]


def trial_view(batched: bool, tree, i: int):
    """Trial `i` of a pytree with a leading trial axis (the tree itself when not batched)."""
    return jax.tree.map(lambda x: x[i], tree) if batched else tree
