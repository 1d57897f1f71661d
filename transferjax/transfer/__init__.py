"""Transfer: the method registry, gradient reversal, alignment losses and objectives.

Method modules (mapping, collective, ptupcdr, phi) register themselves when the registry loads.
"""

from transferjax.transfer.alignment import (
           coral,
           info_nce,
           median_bandwidths,
           mmd2_linear,
           mmd2_unbiased,
)
from transferjax.transfer.grl import constant, ganin, grad_reverse, warmup
from transferjax.transfer.registry import Built, Scorer, available, get_method, register

__all__ = ["Built", "Scorer", "available", "constant", "coral", "ganin", "get_method",
           "grad_reverse", "info_nce", "median_bandwidths", "mmd2_linear", "mmd2_unbiased",
           "register", "warmup"]
