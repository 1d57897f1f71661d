"""Alignment objectives: registry, finite values, masks, DANN's reversed encoder gradient, every
registered phi method (one per objective) training without recompiles, and a custom objective
registered here training the phi model end to end."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import train_stage, view0
from transferjax import config as C
from transferjax.align import AlignConfig
from transferjax.align import distances as al
from transferjax.align import objectives as ob
from transferjax.data.registry import build_dataset, build_split
from transferjax.methods.phi import PhiConfig
from transferjax.methods.phi.model import build_phi
from transferjax.methods.registry import get_method
from transferjax.models.discriminator import discriminator_apply

BUILTIN = ("none", "dann", "mmd", "coral", "infonce")


def _cfg(**align):
    return C.RunConfig(align=AlignConfig(**align))


def _z(seed, n=12, d=5, shift=0.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, d)) + shift, jnp.float32)


def _masks(n=12):
    ms = np.ones(n, bool)
    ms[[2, 7]] = False
    mt = np.ones(n, bool)
    mt[[0, 7, 9]] = False
    return jnp.asarray(ms), jnp.asarray(mt)


def _call(name, z_s, z_t, cfg, *, params=None, step=50.0, total_steps=100, **kw):
    obj = ob.get_objective(name)
    if params is None:
        params = obj.init(jax.random.key(0), dim=z_s.shape[1], cfg=cfg)
    ms, mt = kw.pop("masks", _masks(z_s.shape[0]))
    return obj.fn(
        z_s,
        z_t,
        mask_s=ms,
        mask_t=mt,
        paired=True,
        params=params,
        step=jnp.float32(step),
        total_steps=total_steps,
        cfg=cfg,
        key=jax.random.key(1),
    )


def test_registry_lists_builtins_and_rejects_unknown():
    assert set(BUILTIN) <= set(ob.available_objectives())
    with pytest.raises(ValueError, match="valid: .*coral.*dann.*infonce.*mmd.*none"):
        ob.get_objective("wasserstein")
    with pytest.raises(ValueError, match="already registered"):
        ob.register_objective("mmd")(lambda z_s, z_t, **_: (0.0, {}))


@pytest.mark.parametrize(
    ("name", "estimator"), [(n, "unbiased") for n in BUILTIN] + [("mmd", "linear")]
)
@pytest.mark.slow
def test_every_objective_finite_scalar_and_gradient(name, estimator):
    cfg = _cfg(mmd_estimator=estimator)
    z_s = _z(0)
    z_t = _z(1, shift=0.5).at[7].set(0.0)  # a masked all-zero row must not produce NaN grads
    f = jax.jit(lambda a, b: _call(name, a, b, cfg))
    loss, aux = f(z_s, z_t)
    assert loss.shape == () and np.isfinite(float(loss))
    assert all(np.isfinite(float(v)) for v in aux.values())
    g = jax.jit(jax.grad(lambda a, b: f(a, b)[0], argnums=(0, 1)))(z_s, z_t)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in g)
    if name != "none":
        assert float(jnp.abs(g[1]).sum()) > 0.0


@pytest.mark.slow
def test_masked_rows_do_not_count():
    """Changing rows outside the masks leaves every objective unchanged."""
    cfg = _cfg(lam_schedule="constant")
    z_s, z_t = _z(2), _z(3, shift=1.0)
    z_s2 = z_s.at[2].set(100.0).at[7].set(-3.0)
    z_t2 = z_t.at[0].set(50.0).at[9].set(7.0)
    for name in BUILTIN:
        a, _ = _call(name, z_s, z_t, cfg)
        b, _ = _call(name, z_s2, z_t2, cfg)
        np.testing.assert_allclose(float(a), float(b), rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_mmd_and_coral_match_alignment_references():
    ms, mt = _masks()
    z_s, z_t = _z(4), _z(5, shift=0.7)
    cfg = _cfg(mmd_factors=(0.5, 1.0, 2.0))
    bw = al.median_bandwidths(z_s, z_t, factors=(0.5, 1.0, 2.0), mask_x=ms, mask_y=mt)
    want = al.mmd2_unbiased(z_s, z_t, bandwidths=bw, mask_x=ms, mask_y=mt)
    np.testing.assert_allclose(float(_call("mmd", z_s, z_t, cfg)[0]), float(want), rtol=1e-5)
    np.testing.assert_allclose(
        float(_call("coral", z_s, z_t, cfg)[0]),
        float(al.coral(z_s, z_t, mask_s=ms, mask_t=mt)),
        rtol=1e-5,
    )
    # linear estimator: the valid rows of each sample, paired in order, as al.mmd2_linear
    lin = dataclasses.replace(cfg.align, mmd_estimator="linear")
    got = _call("mmd", z_s, z_t, dataclasses.replace(cfg, align=lin))[0]
    xs, yt = np.asarray(z_s)[np.asarray(ms)], np.asarray(z_t)[np.asarray(mt)]
    n = min(len(xs), len(yt)) // 2 * 2
    want = al.mmd2_linear(jnp.asarray(xs[:n]), jnp.asarray(yt[:n]), bandwidths=bw)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    # a shifted target is farther than a resampled source
    same, _ = _call("mmd", z_s, _z(6), cfg)
    assert float(_call("mmd", z_s, _z(6, shift=2.0), cfg)[0]) > float(same) + 0.1


@pytest.mark.slow
def test_dann_reverses_the_encoder_gradient_only():
    """d/dz of the DANN objective = -lam * d/dz of the discriminator's BCE; the discriminator
    itself gets the plain (unreversed) gradient. lam follows align.lam_schedule."""
    z_s, z_t = _z(7), _z(8, shift=0.3)
    ms, mt = _masks()
    cfg = _cfg(lam=0.7, lam_schedule="constant", disc_hidden=8)
    params = ob.get_objective("dann").init(jax.random.key(3), dim=5, cfg=cfg)

    def plain(p, a, b):  # the same pooled BCE without gradient reversal
        ls, lt = discriminator_apply(p, a), discriminator_apply(p, b)
        ws, wt = ms.astype(jnp.float32), mt.astype(jnp.float32)
        return (jnp.sum(ws * jax.nn.softplus(ls)) + jnp.sum(wt * jax.nn.softplus(-lt))) / (
            jnp.sum(ws) + jnp.sum(wt)
        )

    dann = lambda p, a, b: _call("dann", a, b, cfg, params=p)[0]
    gp, ga, gb = jax.grad(dann, argnums=(0, 1, 2))(params, z_s, z_t)
    hp, ha, hb = jax.grad(plain, argnums=(0, 1, 2))(params, z_s, z_t)
    np.testing.assert_allclose(
        float(dann(params, z_s, z_t)), float(plain(params, z_s, z_t)), rtol=1e-6
    )
    np.testing.assert_allclose(np.asarray(ga), -0.7 * np.asarray(ha), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gb), -0.7 * np.asarray(hb), rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(hb).sum()) > 0
    for x, y in zip(jax.tree.leaves(gp), jax.tree.leaves(hp), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)
    # Ganin schedule over the traced step: 0 at the start, about lam at the end
    g = _cfg(lam=0.7, lam_schedule="ganin", gamma=10.0, disc_hidden=8)
    lam = lambda s: float(_call("dann", z_s, z_t, g, params=params, step=s)[1]["lam"])
    assert lam(0.0) == 0.0 and 0.69 < lam(100.0) <= 0.7 and 0.0 < lam(20.0) < lam(60.0)


def test_infonce_needs_pairs():
    cfg = _cfg()
    obj = ob.get_objective("infonce")
    ms, mt = _masks()
    with pytest.raises(ValueError, match="paired"):
        obj.fn(
            _z(0),
            _z(1),
            mask_s=ms,
            mask_t=mt,
            paired=False,
            params={},
            step=0.0,
            total_steps=1,
            cfg=cfg,
            key=jax.random.key(0),
        )
    # aligned pairs score lower than shuffled ones
    z = _z(9, n=16)
    ones = jnp.ones(16, bool)
    kw = dict(masks=(ones, ones))
    assert float(_call("infonce", z, z + 0.01, cfg, **kw)[0]) < float(
        _call("infonce", z, z[::-1], cfg, **dict(masks=(ones, ones)))[0]
    )


# ------------------------------------------------------------------- phi methods, end to end

TINY = C.SyntheticConfig(
    n_overlap=80,
    n_source_only=20,
    n_target_only=20,
    n_items_source=40,
    n_items_target=30,
    density_source=0.2,
    density_target=0.15,
    seed=1,
)


@pytest.fixture(scope="module")
def tiny():
    return build_split(
        C.ProtocolConfig(beta=0.3, seed=0),
        build_dataset(C.DataConfig(name="synthetic", synthetic=TINY)),
    )


def _epochs(built, n: int):
    """n epochs of the built phi stage; returns (params, per-epoch stats)."""
    return train_stage(built.stages[0], view0(built), n)


# every registered phi method, each with another head / encoder / weighting variant
VARIANTS = {
    "phi": {},
    "dann": dict(head="mmoe", task_weighting="uncertainty"),
    "mmd": dict(head="ple", encoder="attention"),
    "coral": dict(encoder="id", max_len=5),
    "infonce": dict(dims=(8, 4)),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(VARIANTS))
def test_every_phi_method_trains_without_recompiling(tiny, method):
    phi = {"dims": (8,), "expert_dim": 8, **VARIANTS[method]}
    cfg = C.RunConfig(
        method=method,
        trainer=C.TrainerConfig(lr=1e-2, batch_size=32, epochs=2),
        phi=PhiConfig(**phi),
    )
    built = get_method(method).build(cfg, tiny)
    chex.clear_trace_counter()
    stage = built.stages[0]
    built = dataclasses.replace(
        built, stages=(dataclasses.replace(stage, loss=chex.assert_max_traces(stage.loss, n=1)),)
    )
    params, stats = _epochs(built, 2)
    assert all(np.isfinite(s["loss"]) for s in stats)
    assert (stats[0]["align"] == 0.0) == (method == "phi")
    if "encoder" in VARIANTS[method]:  # the scoring path of the other encoders
        pairs = jnp.asarray(tiny.test.pairs[:8])
        pred = jax.jit(built.scorer.predict)(params, pairs[:, 0], pairs[:, 1], pairs[:, 1] % 30)
        assert np.all(np.isfinite(np.asarray(pred)))


# ---------------------------------------------------------------------------------- custom


@ob.register_objective("test_mean_l2")
def mean_l2(z_s, z_t, *, mask_s, mask_t, **_):
    """The README example: squared distance of the masked means."""
    ms, mt = mask_s.astype(z_s.dtype), mask_t.astype(z_t.dtype)
    mean = lambda z, m: (m @ z) / jnp.maximum(jnp.sum(m), 1.0)
    loss = jnp.sum((mean(z_s, ms) - mean(z_t, mt)) ** 2)
    return loss, {"gap": loss}


def _train_gap(split, weight: float) -> list:
    cfg = C.RunConfig(
        method="phi",
        trainer=C.TrainerConfig(lr=1e-2, batch_size=32, epochs=3),
        phi=PhiConfig(dims=(8,), expert_dim=8),
        align=AlignConfig(objective="test_mean_l2", weight=weight),
    )
    built = build_phi(cfg, split)
    params, stats = _epochs(built, 3)
    for s in stats:
        assert np.isfinite(s["loss"]) and s["gap"] == s["align"]
    return [s["gap"] for s in stats]


@pytest.mark.slow
def test_custom_objective_trains_the_phi_model_end_to_end(tiny):
    free, aligned = _train_gap(tiny, 0.0), _train_gap(tiny, 10.0)
    # the objective is computed either way; with weight it pulls the target mean to the source
    assert free[-1] > 0 and aligned[-1] < 0.5 * free[-1], (free, aligned)
