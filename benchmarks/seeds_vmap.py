"""Seeds as a vmap axis: 8 vmapped seeds vs 1 seed vs 8 sequential runs (`trainer.vmap`).

On the ML-1M genre split (cold-start protocol), for each configuration:
  mf_dense   target-only MF ("mf"), dense Adam over the whole tables
  mf_sparse  the same with row-sparse updates (mf.sparse=True: lazy Adam on the batch's rows)
  phi        a phi-encoder method (--phi-method, default "dann"); "standin" times a jitted
             lax.scan of steps of the bag encoder + a sigmoid head instead

it times `make_train` with keys [N] (one vmapped program), N runs with one key each
(sequential; their median is the 1-seed time), and the N runs spread over threads
(`run.seed_workers`) as `transferjax run --seeds N` does on a CPU (`run.train_seeds`; checked
to give the sequential numbers); N = --seeds (8) for the MF configs and --phi-seeds (4) for
phi, whose build and compile take seconds per seed. Per-epoch times exclude compiles (the trainer's
Result.train_time / epochs; compile is Result.compile_time, reported apart); the end-to-end
wall times include them and the evaluations, and each path starts with empty compile caches
(sequential seeds after the first reuse its programs through the one trainer). Every
epoch time includes the trainer's shuffle of the examples, timed alone as shuffle_s. The MF
configs evaluate after the last epoch (mean cold-test RMSE of the seeds is reported); phi is not
evaluated (a stub returns NaN).

    python -m benchmarks.seeds_vmap                      # 3 epochs each, JSON to
                                                         # benchmarks/results/seeds_vmap.json
    python -m benchmarks.seeds_vmap --quick              # 1 epoch, 4 seeds everywhere
    python -m benchmarks.seeds_vmap --epochs 5 --configs mf_sparse --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from transferjax import config as C
from transferjax.data.batches import epoch_batches
from transferjax.data.registry import build_dataset, build_split
from transferjax.methods.mf import MFConfig
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_train

CONFIGS = ("mf_dense", "mf_sparse", "phi")


def _cfg(name: str, *, epochs: int, batch_size: int, phi_method: str) -> C.RunConfig:
    trainer = C.TrainerConfig(
        epochs=epochs, batch_size=batch_size, eval_every=epochs, checkpoint_every=0
    )
    method = {"mf_dense": "mf", "mf_sparse": "mf", "phi": phi_method}[name]
    return C.RunConfig(
        name=f"bench_{name}",
        method=method,
        data=C.DataConfig(name="ml1m_genre"),
        trainer=trainer,
        mf=MFConfig(sparse=name == "mf_sparse"),
    )


def _no_eval(metric: str):
    """A stand-in evaluation (the phi methods' full evaluation takes seconds per call and is
    not what is timed here)."""

    def evaluate(scorer, params, heldout):
        return {metric: float("nan")}

    return evaluate


def _shuffle_s(n: int, batch_size: int, seeds: int) -> dict:
    """Seconds of the trainer's per-epoch shuffle (`epoch_batches`) alone, 1 key and `seeds`
    vmapped keys: part of every epoch time below."""
    out = {}
    for name, keys in (
        ("one", jax.random.key(0)),
        ("vmapped", jnp.stack([jax.random.key(i) for i in range(seeds)])),
    ):
        f = jax.jit(
            jax.vmap(lambda k: epoch_batches(k, n, batch_size))
            if keys.ndim
            else (lambda k: epoch_batches(k, n, batch_size))
        )
        jax.block_until_ready(f(keys))
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            jax.block_until_ready(f(keys))
            ts.append(time.perf_counter() - t0)
        out[name] = min(ts)
    return out


def _fresh() -> None:
    """Forget compiled programs (JAX's in-memory caches; each path below builds its own
    trainer, so its programs compile anew), so that each path pays its own compiles."""
    jax.clear_caches()


def _seeds_on_threads(cfg, split, ev, keys, workers: int) -> list:
    """The runner's non-vmapped path (`run.train_seeds`): whole seeds on `workers` threads."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda k: make_train(cfg, split, evaluate=ev)(k), keys))


