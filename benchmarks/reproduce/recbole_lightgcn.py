"""recbole's LightGCN against our `lightgcn` on the target domain (ML-100k) of RecBole-CDR's
ML-1M -> ML-100k sample setting, each seed on the very same split on both sides.

    python -m benchmarks.reproduce.recbole_lightgcn --source DIR             # 3 seeds
    python -m benchmarks.reproduce.recbole_lightgcn --source DIR --seeds 1 --epoch-time 4

Their side is recbole 1.0.1 (the version RecBole-CDR runs on, in its virtual environment:
`benchmarks.reproduce.recbole_cdr`, the checkout and venv in `--scratch`), `run_recbole(model=
"LightGCN")` with its own defaults (overall.yaml and LightGCN.yaml: dim 64, 2 layers, reg 1e-5,
Adam lr 1e-3, 2048 positives per batch with one negative that is not a training item of the
user, the EmbLoss regulariser, Xavier-uniform init, full ranking with train items masked (and
valid items for test), valid MRR@10 selection, early stopping after 10 evaluations without a
better one). Seed i: ours builds the split of protocol seed i of `experiments/
ml_overlap_recbole.py` with RecBole's filtering (`recbole_cdr.DATA_OVERRIDES`, as
`recbole_cdr.SeedSplits`); its target train / valid / test rows are written as recbole atomic
files (`benchmark_filename`, so recbole neither filters nor splits again) and recbole trains on
them with seed 2022 + i; ours trains `lightgcn` on the same split with the settings copied from
their config (`matched_settings`). `--epoch-time N` also times N training epochs per side on one
pinned core (recbole at 1 thread; the first epoch left out), as
`benchmarks.reproduce.recbole_epoch_time`. Writes the section `reproduce-recbole-lightgcn` of
`--report` (default BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import time

import numpy as np

from benchmarks.reproduce import common as K
from benchmarks.reproduce import recbole_cdr as R

MODEL = "LightGCN"
DATASET = "tjx-ml-100k"
SECTION = "recbole-lightgcn"
RUN = (
    "import sys\nfrom recbole.quick_start import run_recbole\n"
    "run_recbole(model='LightGCN', dataset=sys.argv[1], config_file_list=[sys.argv[2]])\n"
)


def recbole_properties(python) -> pathlib.Path:
    """The `properties` folder of the recbole package of `python`."""
    code = "import os, recbole; print(os.path.dirname(recbole.__file__))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return pathlib.Path(out.stdout.strip()) / "properties"


def their_config(props, extra: str = "") -> dict:
    """recbole's config of LightGCN as it merges the files: overall.yaml, model/LightGCN.yaml,
    then `extra` (YAML text)."""
    import yaml

    out: dict = {}
    for path in (props / "overall.yaml", props / "model" / f"{MODEL}.yaml"):
        out.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    if extra.strip():
        out.update(yaml.safe_load(extra) or {})
    return out


def matched_settings(theirs: dict) -> tuple:
    """Our `lightgcn` overrides that match recbole's LightGCN config `theirs`."""
    if (theirs.get("neg_sampling") or {}) != {"uniform": 1}:
        raise ValueError(f"neg_sampling {theirs.get('neg_sampling')!r}: only uniform: 1")
    if str(theirs.get("learner", "adam")).lower() != "adam" or float(theirs.get("weight_decay", 0)):
        raise ValueError("only their Adam without weight decay is matched")
    if theirs.get("require_pow"):
        raise ValueError("require_pow: True (squared norms / 2) is not matched")
    return (
        f"trainer.lr={float(theirs['learning_rate'])}",
        f"trainer.batch_size={int(theirs['train_batch_size'])}",  # pairwise: positives
        f"trainer.epochs={int(theirs['epochs'])}",
        f"trainer.patience={R._patience(theirs)}",
        f"lightgcn.dim={int(theirs['embedding_size'])}",
        f"lightgcn.n_layers={int(theirs['n_layers'])}",
        f"lightgcn.reg={float(theirs['reg_weight'])}",
        "lightgcn.loss=bpr",
        "lightgcn.init=xavier_uniform",
        "lightgcn.negatives=unseen",
        "lightgcn.reg_form=norms",
    )


def our_config(theirs: dict):
    from transferjax import config as C

    cfg = C.load(str(K.EXPERIMENTS / R.EXPERIMENT))
    sets = [*R.DATA_OVERRIDES, "method=lightgcn", *matched_settings(theirs)]
    return C.apply_overrides(cfg, sets)


