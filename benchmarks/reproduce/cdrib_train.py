"""CDRIB's official code trained on the released Game <-> Video split, against our `cdrib`.

    python -m benchmarks.reproduce.cdrib_train --source DIR          # 1 seed, 100 epochs
    python -m benchmarks.reproduce.cdrib_train --epochs 4            # a reduced budget
    python -m benchmarks.reproduce.cdrib_train --epochs 1 --targets game --no-report  # smoke
    python -m benchmarks.reproduce.cdrib_train --only official   # one side (another process: ours)

Steps: clone cjx96/CDRIB at `cdrib_eval.OFFICIAL` into `--scratch` (default
`runs/reproduce/cdrib_train`, git-ignored); check that the checkout's released split files are
the bytes our loader reads and copy them to `scratch`/dataset/ (where the official loader looks,
`../dataset/<folder>/` from its working folder); build our two tasks of
`experiments/cdrib_video_game.py` (protocol `published`: the released cold valid and test users,
999 negatives per row fixed by protocol seed 0) and write their valid and test candidate lists
(positive first, then its negatives; file ids, which are ours) to `candidates.npz`. Per seed,
the official training runs through `benchmarks/reproduce/cdrib_driver.py` (its `train_rec.py`
loop and defaults, `--dataset game_video`, one torch thread unless `--threads`): one run
trains both domains and scores both tasks' candidates after every epoch (Game, the script's
"source" side, is the Video -> Game task; Video, its "target" side, Game -> Video). Ours trains
`cdrib` once per task with the quality suite's settings (the official batch 1024 and Adam at
1e-3) for the same epochs. Both sides select on valid NDCG@10 of our candidates (the first
best). The section `reproduce-cdrib-train` of `--report` (default BENCHMARKS.md) gives both
sides' test metrics at the valid-selected epoch, the official script's own number where its
run reached its first evaluation (epoch 10; then every 5 epochs it ranks its valid rows against
negatives it draws at load time, and prints test at the best valid MRR), wall time to the
selected epoch and training time per epoch (both sides pass over every training row of both
domains once an epoch, in batches of 1024). Finished runs are reused.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import time

import numpy as np

from benchmarks.reproduce import common as K
from benchmarks.reproduce import disencdr as D
from benchmarks.reproduce.cdrib_eval import EXPERIMENT, OFFICIAL, TASKS, check_files

DRIVER = "benchmarks.reproduce.cdrib_driver"
METRICS = D.METRICS
SELECT = D.SELECT
SIDE = {t: "source" if v["choose"] else "target" for t, v in TASKS.items()}  # its side of a task
FULL_EPOCHS = 100  # train_rec.py's --num_epoch


def our_config(target: str, *, epochs: int):
    """The quality suite's `cdrib` on one direction of Game <-> Video, trained `epochs` epochs."""
    from benchmarks import quality as Q
    from transferjax import config as C

    cfg = C.load(str(K.EXPERIMENTS / EXPERIMENT))
    sets = [f"data.target={target}", "method=cdrib", "eval.ks=1,5,10", *Q.METHOD_SETTINGS["cdrib"]]
    sets += [f"trainer.epochs={epochs}", "eval.curves=all"]  # test curves beside theirs
    return C.apply_overrides(cfg, sets)


def file_ids(split) -> None:
    """Our user and item indices must be the files' ids (the official code reads the files)."""
    for dom in (split.data.source, split.data.target):
        for kind, ids, n in (
            ("user", dom.user_ids, dom.n_users),
            ("item", dom.item_ids, dom.n_items),
        ):
            if ids is not None and not np.array_equal(
                np.asarray(ids).astype(np.int64), np.arange(n)
            ):
                raise ValueError(f"{dom.name}: {kind} indices are not the file's ids")


