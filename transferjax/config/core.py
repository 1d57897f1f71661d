"""The core config sections (data, protocol, trainer, eval), the registry of method sections
and `RunConfig`, which carries them all."""

from __future__ import annotations

import dataclasses
from typing import Literal

from transferjax.config.rules import (
    COUNT,
    COUNT0,
    FINITE,
    KW,
    NONNEG,
    Range,
    Sections,
    check_settings,
    setting,
)
from transferjax.errors import ConfigError


@dataclasses.dataclass(**KW)
class SyntheticConfig:
    """Knobs of `transferjax.data.synthetic.make_synthetic` (see its docstring)."""

    n_overlap: int = 1000
    n_source_only: int = setting(500, allowed=COUNT0)
    n_target_only: int = setting(500, allowed=COUNT0)
    n_items_source: int = 500
    n_items_target: int = 400
    dim_shared: int = 8
    dim_private: int = setting(4, allowed=COUNT0)
    shift_deg: float = setting(10.0, allowed=Range(lo=0, hi=180))
    density_source: float = 0.08
    density_target: float = 0.03
    popularity_skew: float = setting(0.5, allowed=NONNEG)
    noise: float = 0.1
    implicit: bool = False
    seed: int = 0

    def __post_init__(self):
        check_settings(self, "data.synthetic.")


@dataclasses.dataclass(**KW)
class DataConfig:
    """Which dataset to load.

    name: synthetic | ml1m_genre | ml_overlap | cdrib | disencdr | douban | csv | columnar.
      columnar: a pair folder of memory-mapped columns at `path` (`transferjax.data.columnar`,
      as `transferjax.data.large.write_synthetic_pair` writes them): loads in the time and
      memory of the pages it reads.
      cdrib: any pair in CDRIB's released cold-start format (folders `<a>_<b>/`, `<b>_<a>/`
      with train/valid/test.txt; `transferjax.data.cdrib`), by default Amazon Game/Video.
      disencdr: any pair in DisenCDR's dual-domain leave-one-out format (train.txt, test.txt,
      test_original.txt per folder; `transferjax.data.disencdr`), by default Sport/Phone.
    path: dataset root or file; "" uses the default (../shared/datasets/cdrib_game_video,
      disencdr_sport_phone or douban_book_music; the download cache for MovieLens). For
      cdrib / disencdr, the folder holding the pair's two folders.
    target: cdrib / disencdr: the target domain, named by the folders (Game/Video: "game",
      the default, or "video"; Sport/Phone: "sport" or "phone"; unset: the first folder's
      domain in sorted order); douban: "music" or "book".
    sep, encoding: csv only: field separator ("" detects tab, else comma; also "tab",
      "comma", "semicolon", "pipe", "space" or the string itself) and text encoding.
    rating_scale: "LO,HI" every rating must lie in; "" = the dataset's declared scale
      (douban, MovieLens: 1-5; csv: none), "none" = no scale. Non-finite ratings always fail.
    min_rating: rows rated below this are deleted from both domains when the data is read,
      before any split: never trained on, never ranked (RecBole's `val_interval`; 0: keep
      all). Not `protocol.min_rating`, which only keeps low ratings out of the held-out
      positives.
    k_core: after min_rating, users and items with fewer than this many rows are removed from
      each domain, repeatedly until none is left (RecBole's `user_inter_num_interval` /
      `item_inter_num_interval` "[k,inf)"; 0: off). Both: `transferjax.data.filters`; not for
      datasets with a published split (cdrib).
    cache: csv only: a folder for columnar copies of csv_source / csv_target: each file is
      converted once, in blocks, and memory-mapped on later loads (`transferjax.data.stream`;
      the same data as without it, for files too large to read into Python objects). "": off.
    duplicates: MovieLens from RecBole files (ml1m_genre, ml_overlap): "first" keeps the first
      of the 307 repeated (user, item) rows of ML-100k (two ids under one title), "keep"
      keeps them all, as RecBole does when `rm_dup_inter` is unset.
    """

    name: Literal[
        "synthetic", "ml1m_genre", "ml_overlap", "cdrib", "disencdr", "douban", "csv", "columnar"
    ] = "synthetic"
    path: str = ""
    target: str = ""
    csv_source: str = ""
    csv_target: str = ""
    sep: str = ""
    encoding: str = "utf-8"
    rating_scale: str = ""
    min_rating: float = setting(0.0, allowed=FINITE)
    k_core: int = setting(0, allowed=COUNT0)
    duplicates: Literal["first", "keep"] = "first"
    cache: str = ""
    synthetic: SyntheticConfig = SyntheticConfig()