def _bench_trainer(cfg, split, *, seeds: int, evaluate: bool, workers: int) -> dict:
    """Vmapped (keys [seeds]), sequential (one key at a time) and threaded (`workers` threads
    of sequential seeds, as `transferjax run` does on a CPU) runs of make_train. Sequential
    seeds after the first reuse its compiled programs (one trainer, jit's own cache)."""
    if evaluate:
        ev = make_evaluate(cfg, split)
    else:
        from transferjax.train.evaluate import default_select_metric

        ev = _no_eval(default_select_metric(cfg, split))
    e = cfg.trainer.epochs
    keys = [jax.random.key(s) for s in range(seeds)]
    _fresh()
    t0 = time.perf_counter()
    vm = make_train(cfg, split, evaluate=ev)(jnp.stack(keys))
    wall_v = time.perf_counter() - t0
    _fresh()
    seq, t0 = [], time.perf_counter()
    for k in keys:
        seq.append(make_train(cfg, split, evaluate=ev)(k))
    wall_s = time.perf_counter() - t0
    _fresh()
    t0 = time.perf_counter()
    par = _seeds_on_threads(cfg, split, ev, keys, workers)
    wall_p = time.perf_counter() - t0
    one = statistics.median(r.train_time for r in seq) / e
    out = {
        "epoch_s": {
            "one": one,
            "vmapped": vm[0].train_time / e,
            "sequential": sum(r.train_time for r in seq) / e,
        },
        "compile_s": {
            "one": seq[0].compile_time,
            "vmapped": vm[0].compile_time,
            "sequential_total": sum(r.compile_time for r in seq),
        },
        "wall_s": {"vmapped": wall_v, "sequential": wall_s, "threads": wall_p},
        "threads": workers,
    }
    for a, b in zip(seq, par, strict=True):  # threads change nothing but the wall time
        if json.dumps(a.history) != json.dumps(b.history):
            raise AssertionError("threaded seeds differ from sequential ones")
    metric = vm[0].select_metric
    if evaluate:
        out["test"] = {
            metric: {
                "vmapped_mean": float(np.mean([r.best["test"][metric] for r in vm])),
                "sequential_mean": float(np.mean([r.best["test"][metric] for r in seq])),
            }
        }
    return out


