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
  manifest.json config, versions, git commit, data fingerprint, seeds, devices, timings
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
import hashlib
import os
import pathlib
import platform
import subprocess
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from transferjax import __version__
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.errors import DivergenceError
from transferjax.methods.registry import get_method
from transferjax.train import folder as F
from transferjax.train.distributed import is_multiprocess, is_writer, settle
from transferjax.train.evaluate import make_evaluate
from transferjax.train.files import write_json, write_text
from transferjax.train.mesh import device_names, mesh_sizes
from transferjax.train.trainer import Trainer, make_train
from transferjax.train.writers import make_writer


def config_hash(cfg) -> str:
    """8 hex digits identifying the resolved config (the default run folder's suffix)."""
    return hashlib.sha256(C.dumps(cfg).encode()).hexdigest()[:8]


def default_run_dir(cfg) -> pathlib.Path:
    """runs/NAME-METHOD-HASH: the same command maps to the same folder, so a rerun resumes."""
    return pathlib.Path("runs") / f"{cfg.name}-{cfg.method}-{config_hash(cfg)}"


def split_fingerprint(split) -> str:
    """sha256 over the arrays a run trains and evaluates on."""
    h = hashlib.sha256()
    for inter in (split.source_train, split.target_train):
        h.update(inter.fingerprint().encode())
    for part in (split.valid, split.test):
        for a in (part.pairs, part.row, part.item, part.rating):
            h.update(np.ascontiguousarray(a).tobytes())
        if part.negatives is not None:
            h.update(np.ascontiguousarray(part.negatives).tobytes())
        if part.exclude is not None:  # no bytes when no row is excluded (cold-start users)
            for a in (part.exclude.user, part.exclude.item):
                h.update(np.ascontiguousarray(a).tobytes())
    h.update(np.ascontiguousarray(split.warm_pairs).tobytes())
    return h.hexdigest()


def git_commit() -> str | None:
    """The commit of the code that ran, recorded only when the package sits at the top of a git
    checkout (`transferjax/` beside `.git`, as in an editable install); None otherwise (an
    installed copy, even one inside some other repository, or no git), without an error."""
    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # a folder, or a file in a git worktree
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


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


def _fmt(metrics: dict, keys) -> str:
    return "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)


SUMMARY_KEYS = (
    "mae",
    "rmse",
    "hr@10",
    "ndcg@10",
    "mrr",
    "full_hr@10",
    "full_ndcg@10",
    "full_recall@10",
    "full_mrr",
)


def summary(cfg, results, split, seeds, wall: float, train_s: float) -> str:
    lines = [
        f"transferjax {__version__}  {cfg.name}  method={cfg.method}  data={split.data.name}  "
        f"protocol={split.protocol}  seeds={list(seeds)}"
    ]
    for seed, r in zip(seeds, results):
        best = r.best
        if best is None:
            lines.append(f"seed {seed}: FAILED: {r.failure['message']}")
            continue
        keys = [k for k in SUMMARY_KEYS if k in best["valid"]]
        lines += [
            f"seed {seed}: selected stage={best['stage']} epoch={best['epoch']} "
            f"by valid {r.select_metric}",
            f"  valid  {_fmt(best['valid'], keys)}",
            f"  test   {_fmt(best['test'], keys)}",
        ]
    ok = [r for r in results if r.best is not None]
    if len(ok) > 1:
        keys = [k for k in SUMMARY_KEYS if k in ok[0].best["test"]]
        arr = {k: np.array([r.best["test"][k] for r in ok]) for k in keys}
        lines.append(
            "  test mean +/- std: "
            + "  ".join(f"{k}={v.mean():.4f}+/-{v.std(ddof=1):.4f}" for k, v in arr.items())
            + (f"  (over {len(ok)} seeds; failed seeds left out)" if len(ok) < len(results) else "")
        )
    r0 = results[0]
    lines.append(
        f"wall {wall:.1f}s (train {train_s:.1f}s, "
        f"compile {max(r.compile_time for r in results):.1f}s)"
        + (f", resumed from checkpoint {r0.resumed_from}" if r0.resumed_from else "")
    )
    return "\n".join(lines)


