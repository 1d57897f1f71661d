"""Bad-input and fault tests; `TINY` is the small synthetic dataset the training cases share."""

from transferjax import config as C

TINY = C.SyntheticConfig(
    n_overlap=60,
    n_source_only=20,
    n_target_only=20,
    n_items_source=40,
    n_items_target=30,
    density_source=0.2,
    density_target=0.15,
    seed=2,
)
