"""Method registry: every method runs by name from `transferjax run`.

A method is a `build(cfg, split, *, key) -> Built` function: initial params (a dict pytree), the
training `Stage`s, and a `Scorer` that scores target items for (source user, target user) pairs.
Register one with the `register(name)` decorator; see README "Adding a method".

Traced hyperparameters. A method lists in `register(name, traced=(...))` the config keys its
losses read as traced values (loss weights, regularisation, the GRL strength) and keeps them
in `params["hyper"]` (`hyper_init(cfg, keys)`: {key: f32[]}); its losses read
`params["hyper"][key]`, never the config. No stage trains "hyper". The trainer replaces the
values per trial, so sweeps over them (like learning rates) share one compiled program under
`vmap` (see `transferjax.train.sweep`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Scorer:
    """How a trained method scores target items.

    Attributes:
      score_items: `(params, src: i32[c], tgt: i32[c], items: i32[c] | i32[c, m]) -> f32[c] |
        f32[c, m]`; `src` is the user's source index (-1 when none), `tgt` the target index.
      score_all: `(params, src: i32[c], tgt: i32[c]) -> f32[c, n_items]`.
      predict: optional rating predictor `(params, src, tgt, items: i32[c]) -> f32[c]` when it
        differs from `score_items` (e.g. popularity ranks by count but predicts the mean).
    """

    score_items: Callable
    score_all: Callable
    predict: Callable | None = None

    def rating(self, params, src, tgt, items):
        """f32[c] predicted ratings."""
        return (self.predict or self.score_items)(params, src, tgt, items)


@dataclasses.dataclass(frozen=True)
class Built:
    params: dict
    stages: tuple
    scorer: Scorer


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    build: Callable
    doc: str = ""
    traced: tuple = ()


_METHODS: dict[str, Method] = {}
# Modules whose import registers the built-in methods.
_BUILTIN_MODULES = (
    "transferjax.models.baselines",
    "transferjax.transfer.mapping",
    "transferjax.transfer.collective",
    "transferjax.transfer.ptupcdr",
    "transferjax.transfer.phi",
)


def register(name: str, *, traced: tuple = ()) -> Callable:
    """Decorator: `@register("my_method") def build(cfg, split, *, key) -> Built`.

    `traced`: config keys held in `params["hyper"]` (module docstring)."""

    def deco(build: Callable) -> Callable:
        if name in _METHODS and _METHODS[name].build is not build:
            raise ValueError(f"method {name!r} is already registered")
        _METHODS[name] = Method(name=name, build=build, doc=(build.__doc__ or "").strip(),
                                traced=tuple(traced))
        return build

    return deco


def hyper_init(cfg, keys) -> dict:
    """{key: f32[]} of the config values of `keys` (e.g. "align.weight"), for `params["hyper"]`."""
    from transferjax.config import flatten

    flat = flatten(cfg)
    return {k: jnp.asarray(float(flat[k]), jnp.float32) for k in keys}


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def available() -> list[str]:
    _load_builtins()
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    _load_builtins()
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


# One candidate scored by gathering its factors costs about as much as this many scores of the
# all-item matmul (95-209 on a 2-core CPU: `python benchmarks/score_candidates.py`, which
# materialises the [c, m, d] gather); scorers take the all-item form for m candidates per user
# when GATHER_COST * m >= n_items.
GATHER_COST = 128


def all_items_pay(items: jax.Array, n_items: int) -> bool:
    """Whether candidates i32[c, m] are scored faster from all items' scores than gathered."""
    return items.ndim == 2 and GATHER_COST * items.shape[1] >= n_items


def mf_scorer(user_repr: Callable, *, items_key: str = "target") -> Scorer:
    """A `Scorer` for MF-style methods.

    Args:
      user_repr: `(params, src, tgt) -> (vec f32[c, d], bias f32[c])` target-space user factors.
      items_key: params key of the target MF params (item factors, item biases, mu).
    """
    from transferjax.models.mf import mf_score, mf_score_all

    def score_items(params, src, tgt, items):
        vec, bias = user_repr(params, src, tgt)
        n_items = params[items_key]["item"].shape[0]
        if all_items_pay(items, n_items):
            # Many candidates per user (sampled ranking): one matmul against all items beats
            # gathering a [c, m, d] block of item factors.
            return jnp.take_along_axis(mf_score_all(vec, bias, params[items_key]), items, axis=1)
        return mf_score(vec, bias, params[items_key], items)

    def score_all(params, src, tgt):
        vec, bias = user_repr(params, src, tgt)
        return mf_score_all(vec, bias, params[items_key])

    return Scorer(score_items=score_items, score_all=score_all)


def own_or_fallback(known: jax.Array, own: tuple, fallback: tuple, tgt: jax.Array) -> tuple:
    """Per row, the user's own target factors when `known[tgt]`, else `fallback`.

    Args:
      known: bool[n_target_users] users with target training data.
      own, fallback: (vec f32[c, d], bias f32[c]) pairs.
    """
    k = known[tgt]
    return (jnp.where(k[:, None], own[0], fallback[0]), jnp.where(k, own[1], fallback[1]))
