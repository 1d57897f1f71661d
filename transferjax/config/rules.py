"""Allowed ranges of numeric settings, and the check every `RunConfig` passes.

A field's `Range` comes from its metadata (`setting(default, allowed=...)`) or else from the
first pattern of `NAME_RULES` its name matches (`dim`, `*_hidden`, `*epochs`, `lr`, `beta`,
...), so a method's new section is checked without code of its own.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
import types
import typing
from typing import Any

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