def prepare(scratch: pathlib.Path, *, epochs: int, targets, source=None) -> tuple:
    """({target: (our config, our split)} of `targets`, the official checkout, the checked file
    names): the released files copied into `scratch`/dataset and both tasks' candidates written
    (whatever `targets`: the official run scores both)."""
    from transferjax.data.registry import _root, build_dataset, build_split

    src = K.fetch(OFFICIAL, scratch / "official-src", source=source)
    ours, cand = {}, {}
    for target in TASKS:
        cfg = our_config(target, epochs=epochs)
        split = build_split(cfg.protocol, build_dataset(cfg.data))
        file_ids(split)
        if target in targets:
            ours[target] = (cfg, split)
        for part in ("valid", "test"):
            c = D.candidates(getattr(split, part))
            cand[f"{SIDE[target]}_{part}_user"] = c["user"]
            cand[f"{SIDE[target]}_{part}_items"] = c["items"]
    root = _root(cfg.data.path, "cdrib_game_video")
    files = check_files(src, root)
    for t in TASKS.values():
        folder = scratch / "dataset" / t["folder"]
        folder.mkdir(parents=True, exist_ok=True)
        for part in ("train", "valid", "test"):
            if not (folder / f"{part}.txt").exists():
                shutil.copyfile(root / t["folder"] / f"{part}.txt", folder / f"{part}.txt")
            if K.sha256(folder / f"{part}.txt") != K.sha256(root / t["folder"] / f"{part}.txt"):
                raise RuntimeError(f"{folder / part}.txt is not the released file")
    path = scratch / "candidates.npz"
    old = {}
    if path.exists():
        with np.load(path) as z:  # closed before it may be replaced
            old = {k: z[k] for k in z}
    if set(old) != set(cand) or any(not np.array_equal(old[k], v) for k, v in cand.items()):
        np.savez(scratch / "candidates.tmp.npz", **cand)  # never half-written under a reader
        (scratch / "candidates.tmp.npz").replace(path)
    return ours, src, files


def run_official(src, scratch, *, seed: int, epochs: int, threads: int, echo=print) -> dict:
    """One official run (cached in `scratch`/official/seed{S}-e{E}.json once finished)."""
    out = scratch / "official" / f"seed{seed}-e{epochs}.json"
    done = K.load_json(out)
    if done is not None and len(done["epochs"]) == epochs:
        return done
    echo(f"official CDRIB seed {seed}, {epochs} epochs")
    extra = ["--dataset", "game_video", "--epochs", str(epochs)]
    extra += ["--candidates", str(scratch / "candidates.npz")]
    return D.run_driver(
        src, scratch, out, seed=seed, threads=threads, extra=extra, code="CDRIB", driver=DRIVER
    )


def step_flops(src, scratch, ours: dict) -> dict:
    """{"official": its product FLOPs of one training step (`cdrib_driver --count-flops`),
    target: the products of one step of our epoch program, `method_steps.step_flops`}
    (cached in `scratch`/flops-products.json)."""
    import json
    import subprocess

    from benchmarks.method_steps import step_flops

    path = scratch / "flops-products.json"
    got = K.load_json(path) or {}
    if "official" not in got:
        extra = ["--dataset", "game_video", "--count-flops"]
        cmd, env, work = D.driver_call(
            src, scratch, seed=0, threads=1, extra=extra, code="CDRIB", driver=DRIVER
        )
        out = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=True)
        got["official"] = json.loads(out.stdout.strip().splitlines()[-1])
    for target, (cfg, split) in ours.items():
        if target not in got:
            got[target] = step_flops(cfg, split, step0=10**6)  # past the warm-up
    K.save_json(path, got)
    return got


def summarize_official(log: dict, target: str) -> dict:
    """One task of an official run: test at the valid-selected epoch (the first best), the
    script's own number for that side (its test at its best valid MRR), times."""
    side = SIDE[target]
    eps = log["epochs"]
    best = max(range(len(eps)), key=lambda i: (eps[i][side]["valid"][SELECT], -i))
    own = [e["own"][side]["test"] for e in eps if "test" in e.get("own", {}).get(side, {})]
    return {
        "selected_epoch": eps[best]["epoch"],
        "test": eps[best][side]["test"],
        "own_best": own[-1]["ndcg@10"] if own else None,  # its last printed "best" test
        "wall_to_selected_s": eps[best]["t"],
        "train_s_per_epoch": float(np.median([e["train_s"] for e in eps])),
        "wall_s": eps[-1]["t"],
    }


