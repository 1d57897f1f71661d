"""Run configuration: frozen keyword-only dataclasses, loaded from experiment files.

An experiment file is a Python module exposing `get_config() -> RunConfig` (and optionally
`quick(cfg) -> RunConfig`, a shrunken variant for smoke runs). Any field can be overridden from
the command line with a dotted key, e.g.

    transferjax run experiments/ml1m_genre_emcdr.py --set trainer.lr=0.01 --set mf.dim=64

Unknown keys and values of the wrong type or outside a field's choices are rejected with a
message that lists the valid keys or values.

Every numeric setting is range-checked whenever a `RunConfig` is made (from an experiment
file, `--set`, `from_dict`, a sweep point or `dataclasses.replace`): a field's `Range` comes
from its metadata (`setting(default, allowed=...)`) or else from the naming rule `NAME_RULES`
over the field name (`dim`, `*_hidden`, `*epochs`, `lr`, `beta`, ...), so a method's new
section is checked without code of its own. A value outside its range fails with a
`ConfigError` naming the full key, the value and the allowed range, before any data is read.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import importlib.util
import json
import math
import pathlib
import types
import typing
from typing import Any, Literal

from transferjax.errors import ConfigError

KW = dict(frozen=True, kw_only=True)


class Sections(tuple):
    """The method sections of a `RunConfig`: a sorted tuple of (name, section) pairs."""

    def get(self, name: str):
        for k, v in self:
            if k == name:
                return v
        return None

    def names(self) -> list[str]:
        return [k for k, _ in self]


def _children(cfg) -> list[tuple[str, Any]]:
    """(name, value) of a config's fields, with a RunConfig's sections as fields of their own."""
    out = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, Sections):
            out.extend(v)
        else:
            out.append((f.name, v))
    return out


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# ---------------------------------------------------------------------------------------------
# Allowed ranges of numeric settings.


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric setting allows: an interval of finite numbers (open or closed at
    either end, unbounded where a bound is None), of integers only when `integer`. Each
    element of a tuple setting (e.g. `eval.ks`) must lie in it, and the tuple be non-empty."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def contains(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.integer and not isinstance(v, int):
            return False
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def describe(self) -> str:
        """'an integer >= 1', 'a finite number > 0', 'a number in (0, 1]', ..."""
        what = "an integer" if self.integer else "a finite number"
        if self.lo is not None and self.hi is not None:
            a, b = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"{'an integer ' if self.integer else ''}in {a}{self.lo:g}, {self.hi:g}{b}"
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{what} {'<' if self.hi_open else '<='} {self.hi:g}"
        return what


COUNT = Range(lo=1, integer=True)  # sizes and counts
COUNT0 = Range(lo=0, integer=True)  # counts where 0 means "none" / "never" / "no cap"
POSITIVE = Range(lo=0, lo_open=True)  # learning rates, temperatures, scales
NONNEG = Range(lo=0)  # weights, regularisation
FRACTION = Range(lo=0, hi=1, lo_open=True, hi_open=True)  # a share strictly between 0 and 1
PROBABILITY = Range(lo=0, hi=1)  # probabilities, convex mixing weights
FINITE = Range()

# First match of the field name wins; a field's own `setting(..., allowed=...)` comes first.
NAME_RULES: tuple[tuple[str, Range], ...] = (
    ("seeds", COUNT),
    ("seed", COUNT0),
    ("*_seed", COUNT0),
    ("lr", POSITIVE),
    ("*_lr", POSITIVE),
    ("epochs", COUNT),  # 0 epochs leaves a stage's params at their random init
    ("*_epochs", COUNT),
    ("dim", COUNT),
    ("dims", COUNT),
    ("dim_*", COUNT),
    ("*_dim", COUNT),
    ("hidden", COUNT),
    ("*_hidden", COUNT),
    ("*_size", COUNT),
    ("*_every", COUNT),
    ("ks", COUNT),
    ("n_*", COUNT),
    ("*_len", COUNT),
    ("*_steps", COUNT0),
    ("workers", COUNT0),
    ("beta", FRACTION),
    ("*_frac", FRACTION),
    ("density_*", Range(lo=0, hi=1, lo_open=True)),
    ("dropout", Range(lo=0, hi=1, hi_open=True)),
    ("*_dropout", Range(lo=0, hi=1, hi_open=True)),
    ("*prob*", PROBABILITY),
    ("*ratio*", PROBABILITY),
    ("*mask*", PROBABILITY),
    ("weight", NONNEG),
    ("*_weight", NONNEG),
    ("weight_decay", NONNEG),
    ("reg", NONNEG),
    ("*_reg", NONNEG),
    ("std", POSITIVE),
    ("*_std", POSITIVE),
    ("noise", NONNEG),
    ("temperature", POSITIVE),
    ("*_factors", POSITIVE),
    ("lam", NONNEG),
    ("gamma", NONNEG),
)


def setting(default, *, allowed: Range):
    """A dataclass field with its allowed range (overrides `NAME_RULES` for this field)."""
    return dataclasses.field(default=default, metadata={"allowed": allowed})


def _numeric(typ) -> bool:
    """Whether a field type is int/float, a tuple of them, or an Optional of either."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        return all(_numeric(a) for a in typing.get_args(typ) if a is not Ellipsis)
    if origin in (typing.Union, types.UnionType):
        return all(_numeric(a) for a in typing.get_args(typ) if a is not type(None))
    return typ in (int, float)


