"""`transferjax diagnose RUN_FOLDER`: the shift diagnostics of a finished (or stopped) run.

From the folder's config.json the split and the method are rebuilt (the split must be the one
the folder trained on: its data fingerprint is checked against fingerprint.json), each seed's
training state is restored from its checkpoints, and `transferjax.diagnostics` measures

- "model": the method's user vectors (`Built.represent`) under the restored params, for methods
  that have both sides (phi family, EMCDR, PTUPCDR, CMF), one entry per seed;
- "interest": the raw interest vectors of the split's training data (any method).

The params are the selected epoch's: every checkpoint holds each trial's params at its best
valid evaluation so far (`transferjax.train.book`), and the newest checkpoint of a finished run
holds those of the epoch metrics.json reports. A run stopped before its end is measured at its
best evaluation so far, and one stopped before any evaluation at its newest checkpoint; each
seed's entry says which.
The result is written to RUN_FOLDER/diagnostics.json and printed as a table.
"""

from __future__ import annotations

import json
import pathlib

import jax

from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.diagnostics import (
    ESTIMATORS,
    MEASURES,
    ModelVectors,
    entry,
    interest_entry,
    user_sets,
)
from transferjax.errors import ConfigError, RunFolderError
from transferjax.methods.registry import get_method
from transferjax.train import folder as F
from transferjax.train.checkpoint import Checkpointer, structure_fingerprint
from transferjax.train.files import write_json
from transferjax.train.outputs import split_fingerprint
from transferjax.train.result import trial_view
from transferjax.train.trainer import stage_shapes

DIAGNOSTICS = "diagnostics.json"