def curve(ours: list, official: list, target: str) -> list[str]:
    """Valid and test NDCG@10 after every epoch of ours, each side's mean over seeds ('-' where
    no official run logged that epoch)."""
    side = SIDE[target]
    lines = ["| epoch | ours valid | ours test | official valid | official test |"]
    lines.append("|---:|---:|---:|---:|---:|")
    for k in range(min(len(r["history"]) for r in ours)):
        mine = [r["history"][k] for r in ours]
        epoch = mine[0]["epoch"]
        theirs = [e[side] for o in official for e in o["epochs"] if e["epoch"] == epoch]
        cells = [f"{np.mean([h[p][SELECT] for h in mine]):.4f}" for p in ("valid", "test")]
        cells += [
            f"{np.mean([h[p][SELECT] for h in theirs]):.4f}" if theirs else "-"
            for p in ("valid", "test")
        ]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return lines


def flops_line(flops: dict, target: str, so: list, oo: list) -> str:
    """One task's FLOPs per step and the rate each side reached in its training time."""
    off, steps = flops["official"], flops["official"]["steps_per_epoch"]
    total = off["dense"] + off["sparse"]
    rate = lambda s, f: f * steps / np.mean([x["train_s_per_epoch"] for x in s]) / 1e9  # noqa: E731
    return (
        f"One training step: official {total / 1e9:.1f} GFLOP in its matrix products (torch "
        f"`mm`/`addmm`, forward and backward: {off['dense'] / 1e9:.1f} dense, "
        f"{off['sparse'] / 1e9:.2f} sparse by nonzeros), ours {flops[target] / 1e9:.1f} GFLOP "
        "in its dense and sparse products, counted the same way (`benchmarks.method_steps."
        "step_flops`). Over the training times "
        f"above ({steps} steps an epoch on both sides), official {rate(oo, total):.0f} GFLOP/s, "
        f"ours {rate(so, flops[target]):.0f} GFLOP/s."
    )


