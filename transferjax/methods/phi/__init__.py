"""The phi family: a multi-task transfer model over phi encoders of users' interest vectors,
registered as `phi` (alignment from `align.objective`) and as `dann`, `mmd`, `coral`, `infonce`
(that objective forced).

- `config`: the `phi` config section;
- `bags`: users' bags of each domain as compact CSR arrays, the joint user rows;
- `encoders`: phi encoders by name, the kinds of `transferjax.models.phi` and registered ones
  (`register_encoder`);
- `heads`: the multi-task head and the output layers over items;
- `model`: the model, its losses, scorer and the registered builds.
"""

from transferjax.methods.phi.config import PhiConfig
from transferjax.methods.phi.encoders import available_encoders, register_encoder
from transferjax.methods.phi.model import PHI_TRACED, PhiModel, build_phi

__all__ = [
    "PHI_TRACED",
    "PhiConfig",
    "PhiModel",
    "available_encoders",
    "build_phi",
    "register_encoder",
]
