"""Bad-input and fault tests; `TINY`, `SMALL` and `SMALL_IMPLICIT` are the small synthetic
datasets the training cases of the whole suite share."""

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

# explicit ratings with a small shift: the MF family's cases (trainer, CMF, PTUPCDR, sparse MF)
SMALL = C.SyntheticConfig(
    n_overlap=600,
    n_source_only=200,
    n_target_only=200,
    n_items_source=300,
    n_items_target=250,
    density_source=0.1,
    density_target=0.04,
    shift_deg=5.0,
    seed=3,
)
# implicit feedback: the graph methods' cases (LightGCN, BiTGCF)
SMALL_IMPLICIT = C.SyntheticConfig(
    n_overlap=300,
    n_source_only=50,
    n_target_only=150,
    n_items_source=100,
    n_items_target=120,
    density_source=0.1,
    density_target=0.08,
    implicit=True,
    seed=5,
)
