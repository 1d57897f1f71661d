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

The package: `rules` (allowed ranges, `check_settings`), `core` (the core sections, the
registry of method sections, `RunConfig`), `io` (overrides, flattening, JSON, experiment files);
everything is re-exported here, as `transferjax.config.NAME`.
"""

from transferjax.config.core import (
    _SECTIONS,
    CORE,
    MESH_AXES,
    DataConfig,
    EvalConfig,
    ProtocolConfig,
    RunConfig,
    SyntheticConfig,
    TrainerConfig,
    parse_mesh,
    section,
    sections,
)
from transferjax.config.io import (
    apply_overrides,
    dumps,
    flatten,
    from_dict,
    load,
    override,
    same_config,
    shrink,
    to_dict,
)
from transferjax.config.rules import (
    COUNT,
    COUNT0,
    FINITE,
    FRACTION,
    KW,
    NAME_RULES,
    NONNEG,
    POSITIVE,
    PROBABILITY,
    Range,
    Sections,
    _checked_fields,
    _hints,
    allowed,
    check_settings,
    setting,
)
from transferjax.errors import ConfigError

__all__ = [
    "CORE",
    "COUNT",
    "COUNT0",
    "FINITE",
    "FRACTION",
    "KW",
    "MESH_AXES",
    "NAME_RULES",
    "NONNEG",
    "POSITIVE",
    "PROBABILITY",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ProtocolConfig",
    "Range",
    "RunConfig",
    "Sections",
    "SyntheticConfig",
    "TrainerConfig",
    "_SECTIONS",
    "_checked_fields",
    "_hints",
    "allowed",
    "apply_overrides",
    "check_settings",
    "dumps",
    "flatten",
    "from_dict",
    "load",
    "override",
    "parse_mesh",
    "same_config",
    "section",
    "sections",
    "setting",
    "shrink",
    "to_dict",
]
