"""Alignment objectives over encoder outputs, by name: "none", "dann", "mmd", "coral", "infonce".

- `distances`: the math (multi-kernel MMD estimators, CORAL, InfoNCE, median bandwidths);
- `objectives`: the registry of objectives the phi family adds to its loss;
- `config`: the `align` config section.
"""

from transferjax.align.config import AlignConfig
from transferjax.align.distances import (
    coral,
    info_nce,
    median_bandwidths,
    mmd2_linear,
    mmd2_unbiased,
)
from transferjax.align.objectives import (
    Objective,
    available_objectives,
    get_objective,
    register_objective,
)

__all__ = [
    "AlignConfig",
    "Objective",
    "available_objectives",
    "coral",
    "get_objective",
    "info_nce",
    "median_bandwidths",
    "mmd2_linear",
    "mmd2_unbiased",
    "register_objective",
]