def write_section(report, *, ours, official, epochs, threads, seeds, files, flops, total_s, cmd):
    """The section `reproduce-cdrib-train` of `report`; `ours`: {target: [run per seed]}."""
    budget = (
        "the official budget"
        if epochs == FULL_EPOCHS
        else f"a reduced budget; official: {FULL_EPOCHS}"
    )
    if epochs < 10:
        budget += "; the script evaluates itself from epoch 10, so it has no own number here"
    cfg = our_config(next(iter(ours)), epochs=epochs)
    lines = [
        f"## Reproduction: CDRIB's official training on Game <-> Video (generated by `{cmd}`)",
        "",
        f"Official code: [{OFFICIAL.url}]({OFFICIAL.url}) at `{OFFICIAL.commit}`, its "
        "`train_rec.py` loop, defaults and modules run by `benchmarks/reproduce/cdrib_driver.py` "
        f"(torch {D._torch_version()}, {threads} thread(s); the one run-time patch: `Tensor.cuda` "
        f"returns the tensor), `--dataset game_video`, on its released split files "
        f"({', '.join(files)}: byte-identical to the ones our loader reads). One official run "
        "trains both domains; ours trains `cdrib` once per task "
        f"(`{' '.join(D.cfg_sets(cfg))}`). {epochs} epochs ({budget}), batch 1024, Adam at 1e-3 "
        "with weight decay 5e-4, dim 128, 3 layers, dropout 0.3, beta 1.5, margin 0.3 on both "
        "sides. Both score every epoch's eval-mode model on our candidates (protocol `published`: "
        "the released cold valid and test users, 999 negatives per row fixed by protocol seed 0) "
        f"and select on valid {SELECT.upper()} (the first best).",
    ]
    for target, runs in ours.items():
        name = TASKS[target]["name"]
        so = [D.summarize_ours(r) for r in runs]
        oo = [summarize_official(r, target) for r in official]
        rows = D.test_rows(so, oo) + [
            {
                "label": "official script's own number: test NDCG@10 at its best valid MRR "
                "(every 5 epochs from epoch 10, its own negatives)",
                "official": [o["own_best"] for o in oo],
            },
            K.side_row("selected epoch", "selected_epoch", so, oo),
            K.side_row(
                "training s per epoch (median; ours: mean, compile excluded)",
                "train_s_per_epoch",
                so,
                oo,
                digits=1,
            ),
            K.side_row("wall s to the selected epoch", "wall_to_selected_s", so, oo),
            K.side_row("wall s, whole run", "wall_s", so, oo),
        ]
        per_epoch = K.mean_ratio(oo, so, "train_s_per_epoch")
        to_sel = K.mean_ratio(oo, so, "wall_to_selected_s")
        lines += [
            "",
            f"### {name} (target {target}; the script's {SIDE[target]} side)",
            "",
            K.comparison_table(rows, columns={"ours": "ours", "official": "CDRIB official"}),
            "",
            f"Ratios, official / ours: training time per epoch (the same rows, model and batch, "
            f"so per training example) {per_epoch:.2f}x; wall time to the selected epoch "
            f"{to_sel:.2f}x (the official run's wall time covers both tasks, ours one). "
            + flops_line(flops, target, so, oo),
            "",
            *curve(runs, official, target),
        ]
    lines += [
        "",
        f"Seeds: {', '.join(map(str, seeds))} (official: its `--seed`, which also draws its own "
        "valid and test negatives; ours `jax.random.key(S)`). Mean ± std over seeds.",
        f"Machine: {K.machine()}; every run was pinned to one core while other work ran on "
        "the other (the other side's run, or other jobs), so its times carry that load. This "
        f"invocation {total_s:.0f} s (finished runs are reused).",
    ]
    return K.put_reproduce_section(report, "cdrib-train", "\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    p = K.harness_parser("cdrib_train", __doc__, scratch="runs/reproduce/cdrib_train")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1 on both sides")
    p.add_argument("--epochs", type=int, default=FULL_EPOCHS, help="epochs on both sides")
    p.add_argument("--targets", default="game,video", help="our tasks' target domains")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the official runs")
    p.add_argument(
        "--only",
        choices=("official", "ours"),
        help="run one side's seeds and write no report (a later call reuses both sides' runs)",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    scratch = pathlib.Path(args.scratch or "runs/reproduce/cdrib_train").resolve()
    seeds, targets = list(range(args.seeds)), args.targets.split(",")
    if unknown := set(targets) - set(SIDE):
        raise SystemExit(f"--targets: unknown {sorted(unknown)} (choose from {sorted(SIDE)})")
    ours_cfg, src, files = prepare(scratch, epochs=args.epochs, targets=targets, source=args.source)
    if args.only != "ours":
        official = [
            run_official(src, scratch, seed=s, epochs=args.epochs, threads=args.threads)
            for s in seeds
        ]
    if args.only != "official":
        ours = {
            t: [
                K.run_ours(cfg, split, scratch / "ours" / f"{t}-seed{s}.json", seed=s)
                for s in seeds
            ]
            for t, (cfg, split) in ours_cfg.items()
        }
    if args.only:
        return 0
    for t in targets:
        for s, o, r in zip(seeds, ours[t], official):
            a, b = D.summarize_ours(o), summarize_official(r, t)
            print(
                f"{t} seed {s}: ours test ndcg@10 {a['test'][SELECT]:.4f} (epoch "
                f"{a['selected_epoch']}) | official {b['test'][SELECT]:.4f} (epoch "
                f"{b['selected_epoch']})"
            )
    if not args.no_report:
        flops = step_flops(src, scratch, ours_cfg)
        cmd = "python -m benchmarks.reproduce.cdrib_train"
        cmd += f" --seeds {args.seeds}" if args.seeds != 1 else ""
        cmd += f" --epochs {args.epochs}" if args.epochs != FULL_EPOCHS else ""
        cmd += f" --targets {args.targets}" if args.targets != "game,video" else ""
        path = write_section(
            args.report or "BENCHMARKS.md",
            ours=ours,
            official=official,
            epochs=args.epochs,
            threads=args.threads,
            seeds=seeds,
            files=files,
            flops=flops,
            total_s=time.perf_counter() - t0,
            cmd=cmd,
        )
        print(f"wrote section reproduce-cdrib-train of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
