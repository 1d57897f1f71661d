"""Overrides (`--set key=value`), flattening, JSON round trips and experiment files."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import types
import typing
from typing import Any, Literal

from transferjax.config.core import _SECTIONS, RunConfig
from transferjax.config.rules import _children, _hints
from transferjax.errors import ConfigError

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