@functools.cache
def _checked_fields(cls) -> tuple[tuple[str, Range | None], ...]:
    """(name, allowed range or None) of each numeric field of the dataclass `cls`."""
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in hints and _numeric(hints[f.name]):
            out.append((f.name, allowed(cls, f.name)))
    return tuple(out)


def allowed(cls, name: str) -> Range | None:
    """The `Range` of field `name` of the config class `cls`: its metadata, else the first
    `NAME_RULES` pattern its name matches, else None (a float is then only required finite)."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    typ = _hints(cls)[name]
    integer = typ is int or typing.get_args(typ)[:1] == (int,)  # int, tuple[int, ...], int | None
    if "allowed" in field.metadata:
        return dataclasses.replace(field.metadata["allowed"], integer=integer)
    for pattern, rng in NAME_RULES:
        if fnmatch.fnmatchcase(name, pattern):
            return dataclasses.replace(rng, integer=integer)
    return None


def check_settings(cfg, prefix: str = "") -> None:
    """Raises ConfigError for the first numeric setting of `cfg` (a RunConfig or a section,
    recursively; keys are reported as `prefix + name`) outside its allowed range."""
    for name, rng in _checked_fields(type(cfg)):
        key, value = f"{prefix}{name}", getattr(cfg, name)
        if value is None:
            continue
        if rng is None:  # no rule: an int must be an int, a float finite
            typ = _hints(type(cfg))[name]
            rng = Range(integer=typ is int or typing.get_args(typ)[:1] == (int,))
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not value:
            raise ConfigError(f"{key} must name at least one value ({rng.describe()}), got ()")
        for v in values:
            if not rng.contains(v):
                each = "each element of " if isinstance(value, tuple) else ""
                raise ConfigError(f"{each}{key} must be {rng.describe()}, got {value!r}")
    for name, v in _children(cfg):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            check_settings(v, f"{prefix}{name}.")


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

    name: synthetic | ml1m_genre | ml_overlap | cdrib | disencdr | douban | csv.
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
    duplicates: MovieLens from RecBole files (ml1m_genre, ml_overlap): "first" keeps the first
      of the 307 repeated (user, item) rows of ML-100k (two ids under one title), "keep"
      keeps them all, as RecBole does when `rm_dup_inter` is unset.
    """

    name: Literal["synthetic", "ml1m_genre", "ml_overlap", "cdrib", "disencdr", "douban", "csv"] = (
        "synthetic"
    )
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


@dataclasses.dataclass(**KW)
class TrainerConfig:
    """Optimisation of the stage that is selected on cold-valid (and defaults for others).

    checkpoint_every: save the training state every this many epochs and at each stage's end
      (0: never); a rerun of the same command resumes from the newest checkpoint.
    vmap: run several seeds as one vmapped program ("on"), one after another ("off"), or
      choose by backend and model size ("auto"; see `transferjax.train.run.use_vmap`).
    workers: seeds that run one after another (not vmapped) are spread over this many
      threads, each training whole seeds (0: one per CPU core on a CPU backend, 1 elsewhere);
      every seed runs the same program either way, so the numbers do not depend on it.
    on_nonfinite: what a diverging trial does (a non-finite training loss, or a non-finite or
      absurd valid/test metric; see `transferjax.train.divergence`): "raise" stops the run
      with a DivergenceError naming the method, stage, epoch, trial and learning-rate key;
      "fail" records that seed/trial as failed (status "failed" and the reason in
      metrics.json and summary.txt), lets the other trials finish, and then `run` raises.
    """

    lr: float = 1e-2
    batch_size: int = 1024
    epochs: int = 20
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    weight_decay: float = 0.0
    eval_every: int = 1
    checkpoint_every: int = setting(5, allowed=COUNT0)
    vmap: Literal["auto", "on", "off"] = "auto"
    workers: int = 0
    on_nonfinite: Literal["raise", "fail"] = "raise"

    def __post_init__(self):
        check_settings(self, "trainer.")


@dataclasses.dataclass(**KW)
class EvalConfig:
    """Evaluation on cold-valid (selection) and cold-test (report).

    select: metric chosen on valid: rmse | mae (lower is better) or a ranking metric such as
      ndcg@10, hr@10, mrr, recall@10 (higher is better); "auto" picks rmse for explicit
      ratings and ndcg@10 otherwise.
    ranking: "sampled" (needs protocol.n_negatives), "full", "both" or "none".
    rating: MAE/RMSE on explicit ratings ("auto": whenever the target has explicit ratings).
    """

    select: str = "auto"
    ranking: Literal["none", "sampled", "full", "both"] = "none"
    rating: Literal["auto", "on", "off"] = "auto"
    ks: tuple[int, ...] = (1, 5, 10, 20)
    chunk_size: int = 1024

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


