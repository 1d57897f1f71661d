"""When a trial has diverged, and the message that says what to change.

A trial diverges when, read on the host once per epoch (the epoch's mean loss is already
fetched for the log, so this adds no device sync):

* its training loss (the epoch's mean) is NaN or infinite, or
* an evaluation gives a NaN or infinite valid or test metric (a scorer's NaN scores count as
  NaN metrics, see `Evaluator(..., on_nan="nan")`), or an absurd rating error:
  MAE or RMSE > `ABSURD_FACTOR` x max(r_max - r_min, 1), with r_min, r_max the smallest and
  largest target training rating. Predictions that far outside the rating scale come only
  from blown-up parameters (Adam at a huge learning rate gives an RMSE of 1e13 on 1-5 stars
  while its loss stays finite), never from a model that merely fits badly.

Such a trial is never selected from or reported as a normal result: under
`trainer.on_nonfinite=raise` the trainer raises `DivergenceError`; under "fail" the trial is
marked failed (`Result.status`) and the others go on.
"""

from __future__ import annotations

import math

import numpy as np

from transferjax.errors import DivergenceError

ABSURD_FACTOR = 1e3
RATING_METRICS = ("mae", "rmse")


def rating_bound(split) -> float | None:
    """The largest sane MAE/RMSE on `split`'s target ratings, or None for implicit data."""
    tr = split.target_train
    if tr.implicit or len(tr.rating) == 0:
        return None
    r = np.asarray(tr.rating, np.float64)
    span = float(r.max() - r.min())
    return ABSURD_FACTOR * max(span, 1.0) if math.isfinite(span) else math.inf


def loss_problem(stats: dict) -> str | None:
    """Why an epoch's training stats mean divergence (a non-finite mean loss), or None."""
    loss = stats.get("loss")
    if loss is not None and not math.isfinite(loss):
        return f"training loss is {loss}"
    return None


def metric_problem(metrics: dict, *, bound: float | None, split: str) -> str | None:
    """Why one evaluation's metrics ({name: float}) mean divergence, or None."""
    for name, v in metrics.items():
        if not math.isfinite(v):
            return f"{split} {name} is {v}"
    if bound is not None:
        for name in RATING_METRICS:
            if name in metrics and metrics[name] > bound:
                return (
                    f"{split} {name} = {metrics[name]:.4g} exceeds {bound:g} "
                    f"({ABSURD_FACTOR:g} x the rating range)"
                )
    return None


def divergence_message(
    *,
    method: str,
    stage: str,
    epoch: int,
    trial: str,
    reason: str,
    setting: str | None,
    value=None,
    earlier: tuple[str, ...] = (),
) -> str:
    """One line naming the method, stage, epoch and trial, the reason and what to change:
    `setting`, the stage's learning-rate key (None: a closed-form evaluation, so the data),
    and the keys of `earlier` stages, which a bad metric may come from as well (a pre-training
    stage is not evaluated, so its blow-up shows at the next evaluation)."""
    who = f"method {method!r} diverged in stage {stage!r} at epoch {epoch}"
    who += f" ({trial})" if trial else ""
    if setting is None:
        hint = "check the input data's ratings"
    else:
        now = f" (now {value:g})" if isinstance(value, (int, float)) else ""
        hint = f"lower {setting}{now}"
        if earlier:
            hint += f" (or {', '.join(earlier)}, the earlier stages' rate)"
    return f"{who}: {reason}; {hint}"


# Appended to the message of a DivergenceError that stops a run.
FAIL_HINT = "; or set trainer.on_nonfinite=fail to record the trial as failed and go on"


def judge(
    book,
    stage,
    epoch: int,
    problems: list,
    *,
    metrics: bool,
    method: str,
    stages,
    settings: dict,
    raise_: bool,
    stopped: bool = False,
) -> None:
    """Acts on `problems` (one reason or None per trial of `book`, a `transferjax.train.book.
    Book`) found after `epoch` of `stage` (a Stage, or "final"): raises DivergenceError for the
    first trial with a problem (`raise_`, i.e. `trainer.on_nonfinite=raise`), or records each
    such trial as failed in `book.failed`; trials failed before are skipped, and so are those
    stopped early unless `stopped` (their selected params' metrics, scored after training).
    The message names the stage's learning-rate key with its value (a trial's own, else from
    `settings`, the flattened config) and, when the problems come from an evaluation
    (`metrics`), the earlier stages' keys too (`stages`: every stage of the method, in order),
    since a pre-training stage is not evaluated and its blow-up shows at the next
    evaluation."""
    for i, reason in enumerate(problems):
        if reason is None or book.failed[i] is not None or (book.done(i) and not stopped):
            continue  # (a trial that stopped early trains on in a batch, unread)
        name = getattr(stage, "name", stage)
        setting = getattr(stage, "lr_key", None)
        value = book.overrides[i].get(setting) if setting else None
        if setting is not None and value is None:
            value = settings.get(setting)
        earlier = ()
        if setting is not None and metrics:
            before = stages[: next(j for j, st in enumerate(stages) if st is stage)]
            earlier = tuple(dict.fromkeys(st.lr_key for st in before if st.lr_key != setting))
        msg = divergence_message(
            method=method,
            stage=name,
            epoch=epoch,
            trial=book.labels[i],
            reason=reason,
            setting=setting,
            value=value,
            earlier=earlier,
        )
        if raise_:
            raise DivergenceError(msg + FAIL_HINT)
        book.failed[i] = {
            "stage": name,
            "epoch": epoch,
            "setting": setting,
            "reason": reason,
            "message": msg,
        }
