"""UniCDR's official code trained on our Sport -> Phone split, against our `unicdr`.

    python -m benchmarks.reproduce.unicdr --source DIR                 # 3 seeds, 100 epochs
    python -m benchmarks.reproduce.unicdr --seeds 1 --epochs 10        # a reduced budget
    python -m benchmarks.reproduce.unicdr --epochs 1 --seeds 1 --no-report   # smoke run
    python -m benchmarks.reproduce.unicdr --only official    # one side (another process: ours)

Steps: clone cjx96/UniCDR at `unicdr_equal.OFFICIAL` into `--scratch` (default
`runs/reproduce/unicdr`, git-ignored); build our split (`experiments/disencdr_sport_phone.py`,
protocol `released_loo`: the released test item per user, a valid item carved from train, 999
negatives per row fixed by protocol seed 0) and export it in the dual-domain layout the
official loader reads (`disencdr.export_split`, under `datasets/dual-user-intra/`: the
source's train.txt as released, the target's without the carved valid rows, both test.txt
files, and our valid and test candidate lists). Per seed, the official training runs through
`benchmarks/reproduce/unicdr_driver.py` (its `train_rec.py` loop and defaults, `--task
dual-user-intra`, the mean aggregator as ours; one torch thread unless `--threads`), scoring our
candidates after every epoch of 500 steps; ours trains `unicdr` on the same split with the
official batch (512 rows of each domain per step), Adam at 1e-3, for the same number of steps
(`our_epochs`), and evaluates after every one of its epochs (a pass over the longer domain's
rows, about 100 steps). Both select on valid NDCG@10 (the first best). The section
`reproduce-unicdr` of `--report` (default BENCHMARKS.md) gives both sides' test metrics at
their valid-selected epoch, the official script's own number (it evaluates every 5 epochs on
test.txt with negatives it draws at load time, and reports test when that improves: a
selection on test), wall time to the selected epoch and training time per step. Finished runs
are reused.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import numpy as np

from benchmarks.reproduce import common as K
from benchmarks.reproduce import disencdr as D
from benchmarks.reproduce.unicdr_equal import OFFICIAL

DRIVER = "benchmarks.reproduce.unicdr_driver"
ITERATIONS = 500  # official steps per epoch (`iteration_num`)
BATCH = 512  # rows of each domain per step: the official batch_size 1024 over two domains
METRICS = D.METRICS
SELECT = D.SELECT


def steps_per_epoch(split) -> int:
    """Our steps per epoch: the longer domain's training rows in batches of `BATCH`."""
    return math.ceil(max(len(split.source_train), len(split.target_train)) / BATCH)


def our_epochs(split, official_epochs: int) -> int:
    """Our epochs for the steps of `official_epochs` official epochs (rounded up)."""
    return math.ceil(official_epochs * ITERATIONS / steps_per_epoch(split))


def our_config(*, epochs: int, target: str = "phone"):
    """`unicdr` on the Sport <-> Phone task (sampled ranking, as the official code evaluates)
    with the official batch and rate, trained `epochs` epochs."""
    from transferjax import config as C

    cfg = C.load(str(K.EXPERIMENTS / D.EXPERIMENT))
    sets = [f"data.target={target}", "method=unicdr", "unicdr.aggregator=mean"]
    sets += [f"trainer.batch_size={BATCH}", "trainer.lr=1e-3", f"trainer.epochs={epochs}"]
    return C.apply_overrides(cfg, [*sets, "eval.curves=all"])  # test curves beside theirs


def prepare(scratch: pathlib.Path, *, epochs: int, source=None) -> tuple:
    """(our config, our split, the official checkout, the exported row counts)."""
    from transferjax.data.registry import build_dataset, build_split

    cfg = our_config(epochs=1)
    data = build_dataset(cfg.data)
    split = build_split(cfg.protocol, data)
    tgt, src_ = data.target, data.source
    for dom in (src_, tgt):  # the official loader takes the file ids as they are
        if dom.user_ids is not None and not np.array_equal(
            np.asarray(dom.user_ids).astype(np.int64), np.arange(dom.n_users)
        ):
            raise ValueError(f"{dom.name}: user indices are not the file's ids")
    cfg = our_config(epochs=our_epochs(split, epochs))
    src = K.fetch(OFFICIAL, scratch / "official-src", source=source)
    counts = D.export_split(
        split,
        scratch / "datasets" / "dual-user-intra",
        source="sport",
        target="phone",
        released=data.info["path"],
    )
    return cfg, split, src, counts


