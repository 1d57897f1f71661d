"""Models as pure (init, apply) functions: MF, phi encoders (and their ELL sparse first layer),
multi-task heads, discriminator, gradient reversal, row-sparse optimizers and the MF family's
row-sparse steps.

Math only: nothing here registers a method or imports from `align`, `methods` or above
(`tests/test_architecture.py`); the methods built from these parts are in
`transferjax.methods`.
"""

from transferjax.models.discriminator import dann_loss, discriminator_apply, discriminator_init
from transferjax.models.ell import (
                                         bag_layout,
                                         bag_matmul,
                                         ell_encoder_apply,
                                         ell_layout,
                                         stack_layouts,
)
from transferjax.models.encoders import (
                                         attention_pool_apply,
                                         attention_pool_init,
                                         bag_encoder_apply,
                                         bag_encoder_init,
                                         dense_encoder_apply,
                                         id_encoder_apply,
                                         id_encoder_init,
                                         mlp_apply,
                                         mlp_init,
)
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

__all__ = [
    "attention_pool_apply", "attention_pool_init", "bag_encoder_apply", "bag_encoder_init",
    "bag_layout", "bag_matmul", "bpr_loss", "dann_loss", "dense_encoder_apply",
    "discriminator_apply", "discriminator_init", "ell_encoder_apply", "ell_layout",
    "fixed_weights", "id_encoder_apply", "id_encoder_init", "mf_init", "mf_loss", "mf_score",
    "mf_score_all", "mlp_apply", "mlp_init", "mmoe_apply", "mmoe_init", "mse_loss", "ple_apply",
    "ple_init", "shared_bottom_apply", "shared_bottom_init", "stack_layouts", "uncertainty_weights",
]
