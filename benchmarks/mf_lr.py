"""Learning rates of the speed suite's Adagrad MF variants, picked on a held-out split.

    python -m benchmarks.mf_lr          # benchmarks/results/mf_lr.json

Adam runs at the suite's lr 1e-2 in both frameworks. Adagrad wants a larger step, and the
two Adagrads differ (JAX's row-wise Adagrad keeps one accumulator per row, PyTorch's one per
element), so each gets the best rate of `GRID` by validation RMSE after `EPOCHS` epochs, on
a different random 90/10 split of ML-1M (seed `SPLIT_SEED`) from the one the suite reports
(seed 0). The winners are `benchmarks.mf_bench.ADAGRAD_LR`; this script shows where they
come from and flags a mismatch.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
EPOCHS, SPLIT_SEED = 6, 1


def sweep(train, valid, *, epochs: int = EPOCHS, grid=GRID, torch_too: bool = True) -> dict:
    """{"jax_rowwise": {lr: valid RMSE}, "torch_sparse": {...}} after `epochs` epochs each."""
    import jax

    from benchmarks import mf_bench as M

    out = {"jax_rowwise": {}, "torch_sparse": {}}
    init = jax.device_get(M.mf_stage(train, sparse=False, seed=0)[0]["mf"])
    for lr in grid:
        variants = {"jax_rowwise": M.JaxMF(train, valid, sparse=True, optimizer="adagrad", lr=lr)}
        if torch_too:
            import torch

            variants["torch_sparse"] = M.TorchMFVariant(
                train,
                valid,
                kind="sparse_adagrad",
                compile=False,
                init=init,
                lr=lr,
                device=torch.device("cpu"),
            )
        for name, v in variants.items():
            v.setup()
            for _ in range(epochs):
                v.run()
            out[name][lr] = v.finish()["valid_rmse"]
    return out


def best(rmse: dict) -> float:
    """The learning rate with the lowest validation RMSE."""
    return min(rmse, key=rmse.get)


def main(argv=None) -> int:
    from benchmarks import mf_bench as M

    argparse.ArgumentParser(
        prog="python -m benchmarks.mf_lr", description=__doc__.splitlines()[0]
    ).parse_args(argv)

    try:
        import torch  # noqa: F401

        torch_too = True
    except ImportError:
        torch_too = False
    train, valid = M.random_split(M.load_ml1m(), seed=SPLIT_SEED)
    res = sweep(train, valid, torch_too=torch_too)
    picked = {k: best(v) for k, v in res.items() if v}
    report = {
        "split_seed": SPLIT_SEED,
        "epochs": EPOCHS,
        "grid": GRID,
        "valid_rmse": res,
        "best": picked,
        "in_use": M.ADAGRAD_LR,
    }
    out = pathlib.Path(__file__).resolve().parent / "results" / "mf_lr.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    for name, rmse in res.items():
        print(
            name,
            {lr: round(r, 4) for lr, r in rmse.items()},
            "best",
            picked.get(name),
            "in use",
            M.ADAGRAD_LR[name],
        )
    stale = [k for k, lr in picked.items() if M.ADAGRAD_LR[k] != lr]
    if stale:
        print(f"mf_bench.ADAGRAD_LR differs from the sweep for {stale}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
