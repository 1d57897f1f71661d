"""Method registry: every method runs by name from `transferjax run`.

A method is a `build(cfg, split) -> Built` function (`transferjax.methods.api`), called once
per run; its `Built.init(key)` makes the params of one seed. Register one with the
`register(name)` decorator; see README "Adding a method".

Traced hyperparameters. A method lists in `register(name, traced=(...))` the config keys its
losses read as traced values (loss weights, regularisation, the GRL strength) and returns them
as `Built.hyper` (`hyper_init(cfg, keys)`: {key: f32[]}); its losses read
`view["hyper"][key]`, never the config. The trainer replaces the values per trial, so sweeps
over them (like learning rates) share one compiled program under `vmap` (see
`transferjax.train.sweep`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    build: Callable
    doc: str = ""
    traced: tuple = ()


_METHODS: dict[str, Method] = {}


def register(name: str, *, traced: tuple = ()) -> Callable:
    """Decorator: `@register("my_method") def build(cfg, split) -> Built`.

    `traced`: the config keys of `Built.hyper` (module docstring)."""

    def deco(build: Callable) -> Callable:
        if name in _METHODS and _METHODS[name].build is not build:
            raise ValueError(f"method {name!r} is already registered")
        _METHODS[name] = Method(
            name=name, build=build, doc=(build.__doc__ or "").strip(), traced=tuple(traced)
        )
        return build

    return deco


def available() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]
