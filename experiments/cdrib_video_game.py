"""CDRIB Video -> Game (Amazon), the paper's published cold-start split, implicit feedback.

Ranks each cold-test positive against 999 sampled negatives (fixed by protocol.seed); reports
HR@1/5/10, NDCG@5/10 and MRR; selects on cold-valid NDCG@10.

    transferjax run experiments/cdrib_video_game.py                      # EMCDR
    transferjax run experiments/cdrib_video_game.py --set method=popularity
    transferjax run experiments/cdrib_video_game.py --set data.target=video   # Game -> Video
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
        name="cdrib_video_game",
        method="emcdr",
        data=DataConfig(name="cdrib", target="game"),
        protocol=ProtocolConfig(name="published", n_negatives=999, seed=0),
        eval=EvalConfig(select="ndcg@10", ranking="sampled", ks=(1, 5, 10)),
        trainer=TrainerConfig(lr=1e-3, batch_size=256, epochs=40),
        mf=MFConfig(dim=64, reg=1e-4, loss="bpr", epochs=20, lr=3e-3, batch_size=1024),
    )


def quick(cfg: RunConfig) -> RunConfig:
    return shrink(cfg, epochs=2, mf_epochs=1)