def _seed_entry(seed, r) -> dict:
    return {
        "seed": seed,
        "status": r.status,
        **({"failure": r.failure} if r.failure is not None else {}),
        "select_metric": r.select_metric,
        "selected": None if r.best is None else {"index": r.selected, **r.best},
        "history": r.history,
    }


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
) -> list:
    """Trains seeds cfg.seed .. cfg.seed + cfg.seeds - 1 (times `trials`, when given).

    `trials` (per-trial overrides of traced values such as learning rates) are crossed with the
    seeds and always share one vmapped program; seeds alone are vmapped when `use_vmap` says so.
    Returns one `Result` per (trial, seed), trial-major. `on_nonfinite` overrides
    `trainer.on_nonfinite` (see `make_train`); divergence messages name the seed and trial.
    `train` is the trainer from `build_trainer` with the same arguments, when the caller built
    it already.
    """
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
        )

    if workers == 1:
        return [one(i) for i in range(len(seeds))]
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="seed") as pool:
        return list(pool.map(one, range(len(seeds))))


def seed_workers(cfg, n_seeds: int) -> int:
    """Threads for seeds that run one after another: trainer.workers, or (0) one per CPU core
    on a CPU backend (XLA:CPU runs these small steps on one core) and 1 on an accelerator;
    always 1 in a multi-process run, whose processes must run their collectives in one order."""
    if is_multiprocess():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    w = cfg.trainer.workers or ((cores or 1) if jax.default_backend() == "cpu" else 1)
    return max(1, min(w, n_seeds))


def write_results(
    out: pathlib.Path, cfg, split, results, *, vmapped: bool, t_data: float, wall: float
) -> dict:
    """Writes metrics.json, manifest.json and summary.txt (on process 0 of a multi-process
    run; the others write nothing); returns the metrics dict."""
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    train_s = results[0].train_time if vmapped else sum(r.train_time for r in results)
    common = {
        "method": cfg.method,
        "dataset": split.data.name,
        "protocol": split.protocol,
        "protocol_info": {
            k: (v if isinstance(v, (int, float, str, bool)) else str(v))
            for k, v in split.info.items()
        },
        "timing": {
            "data_s": t_data,
            "train_s": train_s,
            "compile_s": max(r.compile_time for r in results),
            "wall_s": wall,
        },
        "version": __version__,
        "status": "ok" if all(r.status == "ok" for r in results) else "failed",
    }
    if len(seeds) == 1:
        metrics = {**common, **_seed_entry(seeds[0], results[0])}
    else:
        metrics = {**common, "seeds": [_seed_entry(s, r) for s, r in zip(seeds, results)]}
    text = summary(cfg, results, split, seeds, wall, train_s) + f"\nrun folder: {out}"
    metrics["_summary"] = text
    if not is_writer():
        return metrics
    write_json(out / "metrics.json", metrics)
    write_json(
        out / "manifest.json",
        {
            "config": C.to_dict(cfg),
            "version": __version__,
            "git_commit": git_commit(),
            "data_fingerprint": split_fingerprint(split),
            "seeds": seeds,
            "vmapped_seeds": vmapped,
            "seed_workers": 1 if vmapped else seed_workers(cfg, len(seeds)),
            "devices": device_names(),
            "mesh": mesh_sizes(cfg.trainer.mesh),
            "backend": jax.default_backend(),
            "host": platform.node(),
            "processes": jax.process_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "wall_s": wall,
            "train_s": train_s,
            "compile_s": max(r.compile_time for r in results),
            "data_s": t_data,
            "resumed_from": results[0].resumed_from,
        },
    )
    write_text(out / "summary.txt", text + "\n")
    return metrics


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
                cfg, split, out=out, writer=writer, progress=progress, vmapped=vmapped, train=train
            )
        finally:
            writer.close()
        metrics = write_results(
            out, cfg, split, results, vmapped=vmapped, t_data=t_data, wall=time.perf_counter() - t0
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
