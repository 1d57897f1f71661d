"""The check shared by the graph methods' tests: no users x items array in a training step or in
full-ranking scoring (the graphs propagate over edge lists)."""

import jax
import jax.numpy as jnp

from tests import view0


def jaxpr_shapes(jaxpr):
    """Every output shape of `jaxpr`'s equations, sub-jaxprs included."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield tuple(getattr(var.aval, "shape", ()))
        for val in eqn.params.values():
            for x in val if isinstance(val, (tuple, list)) else (val,):
                if hasattr(x, "jaxpr") and hasattr(x.jaxpr, "eqns"):
                    yield from jaxpr_shapes(x.jaxpr)
                elif hasattr(x, "eqns"):
                    yield from jaxpr_shapes(x)


def assert_no_users_by_items(built, split, name: str, *, rows=slice(0, 64)) -> set:
    """Asserts that neither one training step of method `name` (its single stage, on the example
    rows `rows`) nor scoring 8 test users against all items builds an array whose shape holds a
    domain's user count and its item count; returns the training step's shapes."""
    (stage,) = built.stages
    v = view0(built)
    sizes = [
        (split.source_train.n_users, split.source_train.n_items),
        (split.target_train.n_users, split.target_train.n_items),
    ]
    batch = {k: jnp.asarray(a[rows]) for k, a in stage.examples.items()}
    batch["mask"] = jnp.ones(len(next(iter(batch.values()))), bool)

    def step(part):
        return jax.value_and_grad(
            lambda q: stage.loss({**v, name: q}, batch, jax.random.key(0))[0]
        )(part)

    pairs = split.test.pairs[:8]
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])

    def evaluate(view):
        return built.scorer.score_all(built.scorer.prepared(view), src, tgt)

    train_shapes = set(jaxpr_shapes(jax.make_jaxpr(step)(v[name]).jaxpr))
    eval_shapes = set(jaxpr_shapes(jax.make_jaxpr(evaluate)(v).jaxpr))
    for shapes in (train_shapes, eval_shapes):
        for nu, ni in sizes:
            assert nu != ni
            bad = {s for s in shapes if nu in s and ni in s}
            assert not bad, bad
    return train_shapes
