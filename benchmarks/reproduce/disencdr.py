"""DisenCDR's official code trained on our Sport -> Phone split, against our `disencdr`.

    python -m benchmarks.reproduce.disencdr                        # 3 seeds, 50 epochs
    python -m benchmarks.reproduce.disencdr --seeds 1 --epochs 20  # a reduced budget
    python -m benchmarks.reproduce.disencdr --source DIR           # clone from DIR, not GitHub
    python -m benchmarks.reproduce.disencdr --epochs 1 --seeds 1 --no-report   # smoke run
    python -m benchmarks.reproduce.disencdr --only official    # one side (another process: ours)

Steps: clone cjx96/DisenCDR at `OFFICIAL.commit` into `--scratch` (default
`runs/reproduce/disencdr`, git-ignored); build our split (`experiments/disencdr_sport_phone.py`,
protocol `released_loo`: the released test item per user, a valid item carved from train,
999 negatives per row fixed by protocol seed 0) and export it in the official format
(`export_split`): the source's train.txt as released, the target's train.txt without the
carved valid rows, both test.txt files as released, and our valid and test candidate lists
(positive first, then its 999 negatives; raw file ids). Per seed, the official training runs
through `benchmarks/reproduce/disencdr_driver.py` (its `train_rec.py` loop and defaults, its
model and loaders, one torch thread unless `--threads`), scoring our candidates after every
epoch; ours trains `disencdr` with the quality suite's settings (batch 1024, Adam at 1e-3) for
the same epochs and selects on the same valid rows. The section `reproduce-disencdr` of
`--report` (default BENCHMARKS.md) gives both sides' test metrics at their valid-selected
epoch, the official script's own number (it evaluates the test file every 10 epochs against
negatives it draws at load time and prints the best: a selection on test), wall time to the
selected epoch and training time per example. Finished runs are reused.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np

from benchmarks.reproduce import common as K
from benchmarks.reproduce.disencdr_equal import OFFICIAL

EXPERIMENT = "disencdr_sport_phone.py"
DRIVER = "benchmarks.reproduce.disencdr_driver"
METRICS = ("ndcg@10", "hr@10", "ndcg@5", "hr@5", "hr@1", "mrr")
SELECT = "ndcg@10"


def our_config(*, epochs: int, target: str = "phone"):
    """The quality suite's `disencdr` on the Sport <-> Phone task (sampled ranking only, as the
    official code evaluates), trained `epochs` epochs."""
    from benchmarks import quality as Q
    from transferjax import config as C

    cfg = C.load(str(K.EXPERIMENTS / EXPERIMENT))
    sets = [f"data.target={target}", "method=disencdr", *Q.METHOD_SETTINGS["disencdr"]]
    return C.apply_overrides(cfg, [*sets, f"trainer.epochs={epochs}"])


def _rows_by_user(user: np.ndarray, item: np.ndarray) -> str:
    """`user<TAB>item<TAB>1` lines, stably sorted by user (the official loaders number users
    in order of first appearance, so both domains' files must list them in the same order)."""
    order = np.argsort(user, kind="stable")
    return "".join(f"{u}\t{i}\t1\n" for u, i in zip(user[order], item[order]))


def candidates(heldout) -> dict:
    """Per held-out row: its target user and [positive, negatives...] (raw ids)."""
    if heldout.negatives is None:
        raise ValueError("the split has no sampled negatives (protocol.n_negatives=0)")
    users = heldout.pairs[heldout.row, 1]
    return {"user": users, "items": np.concatenate([heldout.item[:, None], heldout.negatives], 1)}


def export_split(split, folder, *, source: str, target: str, released) -> dict:
    """Writes `folder`/dataset/{source}_{target}/ and {target}_{source}/ in the official layout
    (module docstring) and `folder`/candidates.npz; returns the row counts. `released`: the
    dataset's folder (its source-side test.txt is copied as it is)."""
    folder = pathlib.Path(folder)
    src_dir = folder / "dataset" / f"{source}_{target}"
    tgt_dir = folder / "dataset" / f"{target}_{source}"
    for d in (src_dir, tgt_dir):
        d.mkdir(parents=True, exist_ok=True)
    s, t = split.source_train, split.target_train
    (src_dir / "train.txt").write_text(_rows_by_user(s.user, s.item), encoding="utf-8")
    shutil.copy(pathlib.Path(released) / f"{source}_{target}" / "test.txt", src_dir / "test.txt")
    (tgt_dir / "train.txt").write_text(_rows_by_user(t.user, t.item), encoding="utf-8")
    test = candidates(split.test)
    (tgt_dir / "test.txt").write_text(
        _rows_by_user(test["user"], test["items"][:, 0]), encoding="utf-8"
    )
    valid = candidates(split.valid)
    np.savez(
        folder / "candidates.npz",
        valid_user=valid["user"],
        valid_items=valid["items"],
        test_user=test["user"],
        test_items=test["items"],
    )
    return {"source_train": len(s.user), "target_train": len(t.user)} | {
        "valid": len(valid["user"]),
        "test": len(test["user"]),
    }


def prepare(scratch: pathlib.Path, *, epochs: int, source=None) -> tuple:
    """(our config trained `epochs` epochs, our split, the official checkout, the exported row
    counts): the split built and exported into `scratch`, the official code fetched there."""
    from transferjax.data.registry import build_dataset, build_split

    cfg = our_config(epochs=epochs)
    data = build_dataset(cfg.data)
    split = build_split(cfg.protocol, data)
    src = K.fetch(OFFICIAL, scratch / "official-src", source=source)
    counts = export_split(
        split, scratch, source="sport", target="phone", released=data.info["path"]
    )
    return cfg, split, src, counts


def driver_call(
    src, scratch, *, seed: int, threads: int, extra: list, code: str = "DisenCDR", driver=DRIVER
) -> tuple:
    """(command, environment, working folder) of the official-code `driver` module (default
    `disencdr_driver.py`) with `extra` arguments: the checkout's `code` folder (its top-level
    `model`, `utils`) and this checkout (the driver) on the PYTHONPATH, `threads` torch
    threads, run in `scratch`/work (the data at ../dataset or ../datasets)."""
    work = scratch / "work"
    work.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(src / code), str(K.REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", driver, "--train-rec", str(src / code / "train_rec.py")]
    return [*cmd, "--seed", str(seed), "--threads", str(threads), *extra], env, work


def run_driver(src, scratch, out: pathlib.Path, *, seed: int, threads: int, extra: list, **call):
    """One driver run (`driver_call` with `extra` and `--out`): its output in `out`.log, its
    log written to `out`.tmp while it runs and moved to `out` once it finished; returns it."""
    tmp = out.with_suffix(".tmp")
    cmd, env, work = driver_call(
        src, scratch, seed=seed, threads=threads, extra=[*extra, "--out", str(tmp)], **call
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".log"), "w", encoding="utf-8") as log:
        subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    tmp.replace(out)
    return K.load_json(out)


def run_official(src, scratch, *, seed: int, epochs: int, threads: int, echo=print) -> dict:
    """One official run (cached in `scratch`/official/seed{S}-e{E}.json once finished)."""
    out = scratch / "official" / f"seed{seed}-e{epochs}.json"
    done = K.load_json(out)
    if done is not None and len(done["epochs"]) == epochs:
        return done
    echo(f"official DisenCDR seed {seed}, {epochs} epochs")
    extra = ["--epochs", str(epochs), "--candidates", str(scratch / "candidates.npz")]
    return run_driver(src, scratch, out, seed=seed, threads=threads, extra=extra)


def summarize_official(log: dict) -> dict:
    """Test at the valid-selected epoch (the first best), the script's own number, times."""
    eps = log["epochs"]
    best = max(range(len(eps)), key=lambda i: (eps[i]["valid"][SELECT], -i))
    own = [e for e in eps if "own" in e]
    return {
        "selected_epoch": eps[best]["epoch"],
        "test": eps[best]["test"],
        "own_best": max((e["own"]["target_ndcg"] for e in own), default=None),
        "own_best_hit": max((e["own"]["target_hit"] for e in own), default=None),
        "test_best": max(e["test"][SELECT] for e in own) if own else None,
        "wall_to_selected_s": eps[best]["t"],
        "train_s_per_epoch": float(np.median([e["train_s"] for e in eps])),
        "wall_s": eps[-1]["t"],
    }


def summarize_ours(r: dict) -> dict:
    best = r["history"][r["selected"]]
    n = len(r["history"])
    return {
        "selected_epoch": best["epoch"],
        "test": {k: best["test"][k] for k in METRICS},
        "wall_to_selected_s": r["eval_s"][r["selected"]],
        "train_s_per_epoch": r["train_s"] / max(n, 1),
        "wall_s": r["wall_s"],
    }


def test_rows(ours, official) -> list[dict]:
    """The rows of the test metrics at the valid-selected epoch (`METRICS`)."""
    return [
        {
            "label": f"test {m} at the valid-selected epoch",
            "ours": [s["test"][m] for s in ours],
            "official": [o["test"][m] for o in official],
        }
        for m in METRICS
    ]


def write_section(report, *, cfg, counts, ours, official, epochs, threads, seeds, total_s, cmd):
    """The section `reproduce-disencdr` of `report`."""
    so = [summarize_ours(r) for r in ours]
    oo = [summarize_official(r) for r in official]
    rows = test_rows(so, oo)
    rows += [
        {
            "label": "official script's own number: best test NDCG@10 of its every-10-epoch "
            "evaluations, its own negatives (selects on test)",
            "official": [o["own_best"] for o in oo],
        },
        {
            "label": "the same rule on our test candidates (best of epochs 10, 20, ...)",
            "official": [o["test_best"] for o in oo],
        },
        K.side_row("selected epoch", "selected_epoch", so, oo),
        K.side_row(
            "training s per epoch (median; ours: mean, compile excluded)",
            "train_s_per_epoch",
            so,
            oo,
            digits=2,
        ),
        K.side_row(
            "wall s to the selected epoch (from the start of training)",
            "wall_to_selected_s",
            so,
            oo,
        ),
        K.side_row("wall s, whole run", "wall_s", so, oo),
    ]
    per_epoch = K.mean_ratio(oo, so, "train_s_per_epoch")
    to_sel = K.mean_ratio(oo, so, "wall_to_selected_s")
    budget = "the official budget" if epochs == 50 else "a reduced budget (official: 50)"
    lines = [
        f"## Reproduction: DisenCDR's official code on Sport -> Phone (generated by `{cmd}`)",
        "",
        f"Official code: [{OFFICIAL.url}]({OFFICIAL.url}) at `{OFFICIAL.commit}`, its "
        "`train_rec.py` loop, defaults and modules run by `benchmarks/reproduce/disencdr_driver.py`"
        f" (torch {_torch_version()}, {threads} thread(s); the one run-time patch: "
        "`Tensor.cuda` returns the tensor) on OUR split: `experiments/disencdr_sport_phone.py` "
        f"(Sport -> Phone, `released_loo`, protocol seed 0: {counts['target_train']:,} target "
        f"train rows after the carved valid item, {counts['source_train']:,} source rows, "
        f"{counts['valid']:,} valid and {counts['test']:,} test rows, each ranked against the "
        "same 999 sampled negatives on both sides). "
        f"{epochs} epochs ({budget}), batch 1024, Adam at 1e-3, dim 128, 2 layers, dropout 0.3,"
        " beta 0.9 on both sides; ours: `disencdr` with the quality suite's settings "
        f"(`{' '.join(cfg_sets(cfg))}`). Both score every epoch's posterior means and select on "
        f"valid {SELECT.upper()} (the first best).",
        "",
        K.comparison_table(rows, columns={"ours": "ours", "official": "DisenCDR official"}),
        "",
        f"Ratios, official / ours, of the times above: training time per epoch (the same "
        f"{counts['source_train'] + counts['target_train']:,} rows an epoch, same model and "
        f"batch) {per_epoch:.1f}x; wall time to the selected epoch {to_sel:.1f}x. They compare "
        f"speed only when both sides ran alone on the same cores: the official code runs "
        f"{threads} torch thread(s), ours uses every core the process may use, and on a shared "
        "machine each side's clock also counts what else ran. One step of each, in turns on one "
        "core: `python -m benchmarks.reproduce.step_time` (its section follows).",
        "",
        f"Seeds: {', '.join(map(str, seeds))} on both sides (official: its `--seed`, which also "
        "draws its own test negatives; ours `jax.random.key(S)`); the split is protocol seed 0's "
        "for every seed. Mean ± std over seeds.",
        f"Machine: {K.machine()} (shared with other jobs; wall times are rough). This invocation "
        f"{total_s:.0f} s (finished runs are reused).",
    ]
    return K.put_reproduce_section(report, "disencdr", "\n".join(lines))


def cfg_sets(cfg) -> list[str]:
    t = cfg.trainer
    return [
        f"trainer.batch_size={t.batch_size}",
        f"trainer.epochs={t.epochs}",
        f"trainer.lr={t.lr}",
    ]


def _torch_version() -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "?"


def build_parser() -> argparse.ArgumentParser:
    p = K.harness_parser("disencdr", __doc__, scratch="runs/reproduce/disencdr")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 on both sides")
    p.add_argument("--epochs", type=int, default=50, help="epochs on both sides (official: 50)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the official runs")
    p.add_argument(
        "--only",
        choices=("official", "ours"),
        help="run one side's seeds and write no report (two processes can share the work; a "
        "later call without --only reuses both sides' finished runs)",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    scratch = pathlib.Path(args.scratch or "runs/reproduce/disencdr").resolve()
    seeds = list(range(args.seeds))
    cfg, split, src, counts = prepare(scratch, epochs=args.epochs, source=args.source)
    if args.only != "ours":
        official = [
            run_official(src, scratch, seed=s, epochs=args.epochs, threads=args.threads)
            for s in seeds
        ]
    if args.only != "official":
        ours = [K.run_ours(cfg, split, scratch / "ours" / f"seed{s}.json", seed=s) for s in seeds]
    if args.only:
        return 0
    for s, o, t in zip(seeds, ours, official):
        a, b = summarize_ours(o), summarize_official(t)
        print(
            f"seed {s}: ours test ndcg@10 {a['test'][SELECT]:.4f} (epoch {a['selected_epoch']}) | "
            f"official {b['test'][SELECT]:.4f} (epoch {b['selected_epoch']}), its own number "
            f"{b['own_best'] if b['own_best'] is None else round(b['own_best'], 4)}"
        )
    if not args.no_report:
        cmd = "python -m benchmarks.reproduce.disencdr"
        cmd += f" --seeds {args.seeds}" if args.seeds != 3 else ""
        cmd += f" --epochs {args.epochs}" if args.epochs != 50 else ""
        path = write_section(
            args.report or "BENCHMARKS.md",
            cfg=cfg,
            counts=counts,
            ours=ours,
            official=official,
            epochs=args.epochs,
            threads=args.threads,
            seeds=seeds,
            total_s=time.perf_counter() - t0,
            cmd=cmd,
        )
        print(f"wrote section reproduce-disencdr of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
