"""phi's first layer on real bag-length profiles: packed against dense, and which one is chosen.

    python -m benchmarks.phi_layer            # every domain found; prints a markdown table
    python -m benchmarks.phi_layer --domains synthetic cdrib_game
    python -m benchmarks.phi_layer --trials 2   # vmapped over 2 trials, as sweeps run

For each domain, `pool` batches of 256 distinct users (their input entries after the training
split, `keep` 0.5) go through `x @ emb` (emb f32[n_items, 256]) forward and backward, with an
SGD update of emb, as a jitted `lax.scan`: once in the dense form (`bag_to_dense` then matmul)
and once packed (`models.phi.packed_matmul`, capacity = the batch-size longest bags). The
table gives ms per step, the packed slots and the real entries per batch, and
`slot_cost` = (packed ms / slot) / (dense ms / cell): the number of dense cells one packed
slot costs, which `transferjax.models.phi.PACKED_COST` approximates (the cost rule
`transferjax.models.phi.choose_layer` picks the form the "chosen" column names).

With `--trials N` every step runs N trials under `vmap` (own tables, own input splits: the
masks are batched), as a sweep or vmapped seeds train; "packed" keeps the exact dense fallback
for batches over capacity, which the batched `lax.cond` turns into a select that computes the
dense form too, and "packed_distinct" (`overflow="nan"`, what training batches of distinct
users take) has no fallback; slot_cost then reads packed_distinct.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.data.registry import datasets_root
from transferjax.data.types import Interactions
from transferjax.methods.phi import bags as U
from transferjax.models import phi as PHI

DOMAINS = ("synthetic", "cdrib_game", "cdrib_video", "ml1m")


def load(name: str) -> Interactions | None:
    """The domain's training interactions, or None when its data is absent."""
    if name == "synthetic":  # long-tailed lengths: geometric, mean 8, over 10k items
        rng = np.random.default_rng(0)
        lens = np.minimum(rng.geometric(1 / 8, 20_000), 400)
        user = np.repeat(np.arange(len(lens)), lens).astype(np.int32)
        item = rng.integers(0, 10_000, len(user)).astype(np.int32)
        return Interactions(
            user=user,
            item=item,
            rating=np.ones(len(user), np.float32),
            n_users=len(lens),
            n_items=10_000,
            name="synthetic",
        )
    if name.startswith("cdrib"):
        from transferjax.data.cdrib import load_cdrib

        root = datasets_root() / "cdrib_game_video"  # $TRANSFERJAX_DATA or ../shared/datasets
        if not root.exists():
            return None
        return load_cdrib(root, target=name.split("_")[1]).target
    from benchmarks.mf_bench import load_ml1m

    try:
        return load_ml1m()
    except Exception:  # noqa: BLE001 - absent or unreadable: skip the domain
        return None


def time_forms(
    inter: Interactions,
    *,
    batch: int = 256,
    pool: int = 8,
    steps: int = 16,
    rounds: int = 5,
    d: int = 256,
    trials: int = 1,
) -> dict:
    """ms/step of the dense and packed first layer (forward, backward, SGD) on one domain."""
    bags, spec = U.domain_bags(inter)
    rng = np.random.default_rng(0)
    users = jnp.asarray(
        np.stack([rng.choice(inter.n_users, batch, replace=False) for _ in range(pool)]).astype(
            np.int32
        )
    )
    cap = spec.capacity(batch)
    emb = jnp.asarray(rng.normal(size=(inter.n_items, d)).astype(np.float32) * 0.01)
    g = jnp.asarray(rng.normal(size=(batch, d)).astype(np.float32))

    def batch_of(j, key):
        items, rating, mask = U.gather_rows(bags, users[j], max_len=spec.max_len)
        inp, _ = U.split_entries(key, mask, keep=0.5)
        w = PHI.interest(rating, inp, mu=spec.mu, explicit=spec.explicit)
        return jnp.clip(items, 0, spec.n_items - 1), w, inp

    forms = {
        "dense": lambda e, b: PHI.first_layer(e, *b, layer="dense"),
        "packed": lambda e, b: PHI.first_layer(e, *b, layer="packed", capacity=cap),
    }
    if trials > 1:
        forms["packed_distinct"] = lambda e, b: PHI.first_layer(
            e, *b, layer="packed", capacity=cap, overflow="nan"
        )
        emb = jnp.broadcast_to(emb, (trials, *emb.shape))
    out = {
        "n_items": inter.n_items,
        "max_len": spec.max_len,
        "capacity": cap,
        "chosen": PHI.choose_layer(batch=batch, capacity=cap, n_items=inter.n_items),
    }
    entries = [int(jnp.sum(batch_of(j, jax.random.key(j))[2])) for j in range(pool)]
    out["entries_mean"] = float(np.mean(entries))
    for name, form in forms.items():

        def run(e, form=form):
            def trial(e, t, k):
                b = batch_of(t % pool, jax.random.fold_in(jax.random.key(t), k))
                return e - 1e-3 * jax.grad(lambda e: jnp.sum(form(e, b) * g))(e)

            def body(e, t):
                if trials > 1:
                    return jax.vmap(trial, in_axes=(0, None, 0))(e, t, jnp.arange(trials)), None
                return trial(e, t, 0), None

            return jax.lax.scan(body, e, jnp.arange(steps))[0]

        f = jax.jit(run)
        jax.block_until_ready(f(emb))
        ts = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            jax.block_until_ready(f(emb))
            ts.append(time.perf_counter() - t0)
        out[f"{name}_ms"] = 1e3 * float(np.median(ts)) / steps
    cells = batch * inter.n_items
    packed = out["packed_distinct_ms" if trials > 1 else "packed_ms"]
    out["slot_cost"] = (packed / max(cap, 1)) / (out["dense_ms"] / cells)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.phi_layer", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--domains", nargs="+", choices=DOMAINS, default=list(DOMAINS))
    ap.add_argument("--trials", type=int, default=1, help="trials vmapped in each step")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    res = {}
    extra = " packed_distinct ms |" if args.trials > 1 else ""
    print(
        f"| domain | items | max len | entries/batch | capacity | dense ms | packed ms |{extra} "
        f"slot_cost | chosen |\n|---|---|---|---|---|---|---|{'---|' if extra else ''}---|---|"
    )
    for name in args.domains:
        inter = load(name)
        if inter is None:
            print(f"| {name} | (data absent: skipped) |||||||")
            continue
        r = res[name] = time_forms(inter, trials=args.trials)
        more = f" {r['packed_distinct_ms']:.2f} |" if extra else ""
        print(
            f"| {name} | {r['n_items']} | {r['max_len']} | {r['entries_mean']:.0f} | "
            f"{r['capacity']} | {r['dense_ms']:.2f} | {r['packed_ms']:.2f} |{more} "
            f"{r['slot_cost']:.0f} | {r['chosen']} |",
            flush=True,
        )
    if args.trials > 1:
        print(f"\n{args.trials} trials vmapped per step")
    print(f"\nPACKED_COST = {PHI.PACKED_COST}; jax {jax.__version__} on {jax.default_backend()}")
    return res


if __name__ == "__main__":
    main()
