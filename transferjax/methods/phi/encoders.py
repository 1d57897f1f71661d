"""phi encoders by name (`cfg.phi.encoder`): the kinds of `transferjax.models.phi`."""

from __future__ import annotations

from collections.abc import Callable

from transferjax.models import phi as PHI

__all__ = ["domain_encoder"]


def domain_encoder(name: str, spec, *, dims) -> tuple[Callable, Callable]:
    """phi of one domain: `(init(key), apply(params, items, rating, mask, users, *, distinct))`.

    Args:
      name: `phi.encoder`, a kind of `transferjax.models.phi`.
      spec: the domain's `transferjax.methods.phi.bags.DomainSpec`.
      dims: `phi.dims`.
    """
    return PHI.encoder(kind=name, n_items=spec.n_items, n_users=spec.n_users, dims=dims,
                       mu=spec.mu, explicit=spec.explicit, capacity=spec.capacity)