# ---------------------------------------------------------------------------------------------
# Overrides, flattening, loading.


def _parse(raw: str, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is Literal:
        choices = typing.get_args(typ)
        if raw not in choices:
            raise ConfigError(f"{key}={raw!r} is not valid; choose one of {list(choices)}")
        return raw
    if origin is tuple:
        (elem, *_) = typing.get_args(typ)
        parts = [p for p in raw.strip("()[] ").split(",") if p.strip()]
        return tuple(_parse(p.strip(), elem, key) for p in parts)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if raw.lower() == "none" else _parse(raw, args[0], key)
    try:
        if typ is bool:
            low = raw.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return low in ("true", "1", "yes")
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is str:
            return raw
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a valid {typ.__name__}") from None
    raise ConfigError(f"{key} cannot be set from the command line (type {typ})")


def override(cfg, key: str, raw: str):
    """Returns `cfg` with the dotted `key` set from the string `raw` (parsed by field type)."""
    head, _, rest = key.partition(".")
    children = dict(_children(cfg))
    if head not in children:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(children))}")
    value = children[head]
    if dataclasses.is_dataclass(value):
        if not rest:
            sub = ", ".join(f"{head}.{f.name}" for f in dataclasses.fields(value))
            raise ConfigError(f"{key!r} is a section; set one of its keys: {sub}")
        try:
            new = override(value, rest, raw)
        except ConfigError as e:
            msg = str(e).replace("valid keys: ", f"valid keys under {head}: ")
            raise ConfigError(msg.replace(f"key {rest!r}", f"key {key!r}")) from None
    else:
        if rest:
            raise ConfigError(f"unknown config key {key!r}: {head!r} is not a section")
        new = _parse(raw, _hints(type(cfg))[head], key)
    return dataclasses.replace(cfg, **{head: new})


def apply_overrides(cfg, items: list[str]):
    """Applies `key=value` strings in order."""
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key=value")
        cfg = override(cfg, key.strip(), raw.strip())
    return cfg


def shrink(cfg: RunConfig, *, epochs: int, mf_epochs: int | None = None) -> RunConfig:
    """A quick variant: `epochs` for the selected stage, `mf_epochs` for MF pre-training."""
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, epochs=epochs))
    if mf_epochs is not None:
        cfg = dataclasses.replace(cfg, mf=dataclasses.replace(cfg.mf, epochs=mf_epochs))
    return cfg


def to_dict(cfg) -> dict:
    """Nested plain dict of a config (a RunConfig's sections appear as top-level keys)."""
    return {k: to_dict(v) if dataclasses.is_dataclass(v) else v for k, v in _children(cfg)}


def flatten(cfg, prefix: str = "") -> dict[str, Any]:
    """{'trainer.lr': 0.01, ...} for every leaf field."""
    out = {}
    for name, v in _children(cfg):
        if dataclasses.is_dataclass(v):
            out.update(flatten(v, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = v
    return out


def from_dict(cls, d: dict):
    """Inverse of `to_dict` (used to reload a run folder's config.json); unknown keys fail."""
    hints = _hints(cls)
    if cls is RunConfig:
        hints = {**{k: v for k, v in hints.items() if k != "sections"}, **_SECTIONS}
    names = set(hints)
    unknown = set(d) - names
    if unknown:
        raise ConfigError(
            f"unknown keys {sorted(unknown)} for {cls.__name__}; valid: {sorted(names)}"
        )
    kw = {}
    for k, v in d.items():
        t = hints[k]
        if dataclasses.is_dataclass(t):
            kw[k] = from_dict(t, v)
        elif typing.get_origin(t) is tuple:
            kw[k] = tuple(v)
        else:
            kw[k] = v
    return cls(**kw)


def dumps(cfg) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def same_config(stored: dict, cfg) -> bool:
    """Whether a run folder's config.json (`stored`) describes `cfg`. A field added to the
    config classes after the folder was written counts as holding its default value, so a
    finished run stays reusable; a changed or removed field does not match."""
    try:
        old = from_dict(type(cfg), stored)
    except (ConfigError, TypeError):
        return False
    return dumps(old) == dumps(cfg)


def load(path_or_name: str, *, quick: bool = False) -> RunConfig:
    """Loads `get_config()` from an experiment file (a path, or a name in ./experiments)."""
    path = pathlib.Path(path_or_name)
    if not path.exists() and not path.suffix:
        path = pathlib.Path("experiments") / f"{path_or_name}.py"
    if not path.exists():
        raise ConfigError(f"config file {path_or_name!r} not found")
    spec = importlib.util.spec_from_file_location(f"_tj_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    cfg = module.get_config()
    if quick:
        if not hasattr(module, "quick"):
            raise ConfigError(f"{path}: defines no quick(cfg) variant")
        cfg = module.quick(cfg)
    return cfg
