"""EMCDR on the ML-1M genre split (source: Drama/Action/... movies, target: Comedy/Romance/...),
cold-start ratings with beta = 0.2, MAE/RMSE selected on cold-valid. Fetches ML-1M on first use.

    transferjax run experiments/ml1m_genre_emcdr.py
    transferjax run experiments/ml1m_genre_emcdr.py --set method=mf
    transferjax run experiments/ml1m_genre_emcdr.py --set protocol.beta=0.5
"""

from transferjax.config import (
    DataConfig,
    ProtocolConfig,
    RunConfig,
    TrainerConfig,
    shrink,
)
from transferjax.methods.mf import MFConfig


def get_config() -> RunConfig:
    return RunConfig(
        name="ml1m_genre_emcdr",
        method="emcdr",
        data=DataConfig(name="ml1m_genre"),
        protocol=ProtocolConfig(name="cold_start", beta=0.2, seed=0),
        trainer=TrainerConfig(lr=1e-3, batch_size=256, epochs=40),
        mf=MFConfig(dim=32, reg=5e-3, epochs=15, lr=3e-3, batch_size=1024),
    )


def quick(cfg: RunConfig) -> RunConfig:
    return shrink(cfg, epochs=2, mf_epochs=1)
