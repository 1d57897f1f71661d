"""Every registered method trains two epochs on tiny synthetic data (explicit and implicit) with a
finite loss, scores finite (candidate scores agreeing with all-item scores), and traces each
stage's loss once (no recompilation)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import train_stage, view0
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.methods.registry import available, get_method

TINY = C.SyntheticConfig(
    n_overlap=120,
    n_source_only=30,
    n_target_only=30,
    n_items_source=50,
    n_items_target=40,
    density_source=0.15,
    density_target=0.1,
    seed=4,
)


def _split(implicit: bool):
    cfg = C.RunConfig(
        data=C.DataConfig(
            name="synthetic", synthetic=C.SyntheticConfig(**{**TINY.__dict__, "implicit": implicit})
        ),
        protocol=C.ProtocolConfig(beta=0.3),
    )
    return cfg, build_split(cfg.protocol, build_dataset(cfg.data))


# The baselines stay in the quick loop (`-m "not slow"`); the methods that train, each a few
# compiled stages, run in the full suite.
QUICK = ("popularity", "item_mean")


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize(
    "method", [pytest.param(m, marks=() if m in QUICK else pytest.mark.slow) for m in available()]
)
def test_method_trains_two_epochs_without_retracing(method, implicit, monkeypatch):
    cfg, split = _split(implicit)
    cfg = C.apply_overrides(
        cfg,
        [
            f"method={method}",
            "mf.dim=4",
            "lightgcn.dim=4",
            "conet.dim=4",
            "conet.layers=8,4",
            "dtcdr.dim=4",
            "disencdr.dim=4",
            "cdrib.dim=4",
            "unicdr.dim=4",
            "dtcdr.layers=8,4",
            "phi.dims=16,8",
            "phi.expert_dim=8",
            "trainer.batch_size=32",
            "mf.batch_size=64",
        ],
    )
    built = get_method(method).build(cfg, split)
    params = view0(built)
    for stage in built.stages:
        chex.clear_trace_counter()
        import dataclasses

        stage = dataclasses.replace(
            stage,
            loss=chex.assert_max_traces(stage.loss, n=1),
            step=None if stage.step is None else chex.assert_max_traces(stage.step, n=1),
        )
        params, stats = train_stage(stage, params, 2)
        assert all(np.isfinite(s["loss"]) for s in stats), (method, stage.name, stats)
    pairs = split.test.pairs
    src, tgt = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
    scores = jax.jit(built.scorer.score_all)(params, src, tgt)  # compiled as evaluation runs it
    assert scores.shape == (len(pairs), split.target_train.n_items)
    assert bool(jnp.all(jnp.isfinite(scores)))
    # candidate scores, gathered or picked from all items' scores, equal score_all's
    from transferjax.methods import api as registry

    n = split.target_train.n_items
    cand = jnp.asarray(np.random.default_rng(0).integers(0, n, (len(pairs), 5)), jnp.int32)
    want = np.take_along_axis(np.asarray(scores), np.asarray(cand), 1)
    for cost in (0, 10**6):
        monkeypatch.setattr(registry, "GATHER_COST", cost)
        # a new function per cost: the rule is read when the scorer is traced
        got = jax.jit(lambda *a: built.scorer.score_items(*a))(params, src, tgt, cand)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{cost}")
    items = jnp.asarray(split.test.item[: len(pairs)] % split.target_train.n_items)
    rating = jax.jit(built.scorer.rating)(params, src[: len(items)], tgt[: len(items)], items)
    assert bool(jnp.all(jnp.isfinite(rating)))
