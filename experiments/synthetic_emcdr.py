"""EMCDR on the embedded synthetic dataset (small domain shift), cold-start ratings, beta = 0.2.

The README's main job; needs no download:

    transferjax run experiments/synthetic_emcdr.py
    transferjax run experiments/synthetic_emcdr.py --set method=mf        # target-only baseline
    transferjax run experiments/synthetic_emcdr.py --set data.synthetic.shift_deg=80
"""

from transferjax.config import (
    DataConfig,
    ProtocolConfig,
    RunConfig,
    SyntheticConfig,
    TrainerConfig,
    shrink,
)
from transferjax.methods.mf import MFConfig


def get_config() -> RunConfig:
    return RunConfig(
        name="synthetic_emcdr",
        method="emcdr",
        data=DataConfig(name="synthetic", synthetic=SyntheticConfig(shift_deg=10.0)),
        protocol=ProtocolConfig(name="cold_start", beta=0.2, seed=0),
        trainer=TrainerConfig(lr=1e-2, batch_size=256, epochs=30),
        mf=MFConfig(dim=16, reg=1e-3, epochs=30, lr=1e-2, batch_size=1024),
    )


def quick(cfg: RunConfig) -> RunConfig:
    return shrink(cfg, epochs=3, mf_epochs=3)
