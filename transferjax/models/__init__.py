"""Models as pure (init, apply) functions: MF, MLPs, the phi encoder, multi-task heads,
discriminator, gradient reversal, row-sparse optimizers, LightGCN's propagation (`graph`),
CoNet's cross networks (`crossnet`), DTCDR's NeuMF towers (`neumf`), and pointwise training
with sampled negatives (`pointwise`), and `jax.random`'s draws written to fuse into their use
(`draws`, bit for bit the same).

Math only: nothing here imports the methods, the trainer or the evaluation.
"""

from transferjax.models.discriminator import dann_loss, discriminator_apply, discriminator_init
from transferjax.models.heads import (
    fixed_weights,
    mmoe_apply,
    mmoe_init,
    ple_apply,
    ple_init,
    shared_bottom_apply,
    shared_bottom_init,
    uncertainty_weights,
)
from transferjax.models.mf import bpr_loss, mf_init, mf_loss, mf_score, mf_score_all, mse_loss
from transferjax.models.mlp import mlp_apply, mlp_init
from transferjax.models.phi import encoder as phi_encoder

__all__ = [
    "bpr_loss",
    "dann_loss",
    "discriminator_apply",
    "discriminator_init",
    "fixed_weights",
    "mf_init",
    "mf_loss",
    "mf_score",
    "mf_score_all",
    "mlp_apply",
    "mlp_init",
    "mmoe_apply",
    "mmoe_init",
    "mse_loss",
    "phi_encoder",
    "ple_apply",
    "ple_init",
    "shared_bottom_apply",
    "shared_bottom_init",
    "uncertainty_weights",
]
