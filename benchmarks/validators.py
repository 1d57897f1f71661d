"""Model selection without cold-valid labels: each validator's choice against the oracle's.

For each task (`--tasks`: the quality suite's synthetic shift tasks at 0 and 90 degrees and
Douban Book -> Music) and transfer method (`--methods`), one `transferjax sweep` over a small
grid of a traced hyperparameter (`GRIDS`, one vmapped program) runs with
`eval.validators=all`, so every evaluated epoch of every grid point records its cold-valid and
cold-test metrics and every validator (`transferjax.diagnostics.selection`). A configuration
is a (method, grid value, epoch); each task pools its methods' configurations. A selection rule
chooses the configuration with the best value: the validator in its direction, the cold-valid
metric (which reads the cold-valid labels: the reference), the oracle's test metric (the
bound). Choosing the best over every epoch of every point is what `eval.select=unsup/<name>`
in that sweep would choose (the best epoch per point, then the best point).

Reported per (rule, task): the regret, the chosen configuration's test metric minus the
oracle's (>= 0), and minus the cold-valid choice's (> 0: worse than selecting with labels);
and Spearman's rho between the rule's value and the test metric over the configurations, both
oriented so that +1 is a perfect ranking (the configurations are epochs of a few runs, not
independent draws, so no p-value). "random" is a uniformly random configuration's expected
regret. The validators `source_risk` and `dev` hold out a share of the warm users from
training (`validators.holdout`), so every rule here, cold-valid included, chooses among
models trained without them.

    python -m benchmarks.validators            # writes the section validators of BENCHMARKS.md
    python -m benchmarks.validators --quick    # quick epochs, emcdr on the synthetic tasks
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

from benchmarks import quality as Q
from benchmarks.gain_cells import spearman
from benchmarks.sections import OTHER_SECTIONS, put_section
from transferjax import config as C
from transferjax.diagnostics.validators import NAMES, metric_name
from transferjax.train.result import lower_is_better

SECTION = OTHER_SECTIONS[1]
TASKS = ("synthetic_shift0", "synthetic_shift90", "douban_book_music")
METHODS = ("emcdr", "cmf", "dann")
# A traced hyperparameter per method (one compiled program per sweep).
GRIDS = {
    "emcdr": "trainer.lr=1e-3,1e-2,1e-1",
    "cmf": "cmf.source_weight=0.2,0.5,0.8",
    "dann": "align.weight=0.01,0.1,1.0",
    "ptupcdr": "trainer.lr=1e-4,1e-3,1e-2",
    "phi": "phi.source_weight=0.2,0.5,0.8",
}
RULES = ("cold-valid", *(metric_name(n) for n in NAMES))


def task_of(name: str) -> Q.Task:
    """The quality suite's task of that name (its experiment and overrides)."""
    for t in Q.suite(quick=False):
        if t.name == name:
            return t
    raise SystemExit(f"unknown task {name!r}; e.g. {', '.join(TASKS)}")


def base_config(task: Q.Task, method: str, *, quick: bool, extra=()) -> C.RunConfig:
    """The sweep's base config: the quality suite's cell with validators on, one seed, no
    checkpoints (`--quick`: the experiment's quick settings)."""
    cfg = Q.task_config(task, method, seeds=1)
    if quick:
        cfg = C.load(str(Q.EXPERIMENTS / task.experiment), quick=True)
        cfg = C.apply_overrides(
            cfg, [f"method={method}", f"name={task.name}", "seeds=1", *task.overrides]
        )
        cfg = C.apply_overrides(cfg, list(Q.METHOD_SETTINGS.get(method, ())))
    # every epoch's test metrics: what each selection rule's chosen epoch gives
    sets = ["eval.validators=all", "eval.curves=all", "trainer.checkpoint_every=0", *extra]
    return C.apply_overrides(cfg, sets)