@dataclasses.dataclass(**KW)
class ProtocolConfig:
    """Evaluation protocol (the protocols: `transferjax.data.protocols`).

    name: cold_start | published | warm_ratio | warm_loo | released_loo.
    beta: fraction of overlapping users made cold (cold_start).
    valid_frac: fraction of cold users in cold-valid; the rest are cold-test.
    n_negatives: sampled negatives per held-out item (0: none, e.g. rating tasks).
    min_rating: warm_ratio only: held-out ratings below this are not positives (0: all).
    test_file: released_loo only: the released file that is the test set, "test" (held-out
      items that occur in train.txt, as the papers evaluate) or "test_original" (every
      user's held-out item, also items no training row shows).
    """

    name: Literal["cold_start", "published", "warm_ratio", "warm_loo", "released_loo"] = (
        "cold_start"
    )
    beta: float = 0.2
    valid_frac: float = 0.5
    n_negatives: int = setting(0, allowed=COUNT0)
    min_rating: float = setting(0.0, allowed=FINITE)
    test_file: Literal["test", "test_original"] = "test"
    seed: int = 0

    def __post_init__(self):
        check_settings(self, "protocol.")


MESH_AXES = ("trial", "data", "model")


def parse_mesh(text: str) -> dict[str, int] | None:
    """`trainer.mesh` as {axis: size} in `MESH_AXES` order (absent axes have size 1), or None
    for "auto". Whether the sizes match the devices is checked where the mesh is built.

    Raises:
      ConfigError: naming `trainer.mesh`, for anything but comma-separated `axis=size` pairs
        of distinct known axes with positive integer sizes.
    """
    if text == "auto":
        return None
    sizes = {}
    for part in str(text).split(","):
        name, sep, size = part.strip().partition("=")
        name, size = name.strip(), size.strip()
        if not sep or name not in MESH_AXES or name in sizes or not size.isdigit():
            raise ConfigError(
                f"trainer.mesh={text!r}: expected 'auto' or comma-separated axis=size pairs "
                f"over the axes {', '.join(MESH_AXES)}, each at most once "
                f"(e.g. 'data=4' or 'data=2,model=2'); bad part {part.strip()!r}"
            )
        if int(size) < 1:
            raise ConfigError(
                f"trainer.mesh={text!r}: axis {name!r} has size {size}; sizes are >= 1"
            )
        sizes[name] = int(size)
    return {a: sizes.get(a, 1) for a in MESH_AXES}