def _json(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise RunFolderError(f"{path} is damaged ({e})") from e


def load_config(folder: pathlib.Path, overrides=()) -> C.RunConfig:
    """The run's config from config.json, with `overrides` of `diagnostics.*` keys only."""
    if not folder.is_dir():
        raise RunFolderError(f"{folder}: no such run folder")
    stored = _json(folder / F.CONFIG)
    if stored is None:
        raise RunFolderError(
            f"{folder} holds no {F.CONFIG}: it is not a run folder (`transferjax run` writes it "
            "when training starts)"
        )
    try:
        cfg = C.from_dict(C.RunConfig, stored)
    except (ConfigError, TypeError) as e:
        raise RunFolderError(f"{folder / F.CONFIG} does not load with this version: {e}") from e
    for item in overrides:
        if not item.startswith("diagnostics."):
            raise ConfigError(
                f"diagnose: --set {item!r}: only diagnostics.* keys can be set; the rest of the "
                f"config is the run's ({folder / F.CONFIG})"
            )
    return C.apply_overrides(cfg, list(overrides))


def checkpoint_layout(folder: pathlib.Path, cfg) -> list[tuple[int, pathlib.Path, int, int]]:
    """(seed, checkpoint folder, trials in its state, this seed's trial index) per seed: one
    folder per seed (ckpt/seed{s}, seeds trained one after another) or one shared by all
    (ckpt/, a single seed or vmapped seeds)."""
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    ckpt = folder / "ckpt"
    if len(seeds) > 1 and all((ckpt / f"seed{s}").is_dir() for s in seeds):
        return [(s, ckpt / f"seed{s}", 1, 0) for s in seeds]
    return [(s, ckpt, len(seeds), j) for j, s in enumerate(seeds)]


def _selected(metrics: dict | None, seed: int) -> dict | None:
    if metrics is None:
        return None
    if "seeds" in metrics:
        metrics = next((m for m in metrics["seeds"] if m.get("seed") == seed), {})
    return metrics.get("selected")


def restore_params(
    folder, built, ckpt_dir, *, n: int, index: int, want: dict | None, keep: bool = True
):
    """(params of trial `index`, {"step", "stage", "epoch", "which"}) from the newest
    checkpoint: the trial's selected params ("which": "selected" when they are the `want`ed
    (stage name, epoch) of metrics.json, "best so far" without one), or the checkpoint's
    params ("newest") when the trial had no evaluation yet or the run kept no selected params
    (`keep` False: `trainer.keep_selected=off`).

    Raises:
      RunFolderError: naming the folder, when it has no checkpoint, the newest does not restore,
        or it names another selected epoch than metrics.json.
    """
    if not ckpt_dir.is_dir():
        raise RunFolderError(
            f"{folder}: no checkpoints ({ckpt_dir} is missing) to restore the model from; the "
            "run saves them every trainer.checkpoint_every epochs (0: never)"
        )
    ck = Checkpointer(ckpt_dir)
    try:
        steps = ck.steps()
        if not steps:
            raise RunFolderError(f"{folder}: {ckpt_dir} holds no checkpoint to restore")
        step = steps[0]
        try:
            meta = ck.meta(step)
        except Exception as e:  # a damaged checkpoint: its metadata cannot be read
            raise RunFolderError(f"{ckpt_dir}: checkpoint {step} is damaged ({e})") from e
        template = stage_shapes(built, n, keep=keep)[meta["stage"]]
        if meta.get("state_structure") != structure_fingerprint(template):
            raise RunFolderError(
                f"{ckpt_dir}: checkpoint {step} holds another training-state structure than "
                "this code builds (the method's code changed since the run)"
            )
        try:
            state = ck.restore(step, template)
        except RunFolderError:
            raise
        except Exception as e:
            raise RunFolderError(f"{ckpt_dir}: checkpoint {step} cannot be restored ({e})") from e
    finally:
        ck.close()
    names = [st.name for st in built.stages]
    chosen = meta["best_index"][index]
    if chosen is None or "best" not in state:
        tree, at = state["params"], (names[meta["stage"]], meta["epoch"])
        which = "newest"
    else:
        entry = meta["history"][index][chosen]
        tree, at = state["best"], (entry["stage"], entry["epoch"])
        which = "best so far"
        if want is not None:
            if (want.get("stage"), want.get("epoch")) != at:
                raise RunFolderError(
                    f"{ckpt_dir}: checkpoint {step} holds the params of {at[0]} epoch {at[1]}, "
                    f"but metrics.json selected {want.get('stage')} epoch {want.get('epoch')}: "
                    "the checkpoints are not this run's last"
                )
            which = "selected"
    info = {"step": step, "stage": at[0], "epoch": at[1], "which": which}
    return jax.device_put(trial_view(n > 1, tree, index)), info


def diagnose(folder, *, overrides=(), echo=print) -> dict:
    """Measures the run in `folder` (module docstring), writes diagnostics.json, prints a table
    with `echo`, and returns what it wrote.

    Raises:
      RunFolderError: the folder is not a run folder, was trained on other data, is in use by
        a run, or has no checkpoint to restore a model with user vectors from.
      ConfigError: an override other than diagnostics.*.
    """
    folder = pathlib.Path(folder)
    cfg = load_config(folder, overrides)
    with F.locked(folder):
        split = build_split(cfg.protocol, build_dataset(cfg.data))
        rec = _json(folder / F.RECORD)
        if rec is not None and rec.get("data") not in (None, split_fingerprint(split)):
            raise RunFolderError(
                f"{folder} was trained on other data than its config gives now (the data "
                f"fingerprint in {folder / F.RECORD} differs): its model cannot be measured"
            )
        built = get_method(cfg.method).build(cfg, split)
        dc = cfg.diagnostics
        sets = user_sets(split, max_users=dc.max_users, seed=dc.seed)
        out = {
            "method": cfg.method,
            "dataset": split.data.name,
            "settings": {k: v for k, v in C.flatten(cfg).items() if k.startswith("diagnostics.")},
            "estimators": ESTIMATORS,
            "interest": interest_entry(split, dc, sets),
        }
        if built.represent is None:
            out["model"] = {"skipped": f"method {cfg.method!r} has no source-side user vectors"}
        else:
            metrics = _json(folder / "metrics.json")
            vectors, seeds = ModelVectors(built, sets), []
            for seed, ckpt_dir, n, index in checkpoint_layout(folder, cfg):
                want = _selected(metrics, seed)
                params, state = restore_params(
                    folder,
                    built,
                    ckpt_dir,
                    n=n,
                    index=index,
                    want=want,
                    keep=cfg.trainer.keep_selected == "on",
                )
                seeds.append({"seed": seed, "state": state, **entry(vectors(params), dc)})
            out["model"] = seeds
        write_json(folder / DIAGNOSTICS, out)
    echo(table(out, folder))
    return out


def _row(name: str, e: dict) -> str:
    if "skipped" in e:
        return f"{name:<16} skipped: {e['skipped']}"
    vals = "".join(f"{e[k]:>12.4g}" if k in e else f"{'-':>12}" for k in MEASURES)
    sizes = "".join(f"{e[k]:>9d}" for k in ("n_source", "n_target", "n_pairs"))
    return f"{name:<16}{vals}{sizes}"


def table(out: dict, folder) -> str:
    """The printed summary of a diagnostics.json dict."""
    head = f"{'vectors':<16}" + "".join(f"{k:>12}" for k in MEASURES)
    head += "".join(f"{k:>9}" for k in ("n_source", "n_target", "n_pairs"))
    lines = [f"shift diagnostics of {folder} (method {out['method']})", head]
    model = out["model"] if isinstance(out["model"], list) else [out["model"]]
    notes = []
    for e in model:
        name = f"model seed {e['seed']}" if "seed" in e else "model"
        lines.append(_row(name, e))
        if "state" in e:
            st = e["state"]
            notes.append(
                f"  {name}: checkpoint {st['step']}, params of {st['stage']} epoch "
                f"{st['epoch']} ({st['which']})"
            )
    lines.append(_row("interest", out["interest"]))
    for name, e in (("model", model[0]), ("interest", out["interest"])):
        if "space" in e:
            notes.append(f"  {name} vectors: {e['space']}")
    lines += notes
    lines.append(
        "  larger is more shift, except cosine (overlapping users' mean; larger is closer); "
        f"written to {pathlib.Path(folder) / DIAGNOSTICS}"
    )
    return "\n".join(lines)
