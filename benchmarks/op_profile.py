"""Where a compiled training step spends its time, op by op (XLA's profiler trace).

    python -m benchmarks.op_profile      # benchmarks/results/op_profile.json and .md
    taskset -c 0 python -m benchmarks.op_profile --cases dann_bag \
        --out benchmarks/results/op_profile_1core.json   # one core: which ops run in parallel

Cases: the library's MF epoch on ML-1M with row-sparse lazy Adam, row-sparse row-wise Adagrad
and dense Adam (`benchmarks.mf_bench.JaxMF`, batch 1,024, dim 32) and the hand-written DANN
step of the first-layer micro-benchmark (`benchmarks.dann_bench.JaxDANN`, ELL bag, 256 + 256
users; not the registered `dann` method). Each compiled
program is timed without the profiler (best of `rounds`), then runs once more under
`jax.profiler`; the trace's events that are instructions of the optimized HLO (XLA:CPU
thunks, GPU kernels) are summed per step and grouped by what each op computes: scatter,
gather, dot, reduce, elementwise, copy, other (a fusion counts as the first of scatter,
gather, dot, reduce that it contains, so a gather fused with arithmetic counts as a gather).
"Wait" is time a worker spent waiting on the thread pool. Control flow (the scan's `while`)
is left out: it encloses the ops it runs. On a CPU the ops of one step run on several
threads, so the busy sum can exceed the wall time; an op that takes as long on one core
(`taskset -c 0`) as on all of them runs on one thread.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import pathlib
import re
import sys
import tempfile
import time

import jax

from transferjax.train.outputs import usable_cores

KINDS = ("gather", "scatter", "dot", "reduce", "elementwise", "copy", "wait", "other")
_ELEMENTWISE = {
    "add",
    "subtract",
    "multiply",
    "divide",
    "select",
    "maximum",
    "minimum",
    "exponential",
    "log",
    "sqrt",
    "rsqrt",
    "compare",
    "and",
    "or",
    "negate",
    "broadcast",
    "convert",
    "concatenate",
    "bitcast",
    "slice",
    "dynamic-slice",
    "dynamic-update-slice",
    "iota",
    "power",
    "tanh",
    "logistic",
    "abs",
    "pad",
    "reshape",
    "transpose",
    "clamp",
    "exponential-minus-one",
    "log-plus-one",
}
# Control flow encloses the ops it runs (when its thread blocks on them), so it is not summed.
_CONTROL = {"while", "conditional", "call"}


def op_kind(name: str, hlo: str) -> tuple[str, str]:
    """(kind, result shape) of the instruction `name` in the optimized HLO text `hlo`."""
    if "Await" in name:
        return "wait", ""
    m = re.search(r"^\s*(?:ROOT )?%" + re.escape(name) + r" = (.+?) ([a-z\-]+)\((.*)$", hlo, re.M)
    if not m:
        return "other", ""
    shape, opcode = m.group(1), m.group(2)
    if opcode == "fusion":
        callee = re.search(r"calls=%([\w.\-]+)", m.group(3))
        body = callee and re.search(
            r"^%" + re.escape(callee.group(1)) + r" .*?^}", hlo, re.M | re.S
        )
        inside = set(re.findall(r"= \S+ ([a-z\-]+)\(", body.group(0))) if body else set()
        opcode = next(
            (k for k in ("scatter", "gather", "dot", "reduce") if k in inside),
            "add" if inside & _ELEMENTWISE else "other",
        )
    if opcode in ("gather", "scatter", "copy", "reduce"):
        return opcode, shape
    if opcode in _CONTROL:
        return "control", shape
    if opcode in ("dot", "convolution", "custom-call"):
        return "dot", shape
    return ("elementwise" if opcode in _ELEMENTWISE else "other"), shape


def _op_events(trace_dir: str, hlo: str) -> list[tuple[str, float]]:
    """(op name, duration ns) of every event of the newest trace under `trace_dir` that is an
    instruction of `hlo` (on whichever thread ran it) or a thread-pool wait."""
    names = set(re.findall(r"^\s*(?:ROOT )?%(\S+) = ", hlo, re.M))
    files = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))
    data = jax.profiler.ProfileData.from_file(files[-1])
    return [
        (ev.name, ev.duration_ns)
        for plane in data.planes
        for line in plane.lines
        for ev in line.events
        if ev.name in names or "Await" in ev.name
    ]


def profile(variant, *, steps_per_run: int, rounds: int = 5, top: int = 8) -> dict:
    """Wall time per step, ops per step and time per op kind of `variant` (set up here)."""
    variant.setup()
    variant.run()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        variant.run()
        best = min(best, time.perf_counter() - t0)
    hlo = variant.compiled.as_text()
    with tempfile.TemporaryDirectory(prefix="op-profile-") as d:
        jax.profiler.start_trace(d)
        variant.run()
        jax.profiler.stop_trace()
        events = _op_events(d, hlo)
    per_op, count = collections.Counter(), collections.Counter()
    for name, ns in events:
        per_op[name] += ns / 1e3 / steps_per_run
        count[name] += 1
    kinds = {name: op_kind(name, hlo) for name in per_op}
    for name in [n for n, k in kinds.items() if k[0] == "control"]:
        del per_op[name], kinds[name]
    by_kind = dict.fromkeys(KINDS, 0.0)
    for name, us in per_op.items():
        by_kind[kinds[name][0]] += us
    return {
        "wall_us_per_step": best / steps_per_run * 1e6,
        "ops_per_step": sum(count[n] for n in per_op if kinds[n][0] != "wait") / steps_per_run,
        "busy_us_per_step": sum(us for n, us in per_op.items() if kinds[n][0] != "wait"),
        "us_by_kind": by_kind,
        "top_ops": [
            {"op": n, "kind": kinds[n][0], "shape": kinds[n][1], "us_per_step": us}
            for n, us in per_op.most_common(top)
        ],
    }


def to_markdown(res: dict) -> str:
    """The tables of `main`'s results."""
    lines = [
        f"# Op profile (`{res.get('command', 'python -m benchmarks.op_profile')}`)",
        "",
        f"{res['backend']} ({res['cpus']} cores, load {res['loadavg_1min']:.2f}), "
        f"JAX {res['jax']}. Microseconds per step.",
        "",
        "| case | wall | ops/step | busy | " + " | ".join(KINDS) + " |",
        "|---" * (4 + len(KINDS)) + "|",
    ]
    for case, r in res["cases"].items():
        k = r["us_by_kind"]
        lines.append(
            f"| {case} | {r['wall_us_per_step']:.0f} | {r['ops_per_step']:.0f} | "
            f"{r['busy_us_per_step']:.0f} | " + " | ".join(f"{k[x]:.0f}" for x in KINDS) + " |"
        )
    for case, r in res["cases"].items():
        lines += [
            "",
            f"## {case}: largest ops",
            "",
            "| op | kind | shape | us/step |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {o['op']} | {o['kind']} | `{o['shape']}` | {o['us_per_step']:.1f} |"
            for o in r["top_ops"]
        ]
    return "\n".join(lines) + "\n"


