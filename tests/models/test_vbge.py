"""The VBGE layers' GCN cost rule: W applied on the smaller side of the product."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import vbge as V

# 4 users, 7 items; user 2 has a repeated row.
USERS = np.array([0, 0, 1, 2, 2, 2, 3, 3])
ITEMS = np.array([0, 3, 1, 2, 2, 6, 4, 5])
NU, NI, D = 4, 7, 3


def _dense():
    a = np.zeros((NU, NI))
    np.add.at(a, (USERS, ITEMS), 1.0)
    return a / a.sum(1, keepdims=True), a.T / a.T.sum(1, keepdims=True)


def _graph():
    return {k: jnp.asarray(a) for k, a in V.row_normalized_edges(USERS, ITEMS, NU, NI).items()}


def _dot_rows(fn, x) -> list[int]:
    """Rows of the left operand of every dot in fn's program."""
    jaxpr = jax.make_jaxpr(fn)(x)
    return [e.invars[0].aval.shape[0] for e in jaxpr.eqns if e.primitive.name == "dot_general"]


@pytest.mark.parametrize("to_users", [True, False])
def test_gcn_matches_the_official_order_and_multiplies_on_the_smaller_side(to_users):
    rng = np.random.default_rng(0)
    p = {"w": rng.normal(size=(D, D)), "b": rng.normal(size=D)}
    uv, vu = _dense()
    g = _graph()
    n_in, n_out, a = (NI, NU, uv) if to_users else (NU, NI, vu)
    x = rng.normal(size=(n_in, D))
    y = a @ (x @ p["w"]) + p["b"]  # official: A (x W) + b, then leaky_relu
    ref = np.where(y > 0, y, 0.1 * y)
    up, ip = V._props(g, NU, NI)
    prop = up if to_users else ip
    pj = jax.tree.map(lambda t: jnp.asarray(t, jnp.float32), p)

    def fn(x):
        return V.gcn(pj, x, prop, 0.1, n_out)

    np.testing.assert_allclose(
        np.asarray(fn(jnp.asarray(x, jnp.float32))), ref, rtol=1e-5, atol=1e-6
    )
    assert _dot_rows(fn, jnp.asarray(x, jnp.float32)) == [min(n_in, n_out)]
    ax = prop(jnp.asarray(x, jnp.float32))  # a shared propagation gives the same layer
    np.testing.assert_allclose(
        np.asarray(V.gcn(pj, None, prop, 0.1, ax=ax)), ref, rtol=1e-5, atol=1e-6
    )


def test_split_linear_is_the_concatenated_linear():
    rng = np.random.default_rng(1)
    p = {"w": rng.normal(size=(2 * D, D)), "b": rng.normal(size=D)}
    a, b = rng.normal(size=(5, D)), rng.normal(size=(5, D))
    ref = np.concatenate([a, b], 1) @ p["w"] + p["b"]
    f32 = lambda t: jnp.asarray(t, jnp.float32)  # noqa: E731
    out = V.linear(jax.tree.map(f32, p), f32(a), f32(b))
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-6)