def run_official(src, scratch, *, seed: int, epochs: int, threads: int, echo=print) -> dict:
    """One official run (cached in `scratch`/official/seed{S}-e{E}.json once finished)."""
    out = scratch / "official" / f"seed{seed}-e{epochs}.json"
    done = K.load_json(out)
    if done is not None and len(done["epochs"]) == epochs + 1:
        return done
    echo(f"official UniCDR seed {seed}, {epochs} epochs")
    cand = scratch / "datasets" / "dual-user-intra" / "candidates.npz"
    extra = ["--epochs", str(epochs), "--candidates", str(cand)]
    return D.run_driver(
        src, scratch, out, seed=seed, threads=threads, extra=extra, code="UniCDR", driver=DRIVER
    )


def summarize_official(log: dict) -> dict:
    """Test at the valid-selected epoch (the first best of our candidates), the script's own
    numbers (its test at its best valid of test.txt), times."""
    eps = [e for e in log["epochs"] if "valid" in e]
    best = max(range(len(eps)), key=lambda i: (eps[i]["valid"][SELECT], -i))
    own = [e["own"] for e in log["epochs"] if e.get("own")]
    reported = [o["test_ndcg"] for o in own if "test_ndcg" in o]
    return {
        "selected_epoch": eps[best]["epoch"],
        "test": eps[best]["test"],
        "own_best": reported[-1] if reported else None,  # its last "better results" test
        "wall_to_selected_s": eps[best]["t"],
        "train_s_per_step": float(np.median([e["train_s"] for e in eps])) / ITERATIONS,
        "wall_s": log["epochs"][-1]["t"],
    }


def summarize_ours(r: dict, steps: int) -> dict:
    s = D.summarize_ours(r)
    return {**s, "train_s_per_step": s["train_s_per_epoch"] / steps}


def curve(ours, official, steps: int) -> str:
    """A markdown table: after each official epoch e (500 e steps), the official valid and test
    NDCG@10 on our candidates against ours after its first epoch with at least as many steps
    (ceil(500 e / steps)); means over seeds."""
    lines = [
        "| official epoch (steps) | official valid | official test | ours epoch (steps) "
        "| ours valid | ours test |",
        "|---|---:|---:|---|---:|---:|",
    ]
    n = min(len(r["history"]) for r in ours)
    scored = [{x["epoch"] for x in t["epochs"] if "valid" in x} for t in official]
    for e in sorted(set.intersection(*scored)):
        k = min(math.ceil(e * ITERATIONS / steps), n)
        off = [next(x for x in t["epochs"] if x["epoch"] == e) for t in official]
        mine = [next(h for h in r["history"] if h["epoch"] == k) for r in ours]
        m = lambda rows, part: float(np.mean([x[part][SELECT] for x in rows]))  # noqa: E731
        lines.append(
            f"| {e} ({e * ITERATIONS:,}) | {m(off, 'valid'):.4f} | {m(off, 'test'):.4f} "
            f"| {k} ({k * steps:,}) | {m(mine, 'valid'):.4f} | {m(mine, 'test'):.4f} |"
        )
    return "\n".join(lines)


