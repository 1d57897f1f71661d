"""The shift diagnostics of a split and a method, as JSON-ready entries, and the monitor that
measures a model while it trains (`diagnostics.log=on`)."""

from __future__ import annotations

from transferjax.diagnostics.interest import interest_vectors
from transferjax.diagnostics.vectors import (
    ModelVectors,
    ShiftVectors,
    measure,
    unmeasurable,
    user_sets,
)


def entry(v: ShiftVectors | str, dc) -> dict:
    """{"space", every measure, sample sizes} of `v`, or {"skipped": why} when `v` is a reason
    or cannot be measured; `dc` is the `diagnostics` config section."""
    if isinstance(v, str):
        return {"skipped": v}
    why = unmeasurable(v)
    if why is not None:
        return {"space": v.space, "skipped": why}
    return {"space": v.space, **measure(v, seed=dc.seed, pad_steps=dc.pad_steps)}


def interest_entry(split, dc, sets=None) -> dict:
    """The entry of the raw interest vectors (`transferjax.diagnostics.interest`) of `split`."""
    sets = sets or user_sets(split, max_users=dc.max_users, seed=dc.seed)
    return entry(
        interest_vectors(split, sets, dim=dc.interest_dim, ridge=dc.ridge, seed=dc.seed), dc
    )


class Monitor:
    """`monitor(params, hyper) -> {measure: float}` of a built method's user vectors, for the
    user samples of `dc` (drawn once); its programs compile on the first call."""

    def __init__(self, dc, split, built):
        self.dc = dc
        self.sets = user_sets(split, max_users=dc.max_users, seed=dc.seed)
        self.vectors = ModelVectors(built, self.sets)
        self.space = self.vectors.space

    def entry(self, params: dict, hyper: dict | None = None) -> dict:
        """`entry` of the vectors of one trial's params."""
        return entry(self.vectors(params, hyper), self.dc)

    def __call__(self, params: dict, hyper: dict | None = None) -> dict[str, float]:
        """The measures only (no sample sizes), {} when the samples are too small."""
        got = self.entry(params, hyper)
        return {k: v for k, v in got.items() if k not in ("space", "skipped") and k[:2] != "n_"}


def make_monitor(cfg, split, built) -> Monitor | None:
    """The monitor of a run when `diagnostics.log` is "on" and the method gives user vectors
    on both sides (`Built.represent`); None otherwise."""
    dc = cfg.diagnostics
    if dc.log != "on" or built.represent is None:
        return None
    return Monitor(dc, split, built)