@dataclasses.dataclass(**KW)
class TrainerConfig:
    """Optimisation of the stage that is selected on cold-valid (and defaults for others).

    patience: early stopping: a trial stops once this many evaluations in a row found no better
      valid value of the selection metric than its selected one (its later evaluations are not
      recorded, its selected params stay), and training ends when every trial has stopped or
      failed; vmapped trials stop alike, so each gives the numbers it gives alone (0: train
      every epoch; RecBole's `stopping_step`, counted in evaluations: `eval_every` epochs).
    keep_selected: "on": each trial's params at its selected evaluation are kept (a second copy
      of the params on the device and in every checkpoint), so results, checkpoints and
      `transferjax diagnose` hold the selected model; "off": the last epoch's params only, for
      tables too large to hold twice (the metrics and the selection are the same).
    checkpoint_every: save the training state every this many epochs and at each stage's end
      (0: never); a rerun of the same command resumes from the newest checkpoint.
    checkpoint_min_interval_s: a due checkpoint is skipped when the previous one of this call
      (or its start) is less than this many seconds ago, except the final state of the last
      stage, which is always saved: an interrupted run repeats at most about this much
      training, and a short run does not spend its time writing checkpoints (0: every due
      checkpoint).
    vmap: run several seeds as one vmapped program ("on"), one after another ("off"), or
      choose by backend and model size ("auto"; see `transferjax.train.run.use_vmap`).
    workers: seeds that run one after another (not vmapped) are spread over this many
      threads, each training whole seeds (0: on a CPU backend enough threads that no core idles
      while seeds are left, `transferjax.train.run.seed_workers`; 1 elsewhere);
      every seed runs the same program either way, so the numbers do not depend on it.
    on_nonfinite: what a diverging trial does (a non-finite training loss, or a non-finite or
      absurd valid/test metric; see `transferjax.train.divergence`): "raise" stops the run
      with a DivergenceError naming the method, stage, epoch, trial and learning-rate key;
      "fail" records that seed/trial as failed (status "failed" and the reason in
      metrics.json and summary.txt), lets the other trials finish, and then `run` raises.
    mesh: the devices a run trains on, as named axis sizes "data=4", "data=2,model=2" or
      "trial=4,data=2" (axes: trial, data, model; their product must equal the number of
      local devices): each step's batch rows are split over "data" (the global batch stays
      `batch_size`, so the numbers do not depend on the device count), vmapped trials (seeds,
      sweep points) over "trial", and params are replicated ("model" is reserved for sharded
      tables). "auto": every local device on "data" on an accelerator, one device on a CPU
      (fake CPU devices share the same cores). See `transferjax.train.mesh`.
    """

    lr: float = 1e-2
    batch_size: int = 1024
    epochs: int = 20
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    weight_decay: float = 0.0
    eval_every: int = 1
    patience: int = setting(0, allowed=COUNT0)
    keep_selected: Literal["on", "off"] = "on"
    checkpoint_every: int = setting(5, allowed=COUNT0)
    checkpoint_min_interval_s: float = setting(30.0, allowed=NONNEG)
    vmap: Literal["auto", "on", "off"] = "auto"
    workers: int = 0
    on_nonfinite: Literal["raise", "fail"] = "raise"
    mesh: str = "auto"

    def __post_init__(self):
        check_settings(self, "trainer.")
        parse_mesh(self.mesh)


@dataclasses.dataclass(**KW)
class EvalConfig:
    """Evaluation on cold-valid (selection) and cold-test (report).

    select: metric chosen on valid: rmse | mae (lower is better) or a ranking metric such as
      ndcg@10, hr@10, mrr, recall@10 (higher is better); "auto" picks rmse for explicit
      ratings and ndcg@10 otherwise; or a validator that reads no cold-valid label,
      unsup/source_risk | unsup/dev | unsup/entropy (lower is better) or unsup/im |
      unsup/snd (higher is better), which is then computed (`transferjax.diagnostics.selection`).
    validators: the validators computed at every valid evaluation and recorded as valid
      metrics `unsup/<name>`: "off" (the default; none but the one `select` names), "all"
      (those that apply: dev needs a method with user vectors), or names such as
      "source_risk,dev,im,snd". source_risk and dev hold out a share of the warm users'
      target rows from training (`validators.holdout`); their settings: the section
      `validators`.
    ranking: "sampled" (needs protocol.n_negatives), "full", "both" or "none".
    rating: MAE/RMSE on explicit ratings ("auto": whenever the target has explicit ratings).
    groups: "on": the test metrics also by the user's source activity (`group_buckets`
      quantile buckets) and by the held-out item's popularity (head / torso / tail), with
      coverage and novelty of the full-ranking lists (`transferjax.eval.groups`); "off": none.
    curves: what every evaluation during training computes. "select": the valid metrics the
      selection reads (the family of `select`: rating, sampled or full ranking; and the
      validators), and after training, once, on each trial's selected params, every valid
      and test metric, into its selected history entry (needs `trainer.keep_selected=on`).
      "all": every valid and test metric at every evaluation, for curves over the epochs.
      The selected entry's values are the same either way (the same params, the same
      evaluation programs).
    """

    select: str = "auto"
    validators: str = "off"
    ranking: Literal["none", "sampled", "full", "both"] = "none"
    rating: Literal["auto", "on", "off"] = "auto"
    ks: tuple[int, ...] = (1, 5, 10, 20)
    chunk_size: int = 1024
    groups: Literal["on", "off"] = "on"
    group_buckets: int = setting(4, allowed=COUNT)
    curves: Literal["select", "all"] = "select"

    def __post_init__(self):
        check_settings(self, "eval.")


