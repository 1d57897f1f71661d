"""Douban Book -> Music, cold-start ratings (beta = 0.2), MAE/RMSE selected on cold-valid.

transferjax run experiments/douban_book_music.py
transferjax run experiments/douban_book_music.py --set method=mf
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
        name="douban_book_music",
        method="emcdr",
        data=DataConfig(name="douban", target="music"),
        protocol=ProtocolConfig(name="cold_start", beta=0.2, seed=0),
        trainer=TrainerConfig(lr=1e-3, batch_size=128, epochs=40),
        mf=MFConfig(dim=32, reg=1e-2, epochs=30, lr=3e-3, batch_size=512),
    )


def quick(cfg: RunConfig) -> RunConfig:
    return shrink(cfg, epochs=2, mf_epochs=1)
