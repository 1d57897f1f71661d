"""One training epoch of RecBole-CDR's CoNet, DTCDR and BiTGCF against our registered `conet`,
`dtcdr` and `bitgcf`, on the ML-1M -> ML-100k sample setting, with the same batch, on one core.

    python -m benchmarks.reproduce.recbole_epoch_time                       # all three, 4 epochs
    python -m benchmarks.reproduce.recbole_epoch_time --models conet --epochs 3 --source DIR

This process pins itself to one core (`--cpu`, default the first it may use) before JAX
starts; RecBole-CDR runs in a child interpreter on that core with 1 thread (the environment of
`benchmarks.reproduce.recbole_cdr`, its clone and virtual environment in `--scratch`). Per
model, one side after the other:
- official: `run_recbole_cdr.py --model=M` with its own settings and `train_epochs:
  ["BOTH:N"]` (`--epochs`), its log's per-epoch training time (RecBole's `training [time: ..]`:
  the epoch's batches with their negative sampling, forward, backward and Adam; not the
  evaluation);
- ours: N epochs of the method's compiled epoch program on the same split with the settings the
  reproduction copies from theirs (`recbole_cdr.our_config`; `benchmarks.method_steps.
  MethodSteps` over every training row of the target: the batch gather, the negative
  sampling, the loss, gradient and Adam), each timed to the end of its program.
The first epoch of each side (data-loader start, compile) is not counted; per side the median of
the rest. An epoch is one pass of the target's training rows in batches of the same number of
positives on both sides, so the ratio official / ours is the ratio per training example.
Beside the times: one step's FLOPs (the dense and sparse products of ours' one-step program,
`method_steps.step_flops`; both sides compute the same model), each side's FLOP rate, and this
core's float32 matrix-product rate measured in the same run (`common.gemm_rate`), the ceiling
of a step made of matrix products.
Writes the section `reproduce-recbole-epoch-time` of `--report` (default BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

from benchmarks.reproduce import common as K
from benchmarks.reproduce import recbole_cdr as R

TIMED = ("conet", "dtcdr", "bitgcf")


def official_epochs(python, src, scratch, model: str, epochs: int) -> list[float]:
    """Training seconds of each epoch of one fresh official run of `epochs` epochs."""
    extra = f'train_epochs: ["BOTH:{epochs}"]'
    folder = scratch / "epoch-time"
    for old in (folder / "official").glob(f"{model}{R.official_tag(extra)}-seed0.*"):
        old.unlink()  # a timing is never reused
    log = R.run_official(python, src, folder, model, 0, extra=extra)
    return [e["train_s"] for ph in log["phases"] for e in ph["epochs"]]


def our_epochs(cfg, split, epochs: int) -> tuple[list[float], int, float, float]:
    """(seconds of each of `epochs` epochs, steps per epoch, compile s, FLOPs of one step) of
    `cfg.method`'s epoch program over all of its stage's examples."""
    from benchmarks.method_steps import MethodSteps, step_flops

    ours = MethodSteps(cfg, split, steps=None)
    ours.setup()
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        ours.run()
        times.append(time.perf_counter() - t)
    return times, ours.steps, ours.compile_s, step_flops(cfg, split)


def measure(python, src, scratch, methods, *, epochs: int, echo=print) -> dict:
    """{method: {"official": [s per epoch], "ours": [...], "steps", "compile_s", "batch"}}."""
    from transferjax.data.registry import build_dataset, build_split

    out, split = {}, None
    for m in methods:
        theirs = R.their_config(src, R.MODELS[m])
        cfg = R.our_config(m, theirs=theirs)[0]
        if split is None:
            split = build_split(cfg.protocol, build_dataset(cfg.data))
        echo(f"official {R.MODELS[m]}: {epochs} epochs")
        off = official_epochs(python, src, scratch, R.MODELS[m], epochs)
        echo(f"ours {m}: {epochs} epochs")
        mine, steps, compile_s, flops = our_epochs(cfg, split, epochs)
        out[m] = {
            "official": off,
            "ours": mine,
            "steps": steps,
            "compile_s": compile_s,
            "batch": cfg.trainer.batch_size,
            "step_flops": flops,
        }
        o, s = medians(out[m])
        echo(f"{m}: official {o:.2f} s/epoch, ours {s:.2f} s/epoch, {o / s:.2f}x")
    return out


def medians(res: dict) -> tuple[float, float]:
    """(official, ours) median seconds per epoch, the first epoch of each left out."""
    return float(np.median(res["official"][1:])), float(np.median(res["ours"][1:]))


def write_section(
    report, *, res: dict, epochs: int, cpu: int, cmd: str, gemm: float | None = None
) -> pathlib.Path:
    table = [
        "| model | official s / epoch | ours s / epoch | official / ours | steps / epoch "
        "| GFLOP / step | official GFLOP/s | ours GFLOP/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, r in res.items():
        o, s = medians(r)
        g = r.get("step_flops")
        rates = (
            ["-"] * 3
            if g is None
            else [f"{x:.1f}" for x in (g / 1e9, *(g * r["steps"] / 1e9 / t for t in (o, s)))]
        )
        table.append(
            f"| {R.MODELS[m]} | {o:.2f} | {s:.2f} | **{o / s:.2f}x** | {r['steps']} | "
            + " | ".join(rates)
            + " |"
        )
    compiles = ", ".join(f"{m} {r['compile_s']:.1f} s" for m, r in res.items())
    lines = [
        f"## Reproduction: one training epoch, RecBole-CDR against ours (generated by `{cmd}`)",
        "",
        f"RecBole-CDR ([{R.OFFICIAL.url}]({R.OFFICIAL.url}) at `{R.OFFICIAL.commit}`) with its "
        f'own settings on its ML-1M -> ML-100k sample setting (the section "{R.SECTION_TITLE}"), '
        "against ours "
        "with the settings the reproduction copies from theirs: the same model, the same "
        "batch (1,024 positives and one sampled negative each, both domains every step), Adam. "
        f"Both sides pinned to core {cpu}, RecBole-CDR at 1 thread, one after the other; "
        f"{epochs} epochs each, the first left out, the median of the rest. Theirs: its log's "
        "training time per epoch (batches with negative sampling, forward, backward, Adam; "
        "not the evaluation); ours: the method's compiled epoch program (batch gather, "
        f"negative sampling, loss, gradient, Adam; compiled in {compiles}, not counted).",
        "",
        *table,
        "",
        "An epoch is one pass of the target's training rows with the same batch on both sides, "
        "so the ratio is also the ratio per training example. The wall time to the selected "
        "epoch, with evaluation and each side's own selected epoch, is in that section.",
        "",
        "FLOPs: the products of one training step of ours, forward and backward (2mnk per "
        "matrix product, 2 per nonzero and column of a sparse one, in the one-step program: "
        "`benchmarks.method_steps.step_flops`; not the other elementwise work; both sides compute "
        "the same model on the same batch), so each side's rate is those FLOPs times the "
        "steps over its epoch time."
        + (
            ""
            if gemm is None
            else f" This core's float32 matrix product (2048 x 2048 x 2048, the best of 5, "
            f"measured in the same run): {gemm:.0f} GFLOP/s; a step that is all matrix "
            f"products runs at most that fast, so official / ours is at most that rate over "
            f"the official side's."
        ),
        "",
        f"Machine: {K.machine()}; what ran on its other cores at the time is not controlled.",
    ]
    return K.put_reproduce_section(report, "recbole-epoch-time", "\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    p = K.harness_parser("recbole_epoch_time", __doc__, scratch="runs/reproduce/recbole_cdr")
    p.add_argument("--python", help="a python with RecBole-CDR's requirements (default: a venv)")
    p.add_argument("--models", default=",".join(TIMED), help="of: " + ", ".join(TIMED))
    p.add_argument("--epochs", type=int, default=4, help="epochs per side (the first not counted)")
    p.add_argument("--cpu", type=int, help="the core both sides run on")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    methods = [m.strip() for m in args.models.split(",") if m.strip()]
    if not methods or set(methods) - set(TIMED):
        raise SystemExit(f"--models {args.models!r}: choose from {', '.join(TIMED)}")
    if args.epochs < 2:
        raise SystemExit("--epochs: at least 2 (the first is not counted)")
    cpu = K.pin_core(args.cpu)  # before JAX starts its threads
    scratch = pathlib.Path(args.scratch or "runs/reproduce/recbole_cdr").resolve()
    src = K.fetch(R.OFFICIAL, scratch / "src", source=args.source, keep=R.OUTPUTS)
    R.prepare_official(src)
    python = args.python or K.ensure_venv(scratch / "venv", R.REQUIREMENTS, no_deps=R.NO_DEPS)
    res = measure(python, src, scratch, methods, epochs=args.epochs)
    gemm = K.gemm_rate()
    K.save_json(scratch / "epoch_time.json", {**res, "_gemm_gflops": gemm})
    if not args.no_report:
        cmd = "python -m benchmarks.reproduce.recbole_epoch_time"
        cmd += f" --models {','.join(methods)}" if methods != list(TIMED) else ""
        cmd += f" --epochs {args.epochs}" if args.epochs != 4 else ""
        path = write_section(
            args.report or "BENCHMARKS.md", res=res, epochs=args.epochs, cpu=cpu, cmd=cmd, gemm=gemm
        )
        print(f"wrote section reproduce-recbole-epoch-time of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