def write_section(report, *, cfg, counts, ours, official, epochs, threads, seeds, steps, cmd):
    """The section `reproduce-unicdr` of `report`; seeds: (ours, official)."""
    so = [summarize_ours(r, steps) for r in ours]
    oo = [summarize_official(r) for r in official]
    rows = D.test_rows(so, oo)
    rows += [
        {
            "label": "official script's own number: test NDCG@10 at its best test.txt "
            "evaluation (every 5 epochs, its own negatives; selects on test)",
            "official": [o["own_best"] for o in oo],
        },
        K.side_row(
            f"selected epoch (official: of 500 steps; ours: of {steps} steps)",
            "selected_epoch",
            so,
            oo,
        ),
        K.side_row(
            "training ms per step (official: median epoch / 500; ours: mean, compile excluded)",
            "train_s_per_step",
            so,
            oo,
            scale=1e3,
        ),
        K.side_row(
            "wall s to the selected epoch (from the start of training)",
            "wall_to_selected_s",
            so,
            oo,
        ),
    ]
    per_step = K.mean_ratio(oo, so, "train_s_per_step")
    to_sel = K.mean_ratio(oo, so, "wall_to_selected_s")
    budget = "the official budget" if epochs == 100 else "a reduced budget (official: 100)"
    lines = [
        f"## Reproduction: UniCDR's official code on Sport -> Phone (generated by `{cmd}`)",
        "",
        f"Official code: [{OFFICIAL.url}]({OFFICIAL.url}) at `{OFFICIAL.commit}`, its "
        "`train_rec.py` loop (`--task dual-user-intra`), defaults and modules run by "
        "`benchmarks/reproduce/unicdr_driver.py` (torch, "
        f"{threads} thread(s); run-time patches: `Tensor.cuda` returns the tensor, "
        "`random.sample` of a set samples `tuple(set)` as Python 3.7-3.10 did) on OUR "
        "split: `experiments/disencdr_sport_phone.py` (Sport -> Phone, `released_loo`, protocol "
        f"seed 0: {counts['target_train']:,} target train rows after the carved valid item, "
        f"{counts['source_train']:,} source rows, {counts['valid']:,} valid and "
        f"{counts['test']:,} test rows, each ranked against the same 999 sampled negatives on "
        f"both sides). {epochs} official epochs of 500 steps ({budget}); ours the same number "
        f"of steps or a few more ({cfg.trainer.epochs} epochs of {steps} steps). Both: the mean "
        "aggregator, dim 128, 512 rows of each domain per step with 10 negatives each, Adam at "
        "1e-3 with weight decay 1e-5, dropout 0.3, mask rate 0.1 (the official defaults). The "
        "official script's learning-rate decay (x0.98 on stalled evaluations after epoch 10) "
        "runs on its side only. Both score the target's valid and test candidates after each "
        f"of their epochs and select on valid {SELECT.upper()} (the first best).",
        "",
        K.comparison_table(rows, columns={"ours": "ours", "official": "UniCDR official"}),
        "",
        f"{SELECT.upper()} on our candidates along training, at the same number of steps:",
        "",
        curve(ours, official, steps),
        "",
        f"Ratios, official / ours: training time per step (same model, batch and negatives) "
        f"{per_step:.1f}x; wall time to the selected epoch {to_sel:.1f}x (each side's own "
        "evaluation cadence included).",
        "",
        f"Seeds: ours {', '.join(map(str, seeds[0]))} (`jax.random.key(S)`), official "
        f"{', '.join(map(str, seeds[1]))} (its `--seed`); the split is protocol seed 0's for "
        f"every seed. Mean ± std over seeds. Machine: {K.machine()}; the official runs at 1 "
        "thread on one core while ours ran on the other.",
    ]
    return K.put_reproduce_section(report, "unicdr", "\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    p = K.harness_parser("unicdr", __doc__, scratch="runs/reproduce/unicdr")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 on both sides")
    p.add_argument("--official-seeds", type=int, help="official seeds 0 .. N-1 (default --seeds)")
    p.add_argument("--epochs", type=int, default=100, help="official epochs (500 steps each)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the official runs")
    p.add_argument("--only", choices=("official", "ours"), help="run one side, write no report")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    scratch = pathlib.Path(args.scratch or "runs/reproduce/unicdr").resolve()
    seeds = list(range(args.seeds))
    official_seeds = list(range(args.official_seeds or args.seeds))
    cfg, split, src, counts = prepare(scratch, epochs=args.epochs, source=args.source)
    steps = steps_per_epoch(split)
    if args.only != "ours":
        official = [
            run_official(src, scratch, seed=s, epochs=args.epochs, threads=args.threads)
            for s in official_seeds
        ]
    if args.only != "official":
        ours = [
            K.run_ours(cfg, split, scratch / "ours" / f"seed{s}-e{cfg.trainer.epochs}.json", seed=s)
            for s in seeds
        ]
    if args.only:
        return 0
    for s, o in zip(seeds, ours, strict=True):
        a = summarize_ours(o, steps)
        print(f"seed {s}: ours test ndcg@10 {a['test'][SELECT]:.4f} (epoch {a['selected_epoch']})")
    for s, t in zip(official_seeds, official, strict=True):
        b = summarize_official(t)
        print(
            f"seed {s}: official test ndcg@10 {b['test'][SELECT]:.4f} (epoch "
            f"{b['selected_epoch']}), its own number {b['own_best']}"
        )
    if not args.no_report:
        cmd = "python -m benchmarks.reproduce.unicdr"
        cmd += f" --seeds {args.seeds}" if args.seeds != 3 else ""
        cmd += f" --epochs {args.epochs}" if args.epochs != 100 else ""
        cmd += f" --official-seeds {args.official_seeds}" if args.official_seeds else ""
        path = write_section(
            args.report or "BENCHMARKS.md",
            cfg=cfg,
            counts=counts,
            ours=ours,
            official=official,
            epochs=args.epochs,
            threads=args.threads,
            seeds=(seeds, official_seeds),
            steps=steps,
            cmd=cmd,
        )
        print(f"wrote section reproduce-unicdr of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