CASES = ("mf_sparse", "mf_sparse_adagrad", "mf_dense", "dann_bag")


def main(argv: list[str] | None = None) -> dict:
    import argparse

    from benchmarks import dann_bench as D
    from benchmarks import mf_bench as M

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.op_profile", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parent / "results" / "op_profile.json",
        help="JSON path; the markdown goes beside it (.md)",
    )
    ap.add_argument("--top", type=int, default=8, help="largest ops listed per case")
    ap.add_argument(
        "--item-blocks",
        type=int,
        default=D.ITEM_BLOCKS,
        help="dann_bag: item ranges of the ELL forward layout (benchmarks.ell)",
    )
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    inter = M.load_ml1m()
    train, valid = M.random_split(inter)
    mf_steps = -(-len(train) // M.BATCH)
    make = {
        "mf_sparse": lambda: (M.JaxMF(train, valid, sparse=True), mf_steps),
        "mf_sparse_adagrad": lambda: (
            M.JaxMF(train, valid, sparse=True, optimizer="adagrad"),
            mf_steps,
        ),
        "mf_dense": lambda: (M.JaxMF(train, valid, sparse=False), mf_steps),
        "dann_bag": lambda: (
            D.JaxDANN(
                D.make_pool(inter, n_pool=4, item_blocks=args.item_blocks), form="bag", steps=20
            ),
            20,
        ),
    }
    cases = {}
    for name in args.cases:
        variant, steps = make[name]()
        cases[name] = profile(variant, steps_per_run=steps, top=args.top)
    res = {
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "cpus": usable_cores(),
        "loadavg_1min": os.getloadavg()[0],
        "command": " ".join(["python -m benchmarks.op_profile", *argv]),
        "cases": cases,
    }
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    md = to_markdown(res)
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    return res


if __name__ == "__main__":
    main()