def export_split(split, folder: pathlib.Path) -> dict:
    """Writes the target's train / valid / test rows as `DATASET.{part}.inter` (tokens: our
    user and item indices) in `folder`; returns {part: rows}."""
    parts = {
        "train": (split.target_train.user, split.target_train.item),
        "valid": (split.valid.target_user, split.valid.item),
        "test": (split.test.target_user, split.test.item),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for part, (user, item) in parts.items():
        rows = "".join(f"{u}\t{i}\n" for u, i in zip(user.tolist(), item.tolist(), strict=True))
        text = "user_id:token\titem_id:token\n" + rows
        (folder / f"{DATASET}.{part}.inter").write_text(text, encoding="utf-8")
    return {part: len(user) for part, (user, _) in parts.items()}


def run_config(data_path, seed: int, extra: str = "") -> str:
    """Their run's YAML: our split files as recbole's benchmark files, CPU, the seed."""
    return (
        f"data_path: {data_path}\n"
        "benchmark_filename: [train, valid, test]\n"
        "load_col: {inter: [user_id, item_id]}\n"
        "show_progress: False\nuse_gpu: False\n"
        f"seed: {R.BASE_SEED + seed}\n" + (extra.rstrip("\n") + "\n" if extra.strip() else "")
    )


def run_theirs(python, folder, split, seed: int, *, extra: str = "", echo=print) -> dict:
    """recbole's LightGCN on `split` (or its saved log): the parsed log plus the process wall
    time. Runs in `folder` (its log/ and saved/ land there)."""
    tag = R.official_tag(extra)
    log, wall = folder / f"{MODEL}{tag}-seed{seed}.log", folder / f"{MODEL}{tag}-seed{seed}.wall"
    if log.exists() and wall.exists():
        try:
            return {**R.parse_recbole_log(log.read_text()), "process_s": float(wall.read_text())}
        except ValueError:
            pass
    data = folder / "data" / f"seed{seed}"
    export_split(split, data / DATASET)
    conf = folder / f"config{tag}-seed{seed}.yaml"
    conf.write_text(run_config(data.resolve(), seed, extra))
    echo(f"recbole {MODEL} seed {R.BASE_SEED + seed}")
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        cmd = [str(python), "-c", RUN, DATASET, str(conf.resolve())]
        env = {k: v for k, v in R._env().items() if k != "PYTHONPATH"}
        rc = subprocess.run(cmd, cwd=folder, env=env, stdout=f, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    if rc.returncode != 0:
        raise RuntimeError(f"recbole {MODEL} exited {rc.returncode}; see {log}")
    wall.write_text(f"{dt:.3f}\n")
    return {**R.parse_recbole_log(log.read_text()), "process_s": dt}


def epoch_times(python, folder, cfg, split, epochs: int, echo=print) -> dict:
    """{"official", "ours": [training s per epoch], "steps", "compile_s"}: `epochs` epochs of
    each side on this process's core (never reused)."""
    from benchmarks.reproduce.recbole_epoch_time import our_epochs

    timing = folder / "epoch-time"
    timing.mkdir(parents=True, exist_ok=True)
    extra = f"epochs: {epochs}"
    for old in timing.glob(f"{MODEL}{R.official_tag(extra)}-seed0.*"):
        old.unlink()
    theirs = run_theirs(python, timing, split, 0, extra=extra, echo=echo)
    echo(f"ours lightgcn: {epochs} epochs")
    ours, steps, compile_s = our_epochs(cfg, split, epochs)
    official = [e["train_s"] for ph in theirs["phases"] for e in ph["epochs"]]
    return {"official": official, "ours": ours, "steps": steps, "compile_s": compile_s}


def write_section(report, *, ours, theirs, sizes, settings, timing, cmd) -> pathlib.Path:
    rows = [
        {
            "label": label,
            "ours": [r["test"][om] for r in ours],
            "official": [t["test"][tm] for t in theirs],
        }
        for label, om, tm in R.METRICS
    ]
    rows.append(
        K.side_row(
            "selected epoch (ours counts from 1, recbole from 0)", "selected_epoch", ours, theirs
        )
    )
    rows.append(K.side_row("wall s to the selected epoch", "wall_to_selected_s", ours, theirs))
    body = [
        f"## Reproduction: recbole's LightGCN on ML-100k, the same split on both sides "
        f"(generated by `{cmd}`)",
        "",
        "recbole 1.0.1 (`run_recbole(model='LightGCN')`, its overall.yaml and LightGCN.yaml) "
        "against our `lightgcn`, on the target domain of RecBole-CDR's ML-1M -> ML-100k sample "
        f"setting (`experiments/{R.EXPERIMENT}` with `{' '.join(R.DATA_OVERRIDES)}`). Seed i: "
        "ours draws protocol seed i's random 8:1:1 split per user and hands its rows to recbole "
        "as benchmark files (no filtering or split on its side), so both train, select and test "
        f"on the same rows (train / valid / test rows of seed 0: {sizes['train']:,} / "
        f"{sizes['valid']:,} / {sizes['test']:,}); recbole runs with seed 2022 + i. Ours copies "
        f"their settings: `{' '.join(settings)}`. Both select on valid MRR@10 with early "
        "stopping; test @10 at the selected epoch, full ranking with train (and, for test, "
        "valid) items masked.",
        "",
        K.comparison_table(rows, columns={"ours": "ours", "official": "recbole"}),
        "",
        f"Wall time to the selected epoch (training and evaluation), recbole / ours: "
        f"**{K.mean_ratio(theirs, ours, 'wall_to_selected_s'):.2f}x** ({K.machine()}; recbole "
        "at 1 thread).",
    ]
    if timing:
        o, s = float(np.median(timing["official"][1:])), float(np.median(timing["ours"][1:]))
        body += [
            "",
            f"One training epoch on one pinned core ({len(timing['ours'])} per side, the first "
            f"left out; {timing['steps']} steps of the same batch): recbole {o:.2f} s, ours "
            f"{s:.2f} s, **{o / s:.2f}x** per training example (ours compiled in "
            f"{timing['compile_s']:.1f} s).",
        ]
    return K.put_reproduce_section(report, SECTION, "\n".join(body) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = K.harness_parser(
        "recbole_lightgcn", __doc__, scratch="runs/reproduce/recbole_cdr", source="RecBole-CDR"
    )
    p.add_argument("--python", help="a python with recbole 1.0.1 (default: the venv)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epoch-time", type=int, default=0, help="epochs to time per side (0: none)")
    p.add_argument("--cpu", type=int, help="the core --epoch-time runs on")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.seeds < 1 or args.epoch_time == 1:
        raise SystemExit("--seeds: at least 1; --epoch-time: 0 or at least 2")
    if args.epoch_time:
        K.pin_core(args.cpu)  # before JAX starts its threads
    from transferjax.data.registry import build_dataset, build_split

    scratch = pathlib.Path(args.scratch or "runs/reproduce/recbole_cdr").resolve()
    K.fetch(R.OFFICIAL, scratch / "src", source=args.source, keep=R.OUTPUTS)
    python = args.python or K.ensure_venv(scratch / "venv", R.REQUIREMENTS, no_deps=R.NO_DEPS)
    folder = scratch / "lightgcn"
    folder.mkdir(parents=True, exist_ok=True)
    theirs_cfg = their_config(recbole_properties(python))
    cfg = our_config(theirs_cfg)
    splits = R.SeedSplits(build_dataset(cfg.data), build_split)
    ours, theirs = [], []
    for seed in range(args.seeds):
        cfg_s, split = splits(cfg, seed)
        theirs.append(run_theirs(python, folder, split, seed))
        ours.append(R.run_ours(cfg_s, split, R._ours_json(folder, cfg_s, seed), seed=seed))
        t, o = theirs[-1]["test"], ours[-1]["test"]
        print(f"seed {seed}: NDCG@10 recbole {t['ndcg@10']:.4f} ours {o['full_ndcg@10']:.4f}")
    timing = None
    if args.epoch_time:
        timing = epoch_times(python, folder, *splits(cfg, 0), args.epoch_time)
    if not args.no_report:
        split0 = splits(cfg, 0)[1]
        sizes = {"train": len(split0.target_train), "valid": len(split0.valid)}
        sizes["test"] = len(split0.test)
        cmd = "python -m benchmarks.reproduce.recbole_lightgcn"
        cmd += f" --seeds {args.seeds}" if args.seeds != 3 else ""
        cmd += f" --epoch-time {args.epoch_time}" if args.epoch_time else ""
        path = write_section(
            args.report or K.REPO / "BENCHMARKS.md",
            ours=ours,
            theirs=theirs,
            sizes=sizes,
            settings=matched_settings(theirs_cfg),
            timing=timing,
            cmd=cmd.strip(),
        )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
