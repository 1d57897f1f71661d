"""phi encoders by name (`cfg.phi.encoder`): the built-in kinds and users' own.

The built-ins are the kinds of `transferjax.models.phi` ("bag", "attention", "id"). A user's
own encoder is registered with a `make` function:

    register_encoder(name, make)
    make(*, n_items: int, n_users: int, dims: tuple) -> (init, apply)
    init(key) -> params
    apply(params, items i32[b, L], rating f32[b, L], mask bool[b, L]) -> f32[b, dims[-1]]

`apply` reads a batch of users' input entries of one domain (mask: the real entries; padded
slots hold any item id) with their raw ratings (1.0 for implicit feedback), and returns the
users' phi outputs; dims[-1] is the common space the heads read. Each phi method calls `make`
once per domain (source and target), so the two encoders have their own params.
`transferjax.models.flax_adapter.bag_encoder_from_flax` turns a Flax module into such a pair.
"""

from __future__ import annotations

from collections.abc import Callable

from transferjax.models import phi as PHI

__all__ = ["available_encoders", "domain_encoder", "get_encoder", "register_encoder"]

_ENCODERS: dict[str, Callable] = {}


def register_encoder(name: str, make: Callable) -> Callable:
    """Registers `make` (module docstring) as the phi encoder `name`; returns `make`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_encoder: name must be a non-empty str, got {name!r}")
    if name in PHI.KINDS:
        raise ValueError(f"phi encoder {name!r} is built in; choose another name")
    if name in _ENCODERS and _ENCODERS[name] is not make:
        raise ValueError(f"phi encoder {name!r} is already registered")
    if not callable(make):
        raise TypeError(f"register_encoder({name!r}): make must be callable, got {make!r}")
    _ENCODERS[name] = make
    return make


def available_encoders() -> list[str]:
    """Names valid as `phi.encoder`: the built-in kinds, then the registered ones."""
    return [*PHI.KINDS, *sorted(_ENCODERS)]


def get_encoder(name: str) -> str | Callable:
    """The built-in kind `name`, or the registered `make`; ValueError listing the valid names."""
    if name in PHI.KINDS:
        return name
    if name not in _ENCODERS:
        raise ValueError(
            f"unknown phi encoder {name!r} (phi.encoder); valid: "
            f"{', '.join(available_encoders())} (register your own with "
            "transferjax.methods.phi.register_encoder)"
        )
    return _ENCODERS[name]


def domain_encoder(name: str, spec, *, dims) -> tuple[Callable, Callable]:
    """phi of one domain: `(init(key), apply(params, items, rating, mask, users, *, distinct))`.

    Args:
      name: `phi.encoder`.
      spec: the domain's `transferjax.methods.phi.bags.DomainSpec`.
      dims: `phi.dims`.
    """
    dims = tuple(int(d) for d in dims)
    found = get_encoder(name)
    if isinstance(found, str):
        return PHI.encoder(
            kind=found,
            n_items=spec.n_items,
            n_users=spec.n_users,
            dims=dims,
            mu=spec.mu,
            explicit=spec.explicit,
            capacity=spec.capacity,
        )
    init, inner = found(n_items=spec.n_items, n_users=spec.n_users, dims=dims)

    def apply(params, items, rating, mask, users=None, *, distinct: bool = False):
        z = inner(params, items, rating, mask)
        want = (mask.shape[0], dims[-1])
        if getattr(z, "shape", None) != want:
            raise ValueError(
                f"phi encoder {name!r} returned shape {getattr(z, 'shape', z)}; "
                f"expected f32{list(want)} (batch, phi.dims[-1])"
            )
        return z

    return init, apply
