"""Row-sparse optimizers and MF steps: numpy SparseAdam / row-wise Adagrad references,
untouched rows bit-identical, equality with optax when every row is touched, sparse MF steps
equal to the dense loss and gradient, EMCDR accuracy, vmapped seeds, no recompiles."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests import train_stage, view0
from tests.faults import SMALL
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.methods.api import make_optimizer
from transferjax.methods.mf import MFConfig
from transferjax.methods.registry import get_method
from transferjax.models.mf import mf_init, mf_loss
from transferjax.models.mf_sparse import mf_row_loss, mf_rows, mf_sparse_step
from transferjax.models.sparse import coalesce, lazy_adam, make_sparse_optimizer, rowwise_adagrad
from transferjax.train.evaluate import make_evaluate
from transferjax.train.trainer import make_epoch_fn, make_train

N, D = 7, 3


def _np_lazy_adam(w, m, v, steps, *, lr, b1=0.9, b2=0.999, eps=1e-8):
    """PyTorch SparseAdam semantics (eps on the bias-corrected sqrt(v), as optax)."""
    w, m, v = (np.array(a, np.float64) for a in (w, m, v))
    for t, (idx, g) in enumerate(steps, start=1):
        acc = {}
        for r, gr in zip(idx, np.asarray(g, np.float64), strict=True):
            if 0 <= r < len(w):
                acc[int(r)] = acc.get(int(r), 0.0) + gr
        for r, gr in acc.items():
            m[r] = b1 * m[r] + (1 - b1) * gr
            v[r] = b2 * v[r] + (1 - b2) * gr**2
            w[r] -= lr * (m[r] / (1 - b1**t)) / (np.sqrt(v[r] / (1 - b2**t)) + eps)
    return w, m, v


def _steps(seed=0, n_steps=4, k=6):
    """Index batches with duplicates and padding (-1 and N); rows 2 and 6 are never touched."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_steps):
        idx = rng.choice([0, 1, 3, 4, 5], size=k).astype(np.int32)
        idx[0] = idx[1]  # a duplicate
        idx[-1], idx[-2] = -1, N  # padding
        out.append((idx, rng.normal(size=(k, D)).astype(np.float32)))
    return out


@pytest.mark.parametrize("scratch", [True, False], ids=["scratch", "sort"])
@pytest.mark.slow
def test_coalesce_sums_duplicates_and_drops_padding(scratch, monkeypatch):
    from transferjax.models import sparse as S

    monkeypatch.setattr(S, "SCRATCH_ROWS_PER_INDEX", 1 << 20 if scratch else 0)
    idx = jnp.asarray([3, 1, 3, -1, 5, 9], jnp.int32)
    g = jnp.arange(6, dtype=jnp.float32)[:, None] * jnp.ones((1, 2), jnp.float32)
    uidx, gsum = coalesce(idx, g, 6)
    rows = {int(r): gsum[j, 0] for j, r in enumerate(np.asarray(uidx)) if r != 6}
    assert sorted(rows) == [1, 3, 5] and np.sum(np.asarray(uidx) == 6) == 3
    assert {r: float(v) for r, v in rows.items()} == {1: 1.0, 3: 2.0, 5: 4.0}
    if not scratch:
        np.testing.assert_array_equal(uidx, [1, 3, 5, 6, 6, 6])  # ascending, then sentinels
    rng = np.random.default_rng(0)  # against numpy on a larger draw with many duplicates
    ri = rng.integers(-3, 40, 200).astype(np.int32)
    rg = rng.normal(size=(200, 3)).astype(np.float32)
    uidx, gsum = coalesce(jnp.asarray(ri), jnp.asarray(rg), 37)
    got = {int(r): np.asarray(gsum[j]) for j, r in enumerate(np.asarray(uidx)) if r != 37}
    want = {int(r): rg[ri == r].sum(0) for r in np.unique(ri[(ri >= 0) & (ri < 37)])}
    assert sorted(got) == sorted(want)
    for r in want:
        np.testing.assert_allclose(got[r], want[r], rtol=1e-5, atol=1e-5)