# ---------------------------------------------------------------------------------------------
# Method sections: each method module declares its own section next to its code.

_SECTIONS: dict[str, type] = {}
CORE = ("name", "method", "seed", "seeds", "data", "protocol", "trainer", "eval")


def section(name: str):
    """Class decorator: registers a frozen dataclass as the config section `name`.

    A method module declares the section its build reads (`cfg.<name>.<key>`, `--set
    <name>.<key>=...`) next to its code, e.g. `@section("mf") @dataclasses.dataclass(frozen=True,
    kw_only=True) class MFConfig: ...`; every `RunConfig` then carries it, with its defaults
    unless given. Registering a different class under a taken name is an error."""

    def deco(cls):
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"config section {name!r}: {cls.__name__} is not a dataclass")
        if name in CORE or (name in _SECTIONS and _SECTIONS[name].__qualname__ != cls.__qualname__):
            raise ValueError(f"config section {name!r} is already taken")
        _SECTIONS[name] = cls
        return cls

    return deco


def sections() -> dict[str, type]:
    """{name: section class} of every registered section."""
    return dict(_SECTIONS)


@dataclasses.dataclass(frozen=True, init=False)
class RunConfig:
    """One run: a method on a dataset under a protocol, for seeds seed .. seed + seeds - 1.

    The core fields are below; every registered method section (`section`) is an attribute too:
    `RunConfig(method="mf", mf=MFConfig(dim=8)).mf.dim`, and `dataclasses.replace(cfg, mf=...)`
    works as for a field.
    """

    name: str = "run"
    method: str = "emcdr"
    seed: int = 0
    seeds: int = 1
    data: DataConfig = DataConfig()
    protocol: ProtocolConfig = ProtocolConfig()
    trainer: TrainerConfig = TrainerConfig()
    eval: EvalConfig = EvalConfig()
    sections: Sections = Sections()

    def __init__(self, **given):
        for f in dataclasses.fields(RunConfig):
            if f.name != "sections":
                object.__setattr__(self, f.name, given.pop(f.name, f.default))
        sections = given.pop("sections", ())
        secs = dict(sections)
        for k, v in given.items():
            if k not in _SECTIONS:
                raise ConfigError(
                    f"unknown config section {k!r}; valid: {', '.join(sorted([*CORE, *_SECTIONS]))}"
                )
            if not isinstance(v, _SECTIONS[k]):
                raise ConfigError(
                    f"section {k!r} must be a {_SECTIONS[k].__name__}, got {type(v).__name__}"
                )
            secs[k] = v
        for k, cls in _SECTIONS.items():
            secs.setdefault(k, cls())
        object.__setattr__(self, "sections", Sections(sorted(secs.items())))
        check_settings(self)  # every way to a RunConfig passes here (file, --set, JSON, sweep)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        got = self.__dict__.get("sections", Sections()).get(name)
        if got is not None:
            return got
        if name in _SECTIONS:  # registered after this config was made: its defaults
            return _SECTIONS[name]()
        raise AttributeError(f"RunConfig has no field or section {name!r}")