def run_sweep(cfg, grid: str, folder: pathlib.Path, echo=print) -> None:
    """Runs the sweep into `folder` unless it holds a finished one of the same configs."""
    from transferjax.train.sweep import parse_space, points, sweep

    pts = points(parse_space(cfg, [grid]))
    done = (folder / "sweep.json").exists() and all(
        (folder / f"point-{i:03d}" / "metrics.json").exists()
        and C.same_config(
            json.loads((folder / f"point-{i:03d}" / "config.json").read_text()),
            C.apply_overrides(cfg, [f"{k}={v}" for k, v in p.items()]),
        )
        for i, p in enumerate(pts)
    )
    if done:
        return
    echo(f"== {folder}")
    sweep(cfg, grids=[grid], out_dir=folder, echo=lambda *_: None)


def configurations(folder: pathlib.Path, method: str) -> list[dict]:
    """Every evaluated epoch of every point of a sweep folder: {method, point, epoch, valid,
    test}."""
    out = []
    for p in json.loads((folder / "sweep.json").read_text())["points"]:
        if p["status"] != "ok":
            continue
        m = json.loads((folder / p["folder"] / "metrics.json").read_text())
        for h in m["history"]:
            out.append(
                {
                    "method": method,
                    "point": p["values"],
                    "epoch": h["epoch"],
                    "valid": h["valid"],
                    "test": h["test"],
                }
            )
    return out


def score(configs: list[dict], metric: str) -> dict:
    """{rule: {regret, vs_valid, rho, chosen}} over one task's configurations; `metric` is the
    test metric (the cold-valid selection metric)."""
    low = lower_is_better(metric)
    test = np.array([c["test"][metric] for c in configs])
    good = -test if low else test  # higher is better
    oracle = float(good.max())
    out = {}
    for rule in ("oracle", *RULES):
        key = metric if rule == "cold-valid" else rule
        if rule == "oracle":
            vals = good
        else:
            if any(key not in c["valid"] for c in configs):
                continue
            v = np.array([c["valid"][key] for c in configs], np.float64)
            vals = -v if lower_is_better(key) else v
        vals = np.where(np.isfinite(vals), vals, -np.inf)
        i = int(np.argmax(vals))  # first on ties, as select_best
        out[rule] = {
            "regret": oracle - float(good[i]),
            "chosen": i,
            "rho": spearman(vals, good)[0] if rule != "oracle" else 1.0,
        }
    for r in out.values():
        r["vs_valid"] = r["regret"] - out["cold-valid"]["regret"]
    out["random"] = {
        "regret": float(np.mean(oracle - good)),
        "vs_valid": float(np.mean(oracle - good)) - out["cold-valid"]["regret"],
        "rho": math.nan,
        "chosen": None,
    }
    return out


def collect(tasks, methods, *, runs, quick: bool, extra=(), echo=print) -> dict:
    """{task: {"metric", "configs", "scores", "wall"}} after running (or reusing) the sweeps
    (wall: the seconds its sweeps took when they ran)."""
    got = {}
    for name in tasks:
        task = task_of(name)
        configs, metric, wall = [], None, 0.0
        for m in methods:
            cfg = base_config(task, m, quick=quick, extra=extra)
            folder = pathlib.Path(runs) / name / m
            run_sweep(cfg, GRIDS[m], folder, echo=echo)
            configs += configurations(folder, m)
            wall += json.loads((folder / "sweep.json").read_text())["wall_s"]
            metric = json.loads((folder / "point-000" / "metrics.json").read_text())[
                "select_metric"
            ]
        got[name] = {
            "metric": metric,
            "configs": configs,
            "scores": score(configs, metric),
            "wall": wall,
        }
    return got


