"""Flax modules as transferjax model parts: `(init, apply)` pairs of pure functions.

transferjax models are pairs `init(key) -> params` and `apply(params, *inputs) -> output` over
pytrees of arrays. These adapters wrap a user's own Flax module into that form, so it jits,
vmaps over seeds (`jax.vmap(init)(keys)`), differentiates and checkpoints like the built-in
parts:

- `from_linen(module, *example_inputs)`: a `flax.linen.Module`; params are its "params"
  collection (a dict of str keys).
- `from_nnx(module_or_factory)`: a `flax.nnx.Module` in NNX's functional form, `nnx.split`
  once into a static graphdef plus state; params are the `nnx.Param` state as a plain dict
  (`nnx.to_pure_dict`, keys as str), put back with `nnx.replace_by_pure_dict` + `nnx.merge`.
- `bag_encoder_from_flax(module_or_factory, *, kind)`: either of the above with the phi
  encoder's input convention `(items, rating, mask) -> z`.

`apply` runs the module deterministically and without mutable state: modules that keep
non-param state (Linen collections such as "batch_stats" or "cache"; NNX `BatchStat`, RNG
streams held by `nnx.Dropout(rngs=...)`, other `nnx.Variable` types) are refused with an
error naming that state. flax is an optional extra (`pip install -e ".[flax]"`); this module
is the only one that imports it and no transferjax module imports this one at import time.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

try:
    import flax
    from flax import linen, nnx
except ImportError as e:  # flax is an optional extra
    raise ImportError('transferjax.models.flax_adapter needs flax: pip install -e ".[flax]"') from e

__all__ = ["bag_encoder_from_flax", "from_linen", "from_nnx"]

Init = Callable[[jax.Array], dict]
Apply = Callable[..., jax.Array]


def _str_keys(tree):
    """Nested dict with every key as str (NNX list indices are ints), like Linen params."""
    if isinstance(tree, dict):
        return {str(k): _str_keys(v) for k, v in tree.items()}
    return tree


def from_linen(module: linen.Module, *example_inputs) -> tuple[Init, Apply]:
    """Wrap a Linen module as `(init, apply)`.

    Args:
      module: a `flax.linen.Module` (its hyper-parameters set, no bound variables).
      *example_inputs: arrays (or `jax.ShapeDtypeStruct`, fed as zeros) with which
        `module.init` traces the forward pass; params shapes follow from them.

    Returns:
      `init(key) -> params`: the module's "params" collection, a dict of arrays, drawn with
      `key` as the "params" RNG. `apply(params, *inputs)`: `module.apply({"params": params},
      *inputs)`, deterministic (no RNGs passed, nothing mutable).

    Raises:
      ValueError: naming them, when the module creates collections other than "params" (e.g.
        "batch_stats" of BatchNorm, "cache" of decoding attention): `apply` could not update
        them.
    """
    if not isinstance(module, linen.Module):
        raise TypeError(f"from_linen: expected a flax.linen.Module, got {type(module).__name__}")
    inputs = tuple(
        jnp.zeros(x.shape, x.dtype) if isinstance(x, jax.ShapeDtypeStruct) else x
        for x in example_inputs
    )
    shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)
    extra = sorted(set(shapes) - {"params"})
    if extra:
        raise ValueError(
            f"from_linen: {type(module).__name__} creates variable collections {extra} besides "
            "'params'; the adapter supports params-only modules (apply is pure, it cannot "
            "update mutable state). Use e.g. LayerNorm instead of BatchNorm."
        )

    def init(key: jax.Array) -> dict:
        variables = module.init({"params": key}, *inputs)
        return flax.core.unfreeze(variables.get("params", {}))

    def apply(params: dict, *args) -> jax.Array:
        return module.apply({"params": params}, *args)

    return init, apply


def from_nnx(module_or_factory) -> tuple[Init, Apply]:
    """Wrap an NNX module as `(init, apply)` in NNX's functional form (split once, merge).

    Args:
      module_or_factory: a factory `lambda rngs: MyModule(..., rngs=rngs)` called with
        `nnx.Rngs(key)` (seeded init: each key gives its own params), or an `nnx.Module`
        instance, whose current weights `init` returns for every key (e.g. pretrained weights;
        `jax.vmap(init)(keys)` then repeats them).

    Returns:
      `init(key) -> params`: the `nnx.Param` state as a plain nested dict of arrays (str keys).
      `apply(params, *inputs)`: `nnx.merge(graphdef, state)(*inputs)` with `state` the param
      state filled from `params`.

    Raises:
      ValueError: naming them, when the module holds state other than `nnx.Param` (BatchStat,
        RNG streams of `nnx.Dropout(rngs=...)`, other Variable types).
    """
    if isinstance(module_or_factory, nnx.Module):
        instance = module_or_factory
        abstract = instance
        name = type(instance).__name__
    elif callable(module_or_factory):
        instance, factory = None, module_or_factory
        abstract = nnx.eval_shape(lambda: factory(nnx.Rngs(0)))  # shapes only, no arrays
        name = type(abstract).__name__
        if not isinstance(abstract, nnx.Module):
            raise TypeError(f"from_nnx: the factory returned {name}, not an nnx.Module")
    else:
        raise TypeError(f"from_nnx: expected an nnx.Module or a factory, got {module_or_factory!r}")

    graphdef, template, rest = nnx.split(abstract, nnx.Param, ...)
    others = [
        "/".join(map(str, path)) + f" ({type(var).__name__})"
        for path, var in nnx.to_flat_state(rest)
    ]
    if others:
        raise ValueError(
            f"from_nnx: {name} holds non-param state {others}; the adapter supports "
            "params-only modules (apply is pure and deterministic). Build nnx.Dropout without "
            "rngs (or leave it out) and use LayerNorm instead of BatchNorm."
        )
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)

    def init(key: jax.Array) -> dict:
        module = instance if instance is not None else factory(nnx.Rngs(key))
        return _str_keys(nnx.to_pure_dict(nnx.state(module, nnx.Param)))

    def apply(params: dict, *args) -> jax.Array:
        state = jax.tree.map(lambda x: x, template)  # a fresh State: the template stays put
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)(*args)

    return init, apply


def bag_encoder_from_flax(
    module_or_factory, *, kind: str = "linen", seq_len: int = 1
) -> tuple[Init, Apply]:
    """A phi encoder `(init, apply)` from a Flax module over a user's padded bag of items.

    Input convention (that of the phi encoder), for a batch of `b` users with `L` slots:
    the module is called as `module(items, rating, mask)` with

      items: i32[b, L] item ids (padding slots hold any id, e.g. 0),
      rating: f32[b, L] the user's rating / interest weight of each item,
      mask: bool[b, L] True for real entries, False for padding,

    and returns `z: f32[b, D]`, the user representation. The module owns its item embedding
    table (e.g. `nn.Embed(n_items, d)`) and must ignore masked slots itself (e.g. pass
    `mask[:, None, None, :]` to attention and pool with the mask as weights).

    Args:
      module_or_factory: for kind "linen", a `flax.linen.Module`; for kind "nnx", a factory
        `lambda rngs: MyModule(..., rngs=rngs)` or an `nnx.Module` (see `from_nnx`).
      kind: "linen" or "nnx".
      seq_len: L of the dummy bag `(zeros i32[1, L], ones f32[1, L], ones bool[1, L])` with which
        a Linen module is initialised (only matters when its param shapes depend on L).

    Returns:
      `init(key) -> params` and `apply(params, items, rating, mask) -> f32[b, D]`.
    """
    if kind == "linen":
        dummy = (
            jnp.zeros((1, seq_len), jnp.int32),
            jnp.ones((1, seq_len), jnp.float32),
            jnp.ones((1, seq_len), bool),
        )
        init, inner = from_linen(module_or_factory, *dummy)
    elif kind == "nnx":
        init, inner = from_nnx(module_or_factory)
    else:
        raise ValueError(f"bag_encoder_from_flax: kind={kind!r}; valid: linen, nnx")

    def apply(params: dict, items: jax.Array, rating: jax.Array, mask: jax.Array) -> jax.Array:
        z = inner(params, items, rating, mask)
        if getattr(z, "ndim", None) != 2 or z.shape[0] != items.shape[0]:
            raise ValueError(
                f"bag_encoder_from_flax: the module returned shape {getattr(z, 'shape', z)} for "
                f"items {items.shape}; a phi encoder returns f32[b, D]"
            )
        return z

    return init, apply
