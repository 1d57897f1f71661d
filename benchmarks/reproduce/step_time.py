"""One training step of DisenCDR: the official code's against our registered `disencdr`, on the
same data, batch and core, interleaved.

    python -m benchmarks.reproduce.step_time                    # 5 steps a round, 4 rounds
    python -m benchmarks.reproduce.step_time --source DIR --steps 3 --rounds 2

Both sides train on the split `benchmarks.reproduce.disencdr` exports (Sport -> Phone,
`released_loo`, protocol seed 0; written here when missing) with the official settings: batch
1,024, dim 128, 2 layers, dropout 0.3, Adam at 1e-3. This process pins itself to one core
(`--cpu`, default the first it may use) before JAX starts, and the official code runs in a
child interpreter on that core with 1 torch thread (`disencdr_driver.py --time-steps`). Each
round, one side after the other, never both at once:
- official: `--steps` consecutive `CrossTrainer.reconstruct_graph` calls (forward, loss,
  backward, Adam) at epoch 100, past its warm-up, over its own batches in loader order;
- ours: one epoch of `--steps` steps of the trainer's compiled epoch program
  (`benchmarks.method_steps.MethodSteps`: batch gather, the five encoders, loss, gradient,
  Adam), its step counter past the warm-up.
The first round of each side warms up and is not counted. Seconds per step: the median of the
official's timed steps; ours, the median over rounds of the epoch's time over `--steps`. The
batch is the same, so the ratio official / ours is also the ratio per training example. Then
each side's FLOPs of one step (the official's matrix products, counted by
`disencdr_driver.py --count-flops`; ours, those of its program, `method_steps.step_flops`) and
this core's float32 matrix product rate: our FLOPs at that rate bound our step, and so the
ratio, on this core. Writes the section `reproduce-step-time` of `--report` (default BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

from benchmarks.reproduce import common as K
from benchmarks.reproduce import disencdr as D


def _json_line(stream) -> dict:
    """The next line of `stream` that is a JSON object (the official code prints its own)."""
    for line in stream:
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("the official step timer ended early (see its log)")


class OfficialSteps:
    """The child interpreter of `disencdr_driver.py --time-steps`."""

    def __init__(self, src: pathlib.Path, scratch: pathlib.Path, *, steps: int, log):
        extra = ["--time-steps", str(steps)]
        cmd, env, work = D.driver_call(src, scratch, seed=0, threads=1, extra=extra)
        self.proc = subprocess.Popen(
            cmd,
            cwd=work,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        _json_line(self.proc.stdout)  # ready

    def run(self) -> list[float]:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return _json_line(self.proc.stdout)["steps_s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def official_flops(src, scratch) -> dict:
    """{"dense", "sparse"}: the official step's matrix-product FLOPs (`disencdr_driver.py
    --count-flops`, a step past the warm-up)."""
    cmd, env, work = D.driver_call(src, scratch, seed=0, threads=1, extra=["--count-flops"])
    out = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=True)
    return _json_line(reversed(out.stdout.splitlines()))  # its own line is the last


def measure(src, scratch, cfg, split, *, steps: int, rounds: int, echo=print) -> dict:
    """{"official": [s per step], "ours": [s per step per round], "compile_s", "flops":
    {"official": {"dense", "sparse"}, "ours": its products' count}, "gemm": GFLOP/s} over `rounds`
    counted rounds after one warm-up round."""
    from benchmarks.method_steps import MethodSteps, step_flops

    ours = MethodSteps(cfg, split, steps=steps, step0=10**6)
    ours.setup()
    with open(scratch / "step_time-official.log", "w", encoding="utf-8") as log:
        official = OfficialSteps(src, scratch, steps=steps, log=log)
        out = {"official": [], "ours": [], "compile_s": ours.compile_s}
        try:
            for r in range(rounds + 1):
                o = official.run()
                t = time.perf_counter()
                ours.run()
                mine = (time.perf_counter() - t) / steps
                echo(f"round {r}: official {np.median(o):.3f} s/step, ours {mine:.3f} s/step")
                if r:
                    out["official"] += o
                    out["ours"].append(mine)
        finally:
            official.close()
    out["flops"] = {
        "official": official_flops(src, scratch),
        "ours": step_flops(cfg, split, step0=10**6),
    }
    out["gemm"] = K.gemm_rate()
    return out


def medians(res: dict) -> tuple[float, float]:
    """(official, ours) median seconds per step of a `measure` result."""
    return float(np.median(res["official"])), float(np.median(res["ours"]))


def write_section(report, *, res: dict, steps: int, rounds: int, cpu: int, cmd: str, counts):
    off, ours = medians(res)
    flops = res.get("flops")
    gf = None
    if flops is not None:
        products = flops["official"]["dense"] + flops["official"]["sparse"]
        gf = {"official": products / 1e9, "ours": flops["ours"] / 1e9}
    rows = [
        ("official `reconstruct_graph`", "official", off, np.min(res["official"])),
        ("ours, `disencdr`'s epoch program", "ours", ours, np.min(res["ours"])),
    ]
    table = [
        "| one training step | median s | fastest s | timed | GFLOP / step | GFLOP/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, side, med, best in rows:
        rate = ["-", "-"] if gf is None else [f"{gf[side]:.1f}", f"{gf[side] / med:.1f}"]
        table.append(
            f"| {name} | {med:.3f} | {best:.3f} | {len(res[side])} | " + " | ".join(rate) + " |"
        )
    lines = [
        f"## Reproduction: one DisenCDR training step, official against ours (generated by "
        f"`{cmd}`)",
        "",
        f"Official code: [{D.OFFICIAL.url}]({D.OFFICIAL.url}) at `{D.OFFICIAL.commit}`; the "
        f"Sport -> Phone split of the section above ({counts['source_train']:,} + "
        f"{counts['target_train']:,} training rows), batch 1,024, dim 128, 2 layers, dropout 0.3, "
        "Adam at 1e-3, both past the warm-up. Both sides pinned to core "
        f"{cpu}, the official at 1 torch thread (torch {D._torch_version()}), in turns: "
        f"{rounds} rounds of {steps} steps each after one warm-up round (ours compiled in "
        f"{res['compile_s']:.1f} s, not counted).",
        "",
        *table,
        "",
        f"Ratio, official / ours, per step and so per training example (the same batch): "
        f"**{off / ours:.2f}x**.",
    ]
    if gf is not None:
        o = flops["official"]
        lines += [
            "",
            "FLOPs of one step (forward and backward): official, its matrix products as torch "
            f"runs them (dense {o['dense'] / 1e9:.1f} + sparse {o['sparse'] / 1e9:.1f} GFLOP, "
            "`disencdr_driver.py --count-flops`; it multiplies A (x W), so W meets the item "
            "side's rows); ours, the dense and sparse products of the one-step program, counted "
            "the same way (`benchmarks.method_steps.step_flops`; ours multiplies W on the "
            "side with fewer rows, `transferjax.models.vbge`). This "
            f"core's float32 matrix product (2048 x 2048 x 2048, the best of 5, measured in the "
            f"same run): {res['gemm']:.0f} GFLOP/s. No step of ours runs faster than its FLOPs "
            f"at that rate, {gf['ours'] / res['gemm']:.3f} s, so on this core official / ours "
            f"is at most {off * res['gemm'] / gf['ours']:.2f}x with these FLOPs.",
        ]
    lines += [
        "",
        f"Machine: {K.machine()}; what ran on its other cores at the time is not controlled.",
    ]
    return K.put_reproduce_section(report, "step-time", "\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    p = K.harness_parser("step_time", __doc__, scratch="runs/reproduce/disencdr")
    p.add_argument("--steps", type=int, default=5, help="steps per round and side")
    p.add_argument("--rounds", type=int, default=4, help="counted rounds (after one warm-up)")
    p.add_argument("--cpu", type=int, help="the core both sides run on")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cpu = K.pin_core(args.cpu)  # before JAX starts its threads
    scratch = pathlib.Path(args.scratch or "runs/reproduce/disencdr").resolve()
    cfg, split, src, counts = D.prepare(scratch, epochs=50, source=args.source)
    res = measure(src, scratch, cfg, split, steps=args.steps, rounds=args.rounds)
    K.save_json(scratch / "step_time.json", res)
    off, ours = medians(res)
    print(f"official {off:.3f} s/step, ours {ours:.3f} s/step: {off / ours:.2f}x")
    print(f"FLOPs: {res['flops']}, matrix product {res['gemm']:.0f} GFLOP/s")
    if not args.no_report:
        cmd = "python -m benchmarks.reproduce.step_time"
        cmd += f" --steps {args.steps}" if args.steps != 5 else ""
        cmd += f" --rounds {args.rounds}" if args.rounds != 4 else ""
        path = write_section(
            args.report or "BENCHMARKS.md",
            res=res,
            steps=args.steps,
            rounds=args.rounds,
            cpu=cpu,
            cmd=cmd,
            counts=counts,
        )
        print(f"wrote section reproduce-step-time of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
