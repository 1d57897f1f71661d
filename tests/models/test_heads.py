"""Multi-task heads: shapes, gates are distributions, numpy reference for MMoE, loss weighting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import heads

B, D = 5, 6


def _x(seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, D)), jnp.float32)


def _is_distribution(g, n):
    g = np.asarray(g)
    assert g.shape[-1] == n
    assert np.all(g >= 0)
    np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_shared_bottom_shapes_and_task_independence():
    p = heads.shared_bottom_init(
        jax.random.key(0), in_dim=D, n_tasks=3, bottom=(8,), tower=(4,), out_dim=2
    )
    outs, gates = jax.jit(heads.shared_bottom_apply)(p, _x())
    assert gates is None and len(outs) == 3 and all(o.shape == (B, 2) for o in outs)
    assert not np.allclose(outs[0], outs[1])  # towers are initialised independently


def _relu(a):
    return np.maximum(a, 0.0)


@pytest.mark.slow
def test_mmoe_shapes_gates_and_numpy_reference():
    p = heads.mmoe_init(
        jax.random.key(1), in_dim=D, n_tasks=2, n_experts=3, expert=(7,), tower=(4,), out_dim=1
    )
    x = _x(1)
    outs, gates = jax.jit(heads.mmoe_apply)(p, x)
    assert len(outs) == 2 and all(o.shape == (B, 1) for o in outs)
    assert gates.shape == (2, B, 3)
    _is_distribution(gates, 3)
    # numpy reference
    xn = np.asarray(x, np.float64)
    pe = jax.tree.map(np.asarray, p)
    ex = np.stack(
        [_relu(xn @ pe["experts"][0]["w"][e] + pe["experts"][0]["b"][e]) for e in range(3)]
    )
    for t in range(2):
        logits = xn @ pe["gates"]["w"][t] + pe["gates"]["b"][t]
        g = np.exp(logits - logits.max(1, keepdims=True))
        g /= g.sum(1, keepdims=True)
        np.testing.assert_allclose(gates[t], g, rtol=1e-5, atol=1e-6)
        h = np.einsum("be,ebd->bd", g, ex)
        tw = pe["towers"]
        y = _relu(h @ tw[0]["w"][t] + tw[0]["b"][t]) @ tw[1]["w"][t] + tw[1]["b"][t]
        np.testing.assert_allclose(outs[t], y, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("n_levels", [1, 2])
def test_ple_shapes_and_gates(n_levels):
    n_tasks, et, es = 3, 2, 1
    p = heads.ple_init(
        jax.random.key(2),
        in_dim=D,
        n_tasks=n_tasks,
        n_levels=n_levels,
        n_task_experts=et,
        n_shared_experts=es,
        expert=(8, 5),
        tower=(4,),
        out_dim=2,
    )
    outs, gates = jax.jit(heads.ple_apply)(p, _x(2))
    assert len(outs) == n_tasks and all(o.shape == (B, 2) for o in outs)
    assert all(np.all(np.isfinite(o)) for o in outs)
    assert len(gates) == n_levels
    for lvl, g in enumerate(gates):
        assert g["task"].shape == (n_tasks, B, et + es)
        _is_distribution(g["task"], et + es)
        if lvl < n_levels - 1:
            assert g["shared"].shape == (B, n_tasks * et + es)
            _is_distribution(g["shared"], n_tasks * et + es)
        else:
            assert "shared" not in g


@pytest.mark.slow
def test_ple_task_outputs_depend_only_on_own_and_shared_experts():
    # one level: zeroing task 1's experts must not change task 0's output
    p = heads.ple_init(
        jax.random.key(3),
        in_dim=D,
        n_tasks=2,
        n_levels=1,
        n_task_experts=2,
        n_shared_experts=2,
        expert=(8,),
        tower=(4,),
    )
    x = _x(3)
    apply = jax.jit(heads.ple_apply)
    outs, _ = apply(p, x)
    te = p["levels"][0]["task_experts"]
    zeroed = jax.tree.map(lambda a: a.at[1].set(0.0), te)
    p2 = {**p, "levels": [{**p["levels"][0], "task_experts": zeroed}]}
    outs2, _ = apply(p2, x)
    np.testing.assert_array_equal(outs[0], outs2[0])
    assert not np.allclose(outs[1], outs2[1])


@pytest.mark.slow
def test_heads_are_differentiable():
    p = heads.mmoe_init(jax.random.key(4), in_dim=D, n_tasks=2, n_experts=2)
    g = jax.jit(jax.grad(lambda p: sum(jnp.sum(o) for o in heads.mmoe_apply(p, _x())[0])))(p)
    assert float(jnp.abs(g["gates"]["w"]).sum()) > 0


def test_uncertainty_weights_formula_and_gradient():
    losses = jnp.asarray([0.5, 2.0, 1.5])
    s = jnp.asarray([0.0, 1.0, -0.5])
    ref = np.sum(np.exp(-np.asarray(s)) * np.asarray(losses) + np.asarray(s))
    np.testing.assert_allclose(heads.uncertainty_weights(losses, s), ref, rtol=1e-6)
    # d/ds_i = 1 - exp(-s_i) L_i: zero at the optimum s_i = log L_i
    g = jax.grad(heads.uncertainty_weights, argnums=1)(losses, jnp.log(losses))
    np.testing.assert_allclose(g, np.zeros(3), atol=1e-6)
    with pytest.raises(ValueError):
        heads.uncertainty_weights(losses, s[:2])


def test_fixed_weights():
    losses = jnp.asarray([0.5, 2.0])
    assert float(heads.fixed_weights(losses, weights=(1.0, 0.25))) == pytest.approx(1.0)
    w = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(
        jax.vmap(lambda w: heads.fixed_weights(losses, weights=w))(w), [0.5, 2.0]
    )
