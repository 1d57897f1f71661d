"""Hyperparameter sweeps: grid or random search, selected on cold-valid only.

    transferjax sweep experiments/synthetic_emcdr.py --grid trainer.lr=1e-3,1e-2 --grid mf.dim=8,16
    transferjax sweep experiments/synthetic_emcdr.py --grid trainer.lr=log:1e-4:1e-1 --random 6

Points that differ only in traced values (learning rates, each stage's `lr_key`, and the
method's traced hyperparameters: loss weights, regularisation, the GRL strength; see
`traced_keys`) run together as one vmapped program; every other point runs on its own. Each
point gets a run folder (`point-NNN/`) readable by `transferjax report`; `sweep.json` records
the search space, the budget, every point's valid metric (mean over seeds at each seed's
selected epoch) and the chosen values. Test metrics are stored for the record and never read
by the choice.

A point that diverges (`transferjax.train.divergence`: a non-finite loss, or a non-finite or
absurd metric; typically a too-large learning rate) is marked failed, whatever
`trainer.on_nonfinite` says: its folder's metrics.json and its entry in sweep.json have status
"failed" and the reason, it is never chosen, and the other points of its vmapped group go on.
The sweep raises DivergenceError (after writing sweep.json) only when every point failed.

The sweep folder is locked while the sweep runs (one writer, `transferjax.train.folder`), and
every group and point folder is checked against the config and the data before anything
trains: a rerun resumes its groups' checkpoints only when both are unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import pathlib
import time

import numpy as np

from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import DivergenceError
from transferjax.methods.registry import get_method
from transferjax.train import folder as F
from transferjax.train.distributed import is_writer
from transferjax.train.files import write_json
from transferjax.train.outputs import split_fingerprint, write_results
from transferjax.train.preemption import sigterm_notice
from transferjax.train.result import lower_is_better
from transferjax.train.run import (
    build_trainer,
    seed_workers,
    take_folder,
    train_seeds,
    trials_per_call,
    use_vmap,
)
from transferjax.train.trainer import LR_KEYS
from transferjax.train.writers import make_writer


def traced_keys(method: str) -> tuple[str, ...]:
    """Config keys a sweep varies inside one compiled program for `method`: the learning
    rates and the method's traced hyperparameters (`register(name, traced=...)`)."""
    return (*LR_KEYS, *get_method(method).traced)


def parse_space(base, grids: list[str]) -> dict[str, list | tuple]:
    """{'trainer.lr': ['0.001', '0.01'], 'mf.lr': ('log', 1e-4, 1e-1)}; validates each key/value."""
    space: dict = {}
    for g in grids:
        key, sep, raw = g.partition("=")
        key = key.strip()
        if not sep or not raw:
            raise C.ConfigError(f"--grid {g!r} must look like key=v1,v2 or key=log:lo:hi")
        if raw.startswith("log:"):
            parts = raw.split(":")
            if len(parts) != 3:
                raise C.ConfigError(f"--grid {g!r}: a log range is log:lo:hi")
            lo, hi = float(parts[1]), float(parts[2])
            if not 0 < lo < hi:
                raise C.ConfigError(f"--grid {g!r}: need 0 < lo < hi")
            C.override(base, key, str(lo))  # validates the key and its type
            space[key] = ("log", lo, hi)
        else:
            values = [v.strip() for v in raw.split(",") if v.strip()]
            for v in values:
                C.override(base, key, v)
            space[key] = values
    return space


def points(space: dict, *, random: int = 0, seed: int = 0) -> list[dict]:
    """Grid (every combination) or `random` points drawn with a seeded generator."""
    if not random:
        if any(isinstance(v, tuple) for v in space.values()):
            raise C.ConfigError("a log:lo:hi range needs random search (--random N)")
        keys = list(space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*space.values())]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(random):
        pt = {}
        for k, v in space.items():
            if isinstance(v, tuple):
                pt[k] = repr(float(math.exp(rng.uniform(math.log(v[1]), math.log(v[2])))))
            else:
                pt[k] = v[int(rng.integers(len(v)))]
        out.append(pt)
    return out


def _valid_score(metrics_seeds: list, metric: str) -> float | None:
    """Mean valid `metric` over seeds at each seed's selected epoch; None if a seed failed."""
    if any(r.best is None for r in metrics_seeds):
        return None
    return float(np.mean([r.best["valid"][metric] for r in metrics_seeds]))


def _test_for_record(metrics_seeds: list, metric: str) -> float | None:
    if any(r.best is None or metric not in r.best["test"] for r in metrics_seeds):
        return None
    return float(np.mean([r.best["test"][metric] for r in metrics_seeds]))


def _failure(metrics_seeds: list) -> str | None:
    return next((r.failure["message"] for r in metrics_seeds if r.failure is not None), None)


def sweep(
    base, *, grids: list[str], out_dir, random: int = 0, sample_seed: int = 0, echo=print
) -> dict:
    """Runs the sweep and writes `out_dir/sweep.json`; returns its content. In a multi-process
    run every process trains and process 0 alone writes and prints."""
    space = parse_space(base, grids)
    pts = points(space, random=random, seed=sample_seed)
    out = pathlib.Path(out_dir)
    writes = is_writer()
    with contextlib.ExitStack() as held:
        take_folder(held, out, writes=writes, fresh=False, echo=echo)
        held.enter_context(sigterm_notice(enabled=base.trainer.checkpoint_every > 0))  # all groups
        return _sweep(
            base, space, pts, out, random=random, sample_seed=sample_seed, echo=echo, writes=writes
        )