def _bench_standin(split, *, epochs: int, seeds: int, batch_size: int) -> dict:
    """Stand-in phi workload: the phi "bag" encoder (`transferjax.models.phi`, then ReLU) of
    each user's source items + sigmoid head over the target items, BCE against the user's
    target interests, Adam; a jitted lax.scan per epoch."""
    import optax

    from transferjax.data.batches import interest_bags, to_dense_interest
    from transferjax.models.phi import encoder

    src, tgt = split.source_train, split.target_train
    ov = split.data.overlap
    bag = interest_bags(src, max_len=256)
    enc_init, enc_apply = encoder(
        kind="bag", n_items=src.n_items, n_users=src.n_users, dims=(256, 128)
    )
    items, weights, mask = (
        jnp.asarray(getattr(bag, a)[ov[:, 0]]) for a in ("items", "weights", "mask")
    )
    labels = jnp.asarray(to_dense_interest(interest_bags(tgt), tgt.n_items)[ov[:, 1]] > 0)
    n, b = len(ov), min(batch_size, len(ov))
    steps = -(-n // b)
    opt = optax.adam(1e-3)

    def init(key):
        k1, k2 = jax.random.split(key)
        enc = enc_init(k1)
        head = {"w": 0.05 * jax.random.normal(k2, (128, tgt.n_items)), "b": jnp.zeros(tgt.n_items)}
        p = {"enc": enc, "head": head}
        return p, opt.init(p)

    def loss(p, i):
        z = jax.nn.relu(enc_apply(p["enc"], items[i], weights[i], mask[i]))
        logits = z @ p["head"]["w"] + p["head"]["b"]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels[i].astype(logits.dtype)))

    def epoch(p, s, key):
        idx, _ = epoch_batches(key, n, b)

        def step(c, i):
            p, s = c
            lv, g = jax.value_and_grad(loss)(p, i)
            with jax.numpy_dtype_promotion("standard"):
                u, s = opt.update(g, s, p)
                p = optax.apply_updates(p, u)
            return (p, s), lv

        (p, s), ls = jax.lax.scan(step, (p, s), idx)
        return p, s, jnp.mean(ls)

    def run(keys, batched):
        f = jax.vmap(epoch) if batched else epoch
        p, s = (jax.vmap(init) if batched else init)(keys)
        t0 = time.perf_counter()
        comp = jax.jit(f, donate_argnums=(0, 1)).lower(p, s, keys).compile()
        c = time.perf_counter() - t0
        t = 0.0
        for ep in range(epochs):
            fold = lambda k: jax.random.fold_in(k, ep)  # noqa: B023
            ks = jax.vmap(fold)(keys) if batched else fold(keys)
            t0 = time.perf_counter()
            p, s, lv = comp(p, s, ks)
            jax.block_until_ready(lv)
            t += time.perf_counter() - t0
        return t / epochs, c

    keys = [jax.random.key(i) for i in range(seeds)]
    vm, cv = run(jnp.stack(keys), True)
    seq = [run(k, False) for k in keys]
    return {
        "epoch_s": {
            "one": statistics.median(t for t, _ in seq),
            "vmapped": vm,
            "sequential": sum(t for t, _ in seq),
        },
        "compile_s": {"one": seq[0][1], "vmapped": cv},  # later runs hit the jit cache
        "note": "stand-in: bag encoder (256,128) + sigmoid head over target items, Adam, "
        f"{steps} steps of {b} overlap users per epoch",
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.seeds_vmap", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="1 epoch, 4 seeds")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--phi-method", default="dann", help="dann | phi | standin")
    ap.add_argument(
        "--phi-seeds",
        type=int,
        default=4,
        help="seeds of the phi config (its build takes seconds per seed)",
    )
    ap.add_argument("--phi-epochs", type=int, default=1)
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads of the threaded path (0: as `transferjax run`, `run.seed_workers`)",
    )
    ap.add_argument("--out", default="benchmarks/results/seeds_vmap.json")
    args = ap.parse_args(argv)
    epochs, seeds = (1, 4) if args.quick else (args.epochs, args.seeds)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in names if c not in CONFIGS]
    if bad:
        raise SystemExit(f"unknown configs {bad}; valid: {', '.join(CONFIGS)}")
    t0 = time.perf_counter()
    split = build_split(C.ProtocolConfig(), build_dataset(C.DataConfig(name="ml1m_genre")))
    print(
        f"data: ml1m_genre cold_start split in {time.perf_counter() - t0:.1f}s; "
        f"target train {len(split.target_train)} rows; backend {jax.default_backend()}; "
        f"{epochs} epochs, {seeds} seeds",
        flush=True,
    )
    rows = {}
    for name in names:
        t0, load0 = time.perf_counter(), os.getloadavg()[0]
        n_seeds, n_epochs = seeds, epochs
        if name == "phi" and not args.quick:
            n_seeds, n_epochs = min(seeds, args.phi_seeds), args.phi_epochs
        if name == "phi" and args.phi_method == "standin":
            r = _bench_standin(split, epochs=n_epochs, seeds=n_seeds, batch_size=args.batch_size)
        else:
            cfg = _cfg(
                name, epochs=n_epochs, batch_size=args.batch_size, phi_method=args.phi_method
            )
            try:
                from transferjax.train.run import seed_workers

                workers = seed_workers(
                    C.override(cfg, "trainer.workers", str(args.threads)), n_seeds
                )
                r = _bench_trainer(
                    cfg, split, seeds=n_seeds, evaluate=name != "phi", workers=workers
                )
                r["method"] = cfg.method
            except Exception as e:  # noqa: BLE001 - the phi method may be unfinished
                if name != "phi":
                    raise
                print(
                    f"phi method {args.phi_method!r} failed ({type(e).__name__}: {e}); "
                    "timing the stand-in",
                    flush=True,
                )
                r = _bench_standin(
                    split, epochs=n_epochs, seeds=n_seeds, batch_size=args.batch_size
                )
                r["note"] += f"; {args.phi_method} failed: {type(e).__name__}: {e}"
            if name != "phi":
                r["shuffle_s"] = _shuffle_s(len(split.target_train), args.batch_size, n_seeds)
        r.update(seeds=n_seeds, epochs=n_epochs, loadavg_1min=[load0, os.getloadavg()[0]])
        ep = r["epoch_s"]
        r["ratio"] = {
            "sequential_over_vmapped": ep["sequential"] / ep["vmapped"],
            "vmapped_over_one": ep["vmapped"] / ep["one"],
        }
        if "wall_s" in r:
            w = r["wall_s"]
            r["ratio"].update(
                wall_sequential_over_vmapped=w["sequential"] / w["vmapped"],
                wall_sequential_over_threads=w["sequential"] / w["threads"],
                wall_vmapped_over_threads=w["vmapped"] / w["threads"],
            )
        r["bench_wall_s"] = time.perf_counter() - t0
        rows[name] = r
        print(f"  {name}: done in {r['bench_wall_s']:.0f}s", flush=True)
    hdr = (
        f"{'config':10} {'seeds':>5} {'1 seed':>8} {'N vmap':>8} {'N seq':>8} "
        f"{'seq/vmap':>8} {'vmap/1':>7} {'compile 1/vmap':>15} {'shuffle 1/vmap':>15}"
    )
    print(
        f"\nseconds per epoch, compile excluded ({jax.default_backend()}, "
        f"{os.cpu_count()} cpus, batch {args.batch_size})\n{hdr}"
    )
    for name, r in rows.items():
        ep, ra, co = r["epoch_s"], r["ratio"], r["compile_s"]
        sh = r.get("shuffle_s")
        sh = f"{sh['one']:7.3f}/{sh['vmapped']:<7.3f}" if sh else f"{'-':>15}"
        print(
            f"{name:10} {r['seeds']:5d} {ep['one']:8.3f} {ep['vmapped']:8.3f} "
            f"{ep['sequential']:8.3f} {ra['sequential_over_vmapped']:8.2f} "
            f"{ra['vmapped_over_one']:7.2f} {co['one']:7.1f}/{co['vmapped']:<7.1f} {sh}"
        )
        if "wall_s" in r:
            w = r["wall_s"]
            print(
                f"  end to end ({r['epochs']} epochs, compiles and evaluation included): "
                f"vmapped {w['vmapped']:.1f}s, sequential {w['sequential']:.1f}s, "
                f"{r['threads']} threads {w['threads']:.1f}s; sequential/vmapped "
                f"{ra['wall_sequential_over_vmapped']:.2f}, sequential/threads "
                f"{ra['wall_sequential_over_threads']:.2f}, vmapped/threads "
                f"{ra['wall_vmapped_over_threads']:.2f}"
            )
        if "test" in r:
            print(f"  test: {r['test']}")
        if "note" in r:
            print(f"  note: {r['note']}")
    result = {
        "dataset": "ml1m_genre",
        "protocol": "cold_start",
        "epochs": epochs,
        "seeds": seeds,
        "command": " ".join(
            ["python -m benchmarks.seeds_vmap", *(sys.argv[1:] if argv is None else argv)]
        ),
        "batch_size": args.batch_size,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpus": os.cpu_count(),
        "host": platform.node(),
        "jax": jax.__version__,
        "configs": rows,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
