"""One training step of the registered `dann` method, timed as the trainer runs it.

The method is built as a run builds it, `get_method("dann").build(cfg, split)`, and its stage
runs as the trainer's compiled epoch program (`transferjax.train.epoch.stage_epoch`): the
gather of the batch's bags, the cold simulation and input/label split drawn in the graph, both
phi encoders (the "bag" encoder, whose first layer follows the library's cost rule), the
residual multi-task head, the click and rating losses over all items of each domain, the DANN
objective (discriminator on gradient-reversed z) and Adam. One `run()` is one epoch over the
first `steps * batch` joint rows (a fixed set, reshuffled each epoch on the host as the
trainer does on a CPU), so a step's time is the epoch's over `steps`.

Data profiles (synthetic, no download; `profile_split`):
- "ml1m_like": two explicit-rating domains shaped like ML-1M, 6,040 users (all in both) by
  3,706 items each, bag lengths lognormal (median ~100, mean ~165, 20 to 2,314), Zipf-like item
  popularity, ratings 1-5; long bags over a small catalogue, where the dense first layer runs.
- "cdrib_like": two implicit domains shaped like CDRIB Video -> Game (19,457 users by 8,751
  items, 25,025 by 12,319, 2,000 shared users), long-tailed lengths (median 5-6, mean 7-8, up
  to 274 and 167); short bags next to the longest, where the packed first layer runs.
Both under the cold-start protocol (beta 0.2).

    python -m benchmarks.dann_step [--profiles ml1m_like cdrib_like] [--layers dense packed ell]

times the step with the encoder's first layer forced to each form (`forced_layer`; "ell" is
`benchmarks.ell.graph_bag_matmul`, not a library form), interleaved, against the form the
library's cost rule picks (`transferjax.models.phi.choose_layer`); the speed suite's DANN
section (`python -m benchmarks.speed --only dann`) times the step as the library runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import jax
import numpy as np

from benchmarks.method_steps import MethodSteps, first_steps
from transferjax import config as C
from transferjax.data.protocols import cold_start_split
from transferjax.data.types import CrossDomainData, Interactions
from transferjax.methods.phi import PhiConfig
from transferjax.methods.registry import get_method
from transferjax.models import phi as PHI

BATCH, DIMS, LR = 256, (256, 128), 1e-3
PROFILES = {  # per domain: users, items, (lognormal median, sigma, min, max), explicit
    "ml1m_like": {
        "domains": ((6040, 3706, (85.0, 1.04, 20, 2314)), (6040, 3706, (85.0, 1.04, 20, 2314))),
        "overlap": 6040,
        "explicit": True,
    },
    "cdrib_like": {
        "domains": ((19457, 8751, (1.6, 1.3, 5, 740)), (25025, 12319, (1.2, 1.25, 5, 167))),
        "overlap": 2000,
        "explicit": False,
    },
}


def _domain(
    rng, n_users: int, n_items: int, lengths: tuple, *, explicit: bool, name: str
) -> Interactions:
    med, sigma, lo, hi = lengths
    lens = np.clip(lo - 1 + np.round(rng.lognormal(np.log(med), sigma, n_users)), lo, hi)
    lens = lens.astype(np.int64)
    logp = -0.9 * np.log(np.arange(n_items) + 20.0)  # Zipf-like popularity, items shuffled
    logp = logp[rng.permutation(n_items)]
    item = np.concatenate(
        [np.argpartition(-(logp + rng.gumbel(size=n_items)), k - 1)[:k] for k in lens]
    )  # k distinct items per user, popularity-weighted
    rating = rng.integers(1, 6, len(item)) if explicit else np.ones(len(item))
    return Interactions(
        user=np.repeat(np.arange(n_users), lens),
        item=item,
        rating=rating,
        n_users=n_users,
        n_items=n_items,
        name=name,
    )


def profile_split(name: str, *, seed: int = 0):
    """The cold-start `Split` (beta 0.2) of the synthetic profile `name` (module docstring)."""
    prof = PROFILES[name]
    rng = np.random.default_rng(seed)
    (su, si, sl), (tu, ti, tl) = prof["domains"]
    src = _domain(rng, su, si, sl, explicit=prof["explicit"], name=f"{name}_source")
    tgt = _domain(rng, tu, ti, tl, explicit=prof["explicit"], name=f"{name}_target")
    ov = np.stack([np.arange(prof["overlap"])] * 2, 1)
    data = CrossDomainData(source=src, target=tgt, overlap=ov, name=name)
    return cold_start_split(data, beta=0.2, seed=seed)


def dann_config(*, batch: int = BATCH, dims=DIMS, lr: float = LR) -> C.RunConfig:
    """The run config of the timed method: `dann`, Adam, the default phi head and encoder."""
    return C.RunConfig(
        method="dann",
        trainer=C.TrainerConfig(lr=lr, batch_size=batch),
        phi=PhiConfig(dims=tuple(dims)),
    )


class JaxDannStep(MethodSteps):
    """`steps` training steps of the registered `dann` method (one epoch program) per run."""

    def __init__(
        self, split, *, steps: int, cfg: C.RunConfig | None = None, seed: int = 0, device=None
    ):
        super().__init__(cfg or dann_config(), split, steps=steps, seed=seed, device=device)


def reference_inputs(split, *, steps: int, cfg: C.RunConfig | None = None, seed: int = 0):
    """What a reference of `JaxDannStep(split, steps=steps, cfg=cfg, seed=seed)` starts from:
    (the `PhiModel` of its method, its initial phi params as numpy, its rows {"src", "tgt"})."""
    from transferjax.methods.phi.model import PhiModel

    cfg = cfg or dann_config()
    built = get_method("dann").build(cfg, split)
    params = built.init(jax.random.split(jax.random.key(seed))[0])
    examples = first_steps(built.stages[0], steps=steps).examples
    return (
        PhiModel(cfg, split, objective="dann"),
        jax.device_get(params["phi"]),
        {k: np.asarray(v) for k, v in examples.items()},
    )


def summarize(res: dict) -> dict:
    """Adds steps/s and ms/step (from the median round) to `interleaved` results."""
    for r in res.values():
        if "median_s" in r:
            r["steps_per_s"] = r["steps"] / r["median_s"]
            r["step_ms"] = 1000.0 * r["median_s"] / r["steps"]
            r["final_loss"] = r["losses"][-1]
    return res


def setup_facts(split, *, batch: int = BATCH) -> dict:
    """Sizes of the timed batches: items, users, mean entries per user of each domain."""
    out = {}
    for dom, inter in (("source", split.source_train), ("target", split.target_train)):
        n = inter.user_counts()
        out[dom] = {
            "users": int((n > 0).sum()),
            "items": inter.n_items,
            "entries_per_user": float(n[n > 0].mean()),
            "longest": int(n.max()),
        }
    return {"batch": batch, **out}


@contextlib.contextmanager
def forced_layer(layer: str | None):
    """Within the block, phi's "bag" first layer takes form `layer` whatever the cost rule
    says: "dense", "packed" or "ell" (`benchmarks.ell.graph_bag_matmul`); None: the rule."""
    if layer is None:
        yield
        return
    from benchmarks.ell import graph_bag_matmul

    choose, first = PHI.choose_layer, PHI.first_layer

    def forced(table, items, weights, mask, *, layer, capacity=0, overflow="dense"):
        if layer == "ell":
            return graph_bag_matmul(table, items, weights, mask, capacity=capacity)
        return first(table, items, weights, mask, layer=layer, capacity=capacity, overflow=overflow)

    PHI.choose_layer, PHI.first_layer = (lambda **_: layer), forced
    try:
        yield
    finally:
        PHI.choose_layer, PHI.first_layer = choose, first


class _Forced(JaxDannStep):
    def __init__(self, split, *, layer: str, steps: int):
        super().__init__(split, steps=steps)
        self.layer = layer

    def setup(self) -> None:  # traced and compiled with the form forced
        with forced_layer(self.layer):
            super().setup()


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.measure import interleaved

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.dann_step", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=list(PROFILES))
    ap.add_argument(
        "--layers",
        nargs="+",
        choices=("dense", "packed", "ell"),
        default=["dense", "packed", "ell"],
    )
    ap.add_argument("--steps", type=int, default=10, help="steps per timed epoch")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    out = {}
    print("| profile | first layer | ms/step | vs the rule's form | rule |\n|---|---|---|---|---|")
    for name in args.profiles:
        split = profile_split(name)
        rules = {
            PHI.choose_layer(
                batch=BATCH,
                n_items=d.n_items,
                capacity=int(np.sort(d.user_counts())[::-1][:BATCH].sum()),
            )
            for d in (split.source_train, split.target_train)
        }
        rule = "/".join(sorted(rules))  # the form of each domain's encoder
        res = interleaved(
            {lay: _Forced(split, layer=lay, steps=args.steps) for lay in args.layers},
            rounds=args.rounds,
        )
        ms = {k: 1e3 * r["median_s"] / args.steps for k, r in res.items() if "median_s" in r}
        out[name] = {
            "ms_per_step": ms,
            "rule": rule,
            "errors": {k: r["error"] for k, r in res.items() if "error" in r},
        }
        for lay, v in ms.items():
            ratio = f"{ms[rule] / v:.2f}x" if rule in ms else "-"
            print(f"| {name} | {lay} | {v:.1f} | {ratio} | {rule} |", flush=True)
    print(f"\njax {jax.__version__} on {jax.default_backend()}; PACKED_COST = {PHI.PACKED_COST}")
    return out


if __name__ == "__main__":
    main()