def test_lazy_adam_matches_numpy_sparse_adam():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(N, D)).astype(np.float32)
    opt = lazy_adam(lr=0.05)
    params = {"table": jnp.asarray(w0)}
    state = opt.init(params)
    m0 = np.array(state.slots["table"][0])
    upd = jax.jit(opt.sparse_update)
    steps = _steps()
    for idx, g in steps:
        params, state = upd(params, state, {"table": (jnp.asarray(idx), jnp.asarray(g))}, {})
    w, m, v = _np_lazy_adam(w0, m0, m0, steps, lr=0.05)
    np.testing.assert_allclose(params["table"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.slots["table"][0], m, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state.slots["table"][1], v, rtol=1e-5, atol=1e-9)
    assert int(state.count) == len(steps)
    for r in (2, 6):  # never touched: bit-identical params, zero moments
        np.testing.assert_array_equal(params["table"][r], w0[r])
        assert not np.any(state.slots["table"][0][r]) and not np.any(state.slots["table"][1][r])


def test_lazy_adam_equals_optax_adam_when_every_row_is_touched():
    rng = np.random.default_rng(2)
    params = {
        "table": jnp.asarray(rng.normal(size=(N, D)), jnp.float32),
        "bias": jnp.zeros((N,), jnp.float32),
        "mu": jnp.asarray(0.3, jnp.float32),
    }
    ref, ref_opt = params, optax.adam(0.02)
    ref_state = ref_opt.init(ref)
    opt = lazy_adam(lr=0.02)
    state = opt.init(params)

    @jax.jit
    def ref_step(g, s, p):
        with jax.numpy_dtype_promotion("standard"):
            u, s = ref_opt.update(g, s, p)
            return optax.apply_updates(p, u), s

    upd = jax.jit(opt.sparse_update)
    for _t in range(5):
        g = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
        perm = jnp.asarray(rng.permutation(N), jnp.int32)
        rows = {k: (perm, g[k][perm]) for k in ("table", "bias")}
        params, state = upd(params, state, rows, {"mu": g["mu"]})
        ref, ref_state = ref_step(g, ref_state, ref)
    for k in params:
        np.testing.assert_allclose(params[k], ref[k], rtol=1e-5, atol=1e-6)


def test_rowwise_adagrad_matches_numpy_and_optax_on_vectors():
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=(N, D)).astype(np.float32)
    b0 = rng.normal(size=(N,)).astype(np.float32)
    opt = rowwise_adagrad(lr=0.1)
    params = {"table": jnp.asarray(w0), "bias": jnp.asarray(b0)}
    state = opt.init(params)
    assert state.slots["table"][0].shape == (N,)  # one accumulator per row
    steps = _steps(seed=4)
    w, G = w0.astype(np.float64), np.full(N, 0.1)
    ref_b, ref_opt = {"bias": jnp.asarray(b0)}, optax.adagrad(0.1)
    ref_state = ref_opt.init(ref_b)
    for idx, g in steps:
        gb = g[:, 0]
        rows = {
            "table": (jnp.asarray(idx), jnp.asarray(g)),
            "bias": (jnp.asarray(idx), jnp.asarray(gb)),
        }
        params, state = opt.sparse_update(params, state, rows, {})
        acc = {}
        for r, gr in zip(idx, g.astype(np.float64), strict=True):
            if 0 <= r < N:
                acc[int(r)] = acc.get(int(r), 0.0) + gr
        dense_b = np.zeros(N, np.float32)
        for r, gr in acc.items():
            G[r] += np.mean(gr**2)
            w[r] -= 0.1 * gr / np.sqrt(G[r] + 1e-7)
            dense_b[r] = gr[0]
        with jax.numpy_dtype_promotion("standard"):
            u, ref_state = ref_opt.update({"bias": jnp.asarray(dense_b)}, ref_state, ref_b)
            ref_b = optax.apply_updates(ref_b, u)
    np.testing.assert_allclose(params["table"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.slots["table"][0], G, rtol=1e-5)
    np.testing.assert_array_equal(params["table"][2], w0[2])
    # 1-D leaves: per-element accumulators; equals optax.adagrad on the touched entries.
    np.testing.assert_allclose(params["bias"], ref_b["bias"], rtol=1e-5, atol=1e-6)


def test_learning_rate_is_a_traced_hyperparameter():
    opt = lazy_adam(lr=0.1)
    params = {"table": jnp.ones((N, D), jnp.float32)}
    upd = jax.jit(chex.assert_max_traces(opt.sparse_update, n=1))
    grads = {"table": (jnp.asarray([0, 1], jnp.int32), jnp.ones((2, D), jnp.float32))}
    outs = []
    for lr in (0.1, 0.0):
        state = opt.init(params)
        state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        outs.append(upd(params, state, grads, {})[0]["table"])
    np.testing.assert_allclose(outs[0][0], 0.9, rtol=1e-5)  # Adam's first step moves by lr
    np.testing.assert_array_equal(outs[1], params["table"])
    with pytest.raises(NotImplementedError):
        opt.update({}, opt.init(params))
    with pytest.raises(ValueError, match="adam or adagrad"):
        make_sparse_optimizer("sgd", lr=0.1)


def _mf_batch(n_users=6, n_items=5, b=8, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones(b, bool)
    mask[-2:] = False
    user = rng.integers(1, n_users, size=b).astype(np.int32)
    item = rng.integers(1, n_items, size=b).astype(np.int32)
    user[~mask], item[~mask] = 0, 0  # padding points at row 0, which nothing else touches
    return {
        "user": jnp.asarray(user),
        "item": jnp.asarray(item),
        "rating": jnp.asarray(rng.uniform(1, 5, size=b), jnp.float32),
        "mask": jnp.asarray(mask),
    }


@pytest.mark.parametrize("kind", ["mse", "bpr", "bce"])
@pytest.mark.slow
def test_mf_rows_loss_and_gradient_equal_dense(kind):
    mf = mf_init(jax.random.key(0), n_users=6, n_items=5, dim=D, mu=3.0)
    batch, key = _mf_batch(), jax.random.key(7)
    dense_loss, dense_g = jax.value_and_grad(
        lambda p: mf_loss(p, batch, kind=kind, reg=0.01, key=key)[0]
    )(mf)
    rows, idx = mf_rows(mf, batch, key, kind=kind)
    loss, (g_rows, g_mu) = jax.value_and_grad(
        lambda r, mu: mf_row_loss(r, mu, batch, kind=kind, reg=0.01)[0], argnums=(0, 1)
    )(rows, mf["mu"])
    np.testing.assert_allclose(loss, dense_loss, rtol=1e-6)
    np.testing.assert_allclose(g_mu, dense_g["mu"], rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(idx["user"])[-2:] == -1)
    neg = kind != "mse"
    pairs = [
        ("user", "user", "user"),
        ("user_bias", "user_bias", "user"),
        ("item", "item", "item"),
        ("item_bias", "item_bias", "item"),
    ]
    for table, row, ix in pairs:
        g = np.asarray(g_rows[row])
        if neg and table.startswith("item"):
            g = np.concatenate([g, np.asarray(g_rows["neg" if table == "item" else "neg_bias"])])
        ref = np.zeros(mf[table].shape, np.float64)
        i = np.asarray(idx[ix])
        np.add.at(ref, i[i >= 0], g[i >= 0])
        np.testing.assert_allclose(dense_g[table], ref, rtol=1e-5, atol=1e-7)
        if not neg:  # padding rows got zero gradient and no dense gradient reaches row 0
            assert not np.any(g[i < 0]) and not np.any(np.asarray(dense_g[table])[0])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mse", "bpr", "bce"])
def test_one_sparse_mf_step_equals_one_dense_adam_step(kind):
    """At the first step lazy and dense Adam agree on every row (zero gradient -> no move);
    row 0, touched only by padding, keeps its params and moments bit-identical."""
    mf = mf_init(jax.random.key(1), n_users=6, n_items=5, dim=D, mu=3.0)
    batch, key = _mf_batch(seed=2), jax.random.key(3)
    opt = lazy_adam(lr=0.05)
    step = jax.jit(mf_sparse_step(kind=kind, reg=0.01, optimizer=opt))
    part, state, loss, _ = step(mf, opt.init(mf), {}, batch, key)
    dense = make_optimizer("adam", lr=0.05)
    dl, g = jax.value_and_grad(lambda p: mf_loss(p, batch, kind=kind, reg=0.01, key=key)[0])(mf)
    with jax.numpy_dtype_promotion("standard"):
        u, _ = dense.update(g, dense.init(mf), mf)
        ref = optax.apply_updates(mf, u)
    np.testing.assert_allclose(loss, dl, rtol=1e-6)
    for k in mf:
        np.testing.assert_allclose(part[k], ref[k], rtol=1e-5, atol=1e-6)
    if kind == "mse":  # BPR's negatives may hit row 0 of the items
        for k in ("user", "item", "user_bias", "item_bias"):
            np.testing.assert_array_equal(part[k][0], mf[k][0])
            assert not np.any(state.slots[k][0][0]) and not np.any(state.slots[k][1][0])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mse", "bpr", "bce"])
def test_padding_rows_change_nothing(kind):
    """Row 0 gets real moments at step 1; at step 2 it appears only in masked slots and keeps
    its params and moments bit-identical (lazy Adam would otherwise move it by momentum)."""
    mf = mf_init(jax.random.key(1), n_users=6, n_items=5, dim=D, mu=3.0)
    opt = lazy_adam(lr=0.05)
    step = jax.jit(mf_sparse_step(kind=kind, reg=0.01, optimizer=opt))
    first = _mf_batch(seed=2)
    first = {**first, "mask": jnp.ones_like(first["mask"])}  # row 0 is a real example here
    part, state, _, _ = step(mf, opt.init(mf), {}, first, jax.random.key(3))
    second = _mf_batch(seed=5)  # row 0 only under the mask
    users = ("user", "user_bias")  # BPR negatives may hit item 0: users only
    new, new_state, _, _ = step(part, state, {}, second, jax.random.key(4))
    assert np.any(state.slots["user"][0][0])  # row 0 had real moments
    for k in users + (("item", "item_bias") if kind == "mse" else ()):
        np.testing.assert_array_equal(new[k][0], part[k][0])
        for a, b in zip(new_state.slots[k], state.slots[k], strict=True):
            np.testing.assert_array_equal(a[0], b[0])
    assert int(new_state.count) == 2


def _cfg(method="emcdr", sparse=False, epochs=4, mf_epochs=6):
    return C.RunConfig(
        method=method,
        data=C.DataConfig(name="synthetic", synthetic=SMALL),
        protocol=C.ProtocolConfig(beta=0.3, seed=1),
        trainer=C.TrainerConfig(lr=1e-2, batch_size=128, epochs=epochs),
        mf=MFConfig(dim=12, reg=1e-3, epochs=mf_epochs, lr=1e-2, batch_size=256, sparse=sparse),
    )


@pytest.fixture(scope="module")
def split():
    cfg = _cfg()
    return build_split(cfg.protocol, build_dataset(cfg.data))


def _train(cfg, split, keys):
    return make_train(cfg, split, evaluate=make_evaluate(cfg, split))(keys)


@pytest.mark.slow
def test_cmf_sparse_first_step_equals_dense(split):
    cfg = _cfg("cmf", sparse=True)
    built = get_method("cmf").build(cfg, split)
    dense_built = get_method("cmf").build(_cfg("cmf"), split)
    one = {k: v[:128] for k, v in built.stages[0].examples.items()}  # one batch, one step
    stage, dstage = (dataclasses.replace(b.stages[0], examples=one) for b in (built, dense_built))
    assert stage.step is not None and dstage.step is None
    ex = {k: jnp.asarray(v) for k, v in one.items()}
    (ps, _, s_stats), (pd, _, d_stats) = (  # same key: equal initial params (each donated)
        make_epoch_fn(st)(
            p["cmf"],
            st.optimizer.init(p["cmf"]),
            {"source_rows": p["source_rows"], "hyper": p["hyper"]},
            ex,
            jax.random.key(5),
        )
        for st, p in ((stage, view0(built)), (dstage, view0(dense_built)))
    )
    np.testing.assert_allclose(s_stats["loss"], d_stats["loss"], rtol=1e-6)
    chex.assert_trees_all_close(ps, pd, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_emcdr_sparse_close_to_dense(split):
    key = jax.random.key(0)
    dense = _train(_cfg(), split, key).best["test"]["rmse"]
    sparse = _train(_cfg(sparse=True), split, key).best["test"]["rmse"]
    assert np.isfinite(sparse) and sparse <= dense + 0.03, (sparse, dense)


@pytest.mark.slow
def test_vmapped_seeds_with_sparse_updates(split):
    cfg = _cfg("mf", sparse=True, epochs=2)
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
    res = _train(cfg, split, keys)
    single = _train(cfg, split, jax.random.key(1))
    assert len(res) == 2 and res[0].history[-1]["valid"] != res[1].history[-1]["valid"]
    for a, b in zip(jax.tree.leaves(res[1].params), jax.tree.leaves(single.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sparse_epochs_do_not_recompile(split):
    cfg = _cfg("mf", sparse=True)
    built = get_method("mf").build(cfg, split)
    params = view0(built)
    for stage in built.stages:
        chex.clear_trace_counter()
        assert stage.step is not None
        stage = dataclasses.replace(stage, step=chex.assert_max_traces(stage.step, n=1))
        params, stats = train_stage(stage, params, 3)
        assert all(np.isfinite(s["loss"]) for s in stats)