def _sweep(base, space, pts, out, *, random, sample_seed, echo, writes: bool = True) -> dict:
    t0 = time.perf_counter()
    split = build_split(base.protocol, build_dataset(base.data))
    t_data = time.perf_counter() - t0
    data = split_fingerprint(split)
    groups = _groups(base, pts)
    cfgs = {
        i: C.apply_overrides(base, [f"{k}={v}" for k, v in pt.items()]) for i, pt in enumerate(pts)
    }
    gcfgs = {s: C.apply_overrides(base, [f"{k}={v}" for k, v in s]) for s in groups}
    for static, idx in groups.items():  # refuse other data or config before anything trains
        F.check(out / f"group-{min(idx):03d}", gcfgs[static], data=data)
        for i in idx:
            F.check(out / f"point-{i:03d}", cfgs[i], data=data)
    results: dict[int, list] = {}
    for static, idx in groups.items():
        res, wall, per_trial = _train_group(
            gcfgs[static],
            split,
            [pts[i] for i in idx],
            out / f"group-{min(idx):03d}",
            data=data,
            writes=writes,
        )
        for j, i in enumerate(idx):
            n = gcfgs[static].seeds
            results[i] = res[j * n : (j + 1) * n] if per_trial else res
            pdir = out / f"point-{i:03d}"
            if writes:
                F.begin(pdir, cfgs[i], data=data, state=None)
                F.record(pdir, cfgs[i], data=data, state=None)
            vmapped = use_vmap(cfgs[i], split) or len(idx) > 1
            write_results(
                pdir,
                cfgs[i],
                split,
                results[i],
                vmapped=vmapped,
                workers=1 if vmapped else seed_workers(cfgs[i], cfgs[i].seeds),
                t_data=t_data,
                process_wall=wall,
            )
    report = _report(space, pts, results, random=random, sample_seed=sample_seed)
    # with the groups' earlier processes (`write_results`), when the sweep resumed
    before = sum(max(r.wall_before for r in results[min(idx)]) for idx in groups.values())
    report["wall_s"] = time.perf_counter() - t0 + before
    if writes:
        write_json(out / "sweep.json", report)
        _announce(report, out, metric=results[0][0].select_metric, echo=echo)
    return report


def _groups(base, pts) -> dict:
    """{static settings: indices of the points sharing them}: the points of one group differ
    only in traced values, so they train as one program (their trials vmapped)."""
    groups: dict = {}
    for i, pt in enumerate(pts):
        traced = traced_keys(pt.get("method", base.method))
        static = tuple(sorted((k, v) for k, v in pt.items() if k not in traced))
        groups.setdefault(static, []).append(i)
    return groups


def _train_group(gcfg, split, pts, folder, *, data, writes) -> tuple[list, float, bool]:
    """Trains one group's points as one call: (results, wall seconds, whether the results hold
    one block of `seeds` trials per point)."""
    keys = traced_keys(gcfg.method)
    traced = [{k: float(v) for k, v in pt.items() if k in keys} for pt in pts]
    trials = traced if any(traced) else None
    vmapped = use_vmap(gcfg, split)
    train = build_trainer(gcfg, split, trials=trials, on_nonfinite="fail")
    state = train.state_structure(trials_per_call(gcfg, trials, vmapped))
    if writes:
        F.begin(folder, gcfg, data=data, state=state)
    writer = make_writer(folder, tensorboard=False)
    t1 = time.perf_counter()
    try:
        res = train_seeds(
            gcfg,
            split,
            out=folder,
            writer=writer,
            trials=trials,
            vmapped=vmapped,
            train=train,
            started=t1,
        )
    finally:
        writer.close()
    wall = time.perf_counter() - t1
    if writes:
        F.record(folder, gcfg, data=data, state=state)
    return res, wall, trials is not None


def _report(space, pts, results, *, random, sample_seed) -> dict:
    """The sweep's record: each point's mean valid score (and test, for the record only) and
    the point chosen on valid (the first on ties; None when every point failed)."""
    metric = results[0][0].select_metric
    scores = [_valid_score(results[i], metric) for i in range(len(pts))]
    ok = [i for i, v in enumerate(scores) if v is not None]
    pick = min if lower_is_better(metric) else max
    best = pick(ok, key=lambda i: scores[i]) if ok else None
    return {
        "space": {k: (list(v) if isinstance(v, tuple) else v) for k, v in space.items()},
        "mode": "random" if random else "grid",
        "budget": len(pts),
        "sample_seed": sample_seed,
        "select_metric": f"valid {metric} (mean over seeds at each seed's selected epoch)",
        "points": [
            {
                "index": i,
                "values": pts[i],
                "status": "ok" if scores[i] is not None else "failed",
                **({} if scores[i] is not None else {"failure": _failure(results[i])}),
                "valid": scores[i],
                "test_for_record": _test_for_record(results[i], metric),
                "folder": f"point-{i:03d}",
            }
            for i in range(len(pts))
        ],
        "chosen": None
        if best is None
        else {"index": best, "values": pts[best], "valid": scores[best]},
    }


def _announce(report: dict, out, *, metric: str, echo) -> None:
    """Prints each point's valid score (the chosen one marked); raises DivergenceError when
    every point diverged."""
    best = None if report["chosen"] is None else report["chosen"]["index"]
    for p in report["points"]:
        if p["status"] == "failed":
            echo(f"point {p['index']:3d} {p['values']}  FAILED: {p['failure']}")
            continue
        mark = " <- chosen" if p["index"] == best else ""
        echo(f"point {p['index']:3d} {p['values']}  valid {metric}={p['valid']:.4f}{mark}")
    if report["chosen"] is None:
        raise DivergenceError(
            f"every one of the {report['budget']} sweep points diverged (recorded in "
            f"{out / 'sweep.json'}); lower the learning rates searched"
        )