def verdicts(got: dict) -> list[str]:
    """One sentence per validator, from the numbers: worth using where on every task it beats
    a random choice and its mean rho over the tasks is at least 0.3; else not."""
    lines = []
    for rule in RULES[1:]:
        per = [g["scores"][rule] for g in got.values() if rule in g["scores"]]
        if not per:
            continue
        rnd = [g["scores"]["random"]["regret"] for g in got.values() if rule in g["scores"]]
        beats = sum(p["regret"] < r for p, r in zip(per, rnd, strict=True))
        rho = float(np.nanmean([p["rho"] for p in per])) if per else math.nan
        vs = float(np.mean([p["vs_valid"] for p in per]))
        worth = beats == len(per) and rho >= 0.3
        risk = [g["scores"].get(RULES[1]) for g in got.values() if rule in g["scores"]]
        than = ""
        if rule != RULES[1] and all(risk):
            n = sum(p["regret"] <= r["regret"] for p, r in zip(per, risk, strict=True))
            than = f"; as good as `{RULES[1]}` on {n} of {len(per)} tasks"
        lines.append(
            f"- `{rule}`: **{'worth using' if worth else 'not worth using'} here**: beats a "
            f"random choice on {beats} of {len(per)} tasks, mean rho {rho:+.2f}, mean regret "
            f"{vs:+.4f} against the cold-valid choice{than}."
        )
    return lines


def markdown(got: dict, *, command: str, wall: float, methods) -> str:
    metric = next(iter(got.values()))["metric"]
    sweeps = sum(g["wall"] for g in got.values())
    lines = [
        f"Written by `{command}` (the sweeps' wall time, each measured when it ran: "
        f"{sweeps:.0f} s; this invocation {wall:.0f} s, finished sweeps reused). "
        f"Methods {', '.join(methods)}, one seed, each swept over "
        + "; ".join(f"`{GRIDS[m]}`" for m in methods)
        + f" with `eval.validators=all`; a configuration is (method, grid value, epoch). "
        f"Regret: the chosen configuration's test {metric} minus the oracle's (the best test "
        f"value among the configurations); vs cold-valid: minus the cold-valid choice's "
        f"(> 0: worse than selecting with the cold-valid labels). rho: Spearman's rank "
        f"correlation between the rule and the test {metric} over the configurations, "
        f"oriented so that +1 ranks them perfectly. random: a uniformly random "
        f"configuration's expected regret.",
        "",
        "| rule | " + " | ".join(f"{t}: regret | vs cold-valid | rho" for t in got) + " |",
        "|---|" + "---:|---:|---:|" * len(got),
    ]
    for rule in ("oracle", *RULES, "random"):
        cells = []
        for g in got.values():
            s = g["scores"].get(rule)
            if s is None:
                cells.append("- | - | -")
                continue
            rho = "-" if math.isnan(s["rho"]) else f"{s['rho']:+.3f}"
            cells.append(f"{s['regret']:.4f} | {s['vs_valid']:+.4f} | {rho}")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Configurations per task: "
        + ", ".join(f"{t} {len(g['configs'])}" for t, g in got.items())
        + ".",
        "",
        "**Verdicts** (worth using: beats a random choice on every task and mean rho >= 0.3):",
        "",
        *verdicts(got),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default=None, help=f"default {','.join(TASKS)}")
    p.add_argument("--methods", default=None, help=f"default {','.join(METHODS)}")
    p.add_argument("--quick", action="store_true", help="quick epochs, emcdr, synthetic tasks")
    p.add_argument("--runs", default=None, help="default runs/bench-validators[-quick]")
    p.add_argument("--set", action="append", default=[], help="override for every sweep")
    p.add_argument("--report", default=None, help="default BENCHMARKS.md (--quick: beside runs)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    tasks = (a.tasks or ",".join(TASKS[:2] if a.quick else TASKS)).split(",")
    methods = (a.methods or ("emcdr" if a.quick else ",".join(METHODS))).split(",")
    runs = pathlib.Path(a.runs or f"runs/bench-validators{'-quick' if a.quick else ''}")
    got = collect(tasks, methods, runs=runs, quick=a.quick, extra=a.set)
    cmd = "python -m benchmarks.validators" + (" --quick" if a.quick else "")
    cmd += "".join(f" {f} {v}" for f, v in (("--tasks", a.tasks), ("--methods", a.methods)) if v)
    cmd += "".join(f" --set {s}" for s in a.set)
    text = markdown(got, command=cmd, wall=time.perf_counter() - t0, methods=methods)
    report = a.report or (runs / "BENCHMARKS.md" if a.quick else "BENCHMARKS.md")
    put_section(report, SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
