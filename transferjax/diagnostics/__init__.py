"""Shift diagnostics: how far apart the source and target sides of a transfer are.

Between two samples of user vectors f32[n, d] and f32[m, d], `measures` gives the linear MMD,
the kernel MMD (one Gaussian kernel, median-heuristic bandwidth, unbiased estimator), the CORAL
distance, the proxy A-distance of a held-out linear domain classifier, and, for overlapping
users, the mean cosine between their mapped source vector and their target vector. They are
read on two kinds of vectors:

- the model's (`vectors.ModelVectors`): a built method's `Built.represent`, e.g. phi_s / phi_t
  outputs of the phi family, EMCDR's mapped factors against the target factors, CMF's rows;
- the raw interests' (`interest`): each domain's SVD user embedding of its training data, the
  source side ridge-mapped into the target's.

`transferjax diagnose RUN_FOLDER` (`transferjax.train.diagnose`) measures a finished run;
`diagnostics.log=on` measures the model after every evaluated epoch while it trains (`shift`).
The settings are the config section `diagnostics` (`config`).

Validators (`validators`, pure functions; `selection`, their use in a run): scores of a
trained model that read no cold-valid label (source risk on held-out warm users, DEV, entropy,
information maximization, soft neighbourhood density), recorded as valid metrics
`unsup/<name>` with `eval.validators` and selectable as `eval.select=unsup/<name>`; their
settings are the config section `validators`.
"""

from transferjax.diagnostics.config import DiagnosticsConfig, ValidatorsConfig
from transferjax.diagnostics.interest import interest_embedding, interest_vectors, ridge_map
from transferjax.diagnostics.measures import (
    ESTIMATORS,
    MEASURES,
    coral_distance,
    kernel_mmd,
    linear_mmd,
    median_sq_distance,
    paired_cosine,
    proxy_a_distance,
    shift_measures,
)
from transferjax.diagnostics.shift import Monitor, entry, interest_entry, make_monitor
from transferjax.diagnostics.vectors import (
    ModelVectors,
    ShiftVectors,
    UserSets,
    measure,
    user_sets,
)

__all__ = [
    "ESTIMATORS",
    "MEASURES",
    "DiagnosticsConfig",
    "ModelVectors",
    "Monitor",
    "ShiftVectors",
    "UserSets",
    "ValidatorsConfig",
    "coral_distance",
    "entry",
    "interest_embedding",
    "interest_entry",
    "interest_vectors",
    "kernel_mmd",
    "linear_mmd",
    "make_monitor",
    "measure",
    "median_sq_distance",
    "paired_cosine",
    "proxy_a_distance",
    "ridge_map",
    "shift_measures",
    "user_sets",
]
