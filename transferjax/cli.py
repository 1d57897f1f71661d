"""Command line: `transferjax run | data`.

    transferjax run experiments/synthetic_emcdr.py [--set key=value ...] [--out DIR] [--quick]
    transferjax data fetch ml-1m [--cache-dir DIR]
    transferjax data describe NAME [--set data.target=video] [--set protocol.beta=0.5]
    transferjax methods
"""

from __future__ import annotations

import argparse
import sys

from transferjax import config as C


def _cfg_from_args(args) -> C.RunConfig:
    cfg = C.load(args.config, quick=args.quick) if args.config else C.RunConfig()
    return C.apply_overrides(cfg, args.set or [])


def cmd_run(args) -> int:
    from transferjax.train.run import run

    cfg = _cfg_from_args(args)
    run(cfg, out_dir=args.out)
    return 0


def cmd_methods(args) -> int:
    from transferjax.transfer.registry import get_method, available

    for name in available():
        doc = get_method(name).doc.splitlines()
        print(f"{name:14s} {doc[0] if doc else ''}")
    return 0


def cmd_data(args) -> int:
    if args.action == "fetch":
        from transferjax.data.fetch import fetch_movielens

        print(fetch_movielens(args.name, cache_dir=args.cache_dir))
        return 0
    from transferjax.data.protocols import describe
    from transferjax.data.registry import build_dataset, build_split

    cfg = C.apply_overrides(C.RunConfig(), [f"data.name={args.name}"] + (args.set or []))
    data = build_dataset(cfg.data)
    split = None if args.no_split else build_split(cfg.protocol, data)
    print(describe(data, split))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="transferjax", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train and evaluate one method; writes a run folder")
    r.add_argument("config", nargs="?", help="experiment file (or name in ./experiments)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    r.add_argument("--out", help="run folder (default runs/NAME-METHOD-TIMESTAMP)")
    r.add_argument("--quick", action="store_true", help="the config's shrunken quick variant")
    r.set_defaults(fn=cmd_run)

    m = sub.add_parser("methods", help="list registered methods")
    m.set_defaults(fn=cmd_methods)

    d = sub.add_parser("data", help="fetch or describe datasets")
    d.add_argument("action", choices=["fetch", "describe"])
    d.add_argument("name", help="fetch: ml-1m | ml-100k; describe: a data.name value")
    d.add_argument("--cache-dir", help="fetch: cache folder (default $TRANSFERJAX_CACHE or "
                   "~/.cache/transferjax)")
    d.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    d.add_argument("--no-split", action="store_true", help="describe: skip the protocol split")
    d.set_defaults(fn=cmd_data)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (C.ConfigError, ValueError, FileNotFoundError) as e:
        print(f"transferjax: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
