"""One run end to end: config -> data -> split -> train -> run folder.

A run folder holds:
  config.json   the resolved config (written when training starts)
  fingerprint.json  fingerprints of the config, the data and the training state's structure,
                checked before a rerun resumes (`transferjax.train.folder`)
  .lock         while a run writes the folder: its pid and host (one writer per folder)
  metrics.json  every evaluation (valid and test), the selected one, and timings; with several
                seeds, a "seeds" list of such entries; each has a "status", "ok" or "failed"
                (diverged under trainer.on_nonfinite=fail: "failure" says where and why,
                "selected" is null), and the top-level "status" is "failed" if any seed is
  manifest.json config, versions, git commit, data fingerprint, seeds, devices, CPU and the
                cores the run could use, timings
  ckpt/         orbax checkpoints of the training state (resume)
  scalars.jsonl and tb/ (TensorBoard event files through tensorboardX)
  summary.txt   the printed summary
JSON and text files are written atomically (temp file, then rename); a write that fails
(disk full, read-only folder) raises OSError naming the file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import pathlib
import threading
import time

import jax
import jax.numpy as jnp

from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import DivergenceError
from transferjax.methods.registry import get_method
from transferjax.train import folder as F
from transferjax.train.distributed import is_multiprocess, is_writer, settle
from transferjax.train.evaluate import make_evaluate
from transferjax.train.mesh import mesh_sizes
from transferjax.train.outputs import (
    default_run_dir,
    split_fingerprint,
    usable_cores,
    write_results,
)
from transferjax.train.preemption import sigterm_notice
from transferjax.train.trainer import Trainer, make_train
from transferjax.train.writers import make_writer


def use_vmap(cfg, split) -> bool:
    """Whether several seeds run as one vmapped program (else one after another, spread over
    `seed_workers` threads, all calling the same trainer and its compiled programs).

    "auto": on an accelerator always; on a CPU never, since whole seeds on one thread per core
    are faster there: a vmapped step moves every seed's tables and optimizer state through the
    caches at once, and a dense encoder's matmuls gain nothing from the trial axis. Chosen by
    `python -m benchmarks.seeds_vmap` (its figures are in BENCHMARKS.md). `trainer.vmap=on`
    forces vmap. A "trial" axis in `trainer.mesh` (one seed per device group) needs the seeds
    vmapped: "auto" then vmaps, and "off" is refused.
    """
    split_trials = mesh_sizes(cfg.trainer.mesh)["trial"] > 1
    if split_trials and cfg.trainer.vmap == "off":
        raise C.ConfigError(
            f"trainer.mesh={cfg.trainer.mesh!r} splits vmapped trials over devices, but "
            f"trainer.vmap='off' trains seeds one after another; use trainer.vmap=on or auto"
        )
    if cfg.seeds <= 1 or cfg.trainer.vmap == "off":
        return False
    if cfg.trainer.vmap == "on" or split_trials:
        return True
    return jax.default_backend() != "cpu"


def _prefixed(writer, prefix: str, step: int, values: dict) -> None:
    writer.scalars(step, {f"{prefix}{k}": v for k, v in values.items()})


def build_trainer(
    cfg, split, *, trials=None, progress: bool = False, on_nonfinite: str | None = None
) -> Trainer:
    """The trainer `train_seeds` uses: the method built once, `trials` crossed with the seeds."""
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    tri = None if trials is None else [t for t in trials for _ in seeds]
    return make_train(
        cfg,
        split,
        evaluate=make_evaluate(cfg, split),
        trials=tri,
        progress=progress,
        on_nonfinite=on_nonfinite,
    )


def trials_per_call(cfg, trials, vmapped: bool) -> int:
    """How many trials one call of the trainer trains together (the leading axis of its
    checkpointed state): every (trial, seed) with `trials`, all seeds when vmapped, else 1."""
    if trials is not None:
        return len(trials) * cfg.seeds
    return cfg.seeds if vmapped else 1


def train_seeds(
    cfg,
    split,
    *,
    out: pathlib.Path,
    writer,
    trials=None,
    progress: bool = False,
    vmapped: bool | None = None,
    on_nonfinite: str | None = None,
    train: Trainer | None = None,
    started: float | None = None,
) -> list:
    """Trains seeds cfg.seed .. cfg.seed + cfg.seeds - 1 (times `trials`, when given).

    `trials` (per-trial overrides of traced values such as learning rates) are crossed with the
    seeds and always share one vmapped program; seeds alone are vmapped when `use_vmap` says so.
    Returns one `Result` per (trial, seed), trial-major. `on_nonfinite` overrides
    `trainer.on_nonfinite` (see `make_train`); divergence messages name the seed and trial.
    `train` is the trainer from `build_trainer` with the same arguments, when the caller built
    it already. `started`: the perf_counter value at which the run began, for the wall time its
    checkpoints record (`Trainer`; default: each call's start).
    """
    # one notice for every seed, their threads included (Python's handler runs in this one)
    with sigterm_notice(enabled=cfg.trainer.checkpoint_every > 0):
        seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
        vmapped = use_vmap(cfg, split) if vmapped is None else vmapped
        together = trials is not None or vmapped or len(seeds) == 1
        if train is None:
            train = build_trainer(
                cfg, split, trials=trials, progress=progress, on_nonfinite=on_nonfinite
            )
        if together:
            keys = [jax.random.key(s) for s in seeds] * (1 if trials is None else len(trials))
            labels = [f"seed {s}" for s in seeds]
            if trials is not None:
                labels = [
                    f"trial {j} ({', '.join(f'{k}={v:g}' for k, v in t.items())}), seed {s}"
                    for j, t in enumerate(trials)
                    for s in seeds
                ]
            results = train(
                keys[0] if len(keys) == 1 else jnp.stack(keys),
                log=writer.scalars,
                ckpt_dir=out / "ckpt",
                labels=labels,
                started=started,
            )
            return results if isinstance(results, list) else [results]
        workers = seed_workers(cfg, len(seeds))
        lock = threading.Lock()

        def log(i, step, values):
            with lock:  # one writer shared by the seeds' threads
                _prefixed(writer, f"trial{i}/", step, values)

        def one(i: int):
            return train(
                jax.random.key(seeds[i]),
                log=functools.partial(log, i),
                ckpt_dir=out / "ckpt" / f"seed{seeds[i]}",
                show=progress and workers == 1,
                labels=[f"seed {seeds[i]}"],
                started=started,
            )

        if workers == 1:
            return [one(i) for i in range(len(seeds))]
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="seed") as pool:
            return list(pool.map(one, range(len(seeds))))


def seed_workers(cfg, n_seeds: int) -> int:
    """Threads for seeds that run one after another: trainer.workers, or (0) on a CPU backend
    enough threads that no core idles while seeds are left (XLA:CPU runs these small steps on
    one core), and 1 on an accelerator; always 1 in a multi-process run, whose processes must
    run their collectives in one order.

    On a CPU with c cores: one thread per core when the n seeds fill whole rounds of c (n a
    multiple of c), else r = ceil(n / 2c) rounds of ceil(n / r) threads: 3 seeds on 2 cores
    take 3 threads sharing them, not 2 and then 1 alone with a core idle; at most 2c seeds hold
    memory at once. Chosen by `python -m benchmarks.seeds_vmap --threads N`."""
    if is_multiprocess():
        return 1
    if cfg.trainer.workers:
        return max(1, min(cfg.trainer.workers, n_seeds))
    if jax.default_backend() != "cpu" or n_seeds <= 1:
        return 1
    cores = usable_cores() or os.cpu_count() or 1
    if n_seeds <= cores or n_seeds % cores == 0:
        return min(cores, n_seeds)
    rounds = -(-n_seeds // (2 * cores))
    return -(-n_seeds // rounds)


def take_folder(held: contextlib.ExitStack, out: pathlib.Path, *, writes, fresh, echo) -> None:
    """The writing process locks `out` into `held` (and moves a used folder aside when
    `fresh`); in a multi-process run the others wait until it did, and all stop when it could
    not (`settle`), so no process reads the folder before it is held."""
    error = None
    if writes:
        try:
            held.enter_context(F.locked(out))
            if fresh and (aside := F.move_aside(out)) is not None:
                echo(f"moved the previous run folder {out} to {aside}")
        except Exception as e:  # a folder in use or unwritable: every process stops
            error = e
    settle(error, what=f"take the run folder {out}")


def run(
    cfg,
    *,
    out_dir: str | os.PathLike | None = None,
    echo=print,
    progress: bool = True,
    fresh: bool = False,
) -> dict:
    """Runs `cfg` and writes its run folder; returns the metrics dict that was written.

    Rerunning with the same folder resumes from its newest intact checkpoint. Before any
    training the folder is locked (one writer) and checked: one that holds training of another
    config, other data or another training-state structure is refused with `RunFolderError`
    (`transferjax.train.folder`); `fresh=True` moves such a folder aside and starts anew. A run
    that fails before training leaves nothing behind.

    In a multi-process run (`transferjax.train.distributed`) every process calls `run` with
    the same config and folder: all of them check the folder and train, process 0 alone locks
    and writes it and prints the summary.

    Raises:
      DivergenceError: a seed diverged. Under `trainer.on_nonfinite=raise` at once (nothing
        is written for the diverged epoch); under "fail" after metrics.json and summary.txt
        record every seed's status, so the command line exits non-zero either way.
    """
    get_method(cfg.method)  # fail on a typo before loading data or creating the folder
    if cfg.seeds < 1:
        raise C.ConfigError(f"seeds must be >= 1, got {cfg.seeds}")
    mesh_sizes(cfg.trainer.mesh)  # the devices match trainer.mesh, before any data is read
    t0 = time.perf_counter()
    out = pathlib.Path(out_dir) if out_dir else default_run_dir(cfg)
    writes = is_writer()
    with contextlib.ExitStack() as held:
        take_folder(held, out, writes=writes, fresh=fresh, echo=echo)
        split = build_split(cfg.protocol, build_dataset(cfg.data))
        t_data = time.perf_counter() - t0
        data = split_fingerprint(split)
        F.check(out, cfg, data=data)  # before the method is built
        vmapped = use_vmap(cfg, split)
        train = build_trainer(cfg, split, progress=progress)
        state = train.state_structure(trials_per_call(cfg, None, vmapped))
        if writes:
            F.begin(out, cfg, data=data, state=state)
        writer = make_writer(out)
        try:
            results = train_seeds(
                cfg,
                split,
                out=out,
                writer=writer,
                progress=progress,
                vmapped=vmapped,
                train=train,
                started=t0,
            )
        finally:
            writer.close()
        metrics = write_results(
            out,
            cfg,
            split,
            results,
            vmapped=vmapped,
            workers=1 if vmapped else seed_workers(cfg, cfg.seeds),
            t_data=t_data,
            process_wall=time.perf_counter() - t0,
        )
        if writes:
            F.record(out, cfg, data=data, state=state)
    text = metrics.pop("_summary")
    if writes:
        echo(text)
    failed = [r.failure["message"] for r in results if r.status == "failed"]
    if failed:
        raise DivergenceError(
            f"{len(failed)} of {len(results)} seeds failed (status recorded in "
            f"{out / 'metrics.json'}): {failed[0]}"
        )
    return metrics
