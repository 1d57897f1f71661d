"""Flax adapter: Linen and NNX modules as (init, apply) pairs; the phi-encoder bag convention."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

pytest.importorskip("flax")

from flax import linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

from transferjax.models import flax_adapter as fa  # noqa: E402

X = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), jnp.float32)


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2, name="out")(nn.relu(nn.Dense(4, name="hidden")(x)))


class NnxMLP(nnx.Module):
    def __init__(self, *, rngs):
        self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])

    def __call__(self, x):
        return self.layers[1](jax.nn.relu(self.layers[0](x)))


def _mlps():
    """(kind, init, apply, [(kernel path, bias path)] per layer) for both MLPs."""
    li, la = fa.from_linen(LinenMLP(), X)
    ni, na = fa.from_nnx(lambda rngs: NnxMLP(rngs=rngs))
    return [
        ("linen", li, la, [("hidden",), ("out",)]),
        ("nnx", ni, na, [("layers", "0"), ("layers", "1")]),
    ]


def _layers(params, paths):
    """[(W f64[in, out], b f64[out])] read from the params dict."""
    out = []
    for path in paths:
        node = params
        for k in path:
            node = node[k]
        out.append((np.asarray(node["kernel"], np.float64), np.asarray(node["bias"], np.float64)))
    return out


def _np_mlp(layers, x):
    (w1, b1), (w2, b2) = layers
    return np.maximum(np.asarray(x, np.float64) @ w1 + b1, 0.0) @ w2 + b2


@pytest.mark.parametrize("i", [0, 1], ids=["linen", "nnx"])
def test_mlp_matches_numpy_forward(i):
    _, init, apply, paths = _mlps()[i]
    params = init(jax.random.key(0))
    paths_of_leaves = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    assert all(isinstance(k.key, str) for path in paths_of_leaves for k in path)  # checkpointable
    ref = _np_mlp(_layers(params, paths), X)
    np.testing.assert_allclose(apply(params, X), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(apply)(params, X), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("i", [0, 1], ids=["linen", "nnx"])
def test_grad_matches_jax_reference_and_finite_differences(i):
    _, init, apply, paths = _mlps()[i]
    params = init(jax.random.key(1))
    y = jnp.asarray(np.random.default_rng(1).normal(size=(5, 2)), jnp.float32)
    loss = lambda p: jnp.mean((apply(p, X) - y) ** 2)
    grads = jax.jit(jax.grad(loss))(params)

    # hand-written jax reference of the same forward pass
    def ref_loss(p):
        node = lambda path: p[path[0]] if len(path) == 1 else p[path[0]][path[1]]
        (l1, l2) = (node(path) for path in paths)
        h = jax.nn.relu(X @ l1["kernel"] + l1["bias"])
        return jnp.mean((h @ l2["kernel"] + l2["bias"] - y) ** 2)

    ref = jax.grad(ref_loss)(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, ref)

    # central finite differences of the float64 numpy forward, over every weight
    leaves, treedef = jax.tree.flatten(jax.tree.map(lambda a: np.asarray(a, np.float64), params))
    sizes = np.cumsum([leaf.size for leaf in leaves])[:-1]

    def np_loss(v):
        parts = [a.reshape(leaf.shape) for a, leaf in zip(np.split(v, sizes), leaves)]
        layers = _layers(jax.tree.unflatten(treedef, parts), paths)
        return np.mean((_np_mlp(layers, X) - np.asarray(y, np.float64)) ** 2)

    flat, eps = np.concatenate([leaf.ravel() for leaf in leaves]), 1e-6
    fd = np.array(
        [(np_loss(flat + eps * e) - np_loss(flat - eps * e)) / (2 * eps) for e in np.eye(flat.size)]
    )
    np.testing.assert_allclose(ravel_pytree(grads)[0], fd, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("i", [0, 1], ids=["linen", "nnx"])
def test_vmap_init_over_seeds(i):
    _, init, apply, _ = _mlps()[i]
    keys = jax.random.split(jax.random.key(2), 3)
    stacked = jax.jit(jax.vmap(init))(keys)
    kernels = [np.asarray(leaf) for leaf in jax.tree.leaves(stacked) if leaf.ndim == 3]
    assert kernels and all(not np.allclose(k[0], k[s]) for k in kernels for s in (1, 2))
    out = jax.jit(jax.vmap(apply, in_axes=(0, None)))(stacked, X)
    assert out.shape == (3, 5, 2)
    for s in range(3):
        one = jax.tree.map(lambda leaf, s=s: leaf[s], stacked)
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), one, init(keys[s]))
        np.testing.assert_allclose(out[s], apply(one, X), rtol=1e-6, atol=1e-6)


def test_nnx_instance_keeps_its_weights_and_checkpoints(tmp_path):
    module = NnxMLP(rngs=nnx.Rngs(7))
    init, apply = fa.from_nnx(module)
    params = init(jax.random.key(0))
    np.testing.assert_array_equal(params["layers"]["1"]["kernel"], module.layers[1].kernel[...])
    np.testing.assert_allclose(apply(params, X), module(X), rtol=1e-6)
    from transferjax.train.checkpoint import Checkpointer

    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(0, params, {})
    back = ckpt.restore(0, params)
    ckpt.close()
    np.testing.assert_array_equal(apply(back, X), apply(params, X))


# ----------------------------------------------------------------------------- bag encoders

N_ITEMS, DIM = 12, 8


class LinenSelfAttention(nn.Module):
    """Items embedded, scaled by rating; masked self-attention; masked mean; linear."""

    @nn.compact
    def __call__(self, items, rating, mask):
        e = nn.Embed(N_ITEMS, DIM)(items) * rating[..., None]
        h = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=DIM)(
            e, e, mask=mask[:, None, None, :]
        )
        w = mask.astype(h.dtype)[..., None]
        z = jnp.sum(h * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0)
        return nn.Dense(DIM)(z)


class NnxSelfAttention(nnx.Module):
    def __init__(self, *, rngs):
        self.emb = nnx.Embed(N_ITEMS, DIM, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=2, in_features=DIM, qkv_features=DIM, decode=False, rngs=rngs
        )
        self.out = nnx.Linear(DIM, DIM, rngs=rngs)

    def __call__(self, items, rating, mask):
        e = self.emb(items) * rating[..., None]
        h = self.attn(e, mask=mask[:, None, None, :])
        w = mask.astype(h.dtype)[..., None]
        return self.out(jnp.sum(h * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0))


def _encoders():
    return [
        fa.bag_encoder_from_flax(LinenSelfAttention(), kind="linen"),
        fa.bag_encoder_from_flax(lambda rngs: NnxSelfAttention(rngs=rngs), kind="nnx"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("i", [0, 1], ids=["linen", "nnx"])
def test_attention_bag_encoder_ignores_padding(i):
    init, apply = _encoders()[i]
    init, apply = jax.jit(init), jax.jit(apply)
    params = init(jax.random.key(3))
    items = jnp.asarray([[1, 4, 7, 0], [2, 3, 0, 0], [11, 0, 0, 0]], jnp.int32)
    rating = jnp.asarray([[5.0, 3.0, 1.0, 0.0], [2.0, 4.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
    z = apply(params, items, rating, mask)
    assert z.shape == (3, DIM) and z.dtype == jnp.float32
    assert float(jnp.min(jnp.std(z, 0))) > 0.0  # the users differ
    # other ids and ratings in the padded slots, and three more padded slots: same output
    rng = np.random.default_rng(4)
    items2 = jnp.concatenate([jnp.where(mask, items, 9), jnp.full((3, 3), 5, jnp.int32)], 1)
    junk = jnp.asarray(rng.normal(size=(3, 7)) * 10, jnp.float32)
    rating2 = jnp.where(jnp.pad(mask, ((0, 0), (0, 3))), jnp.pad(rating, ((0, 0), (0, 3))), junk)
    mask2 = jnp.pad(mask, ((0, 0), (0, 3)))
    np.testing.assert_allclose(apply(params, items2, rating2, mask2), z, rtol=1e-5, atol=1e-6)
    # a real item does change it
    assert not np.allclose(apply(params, items, rating, mask.at[0, 3].set(True)), z)
    # gradients are finite and reach the embedding table; seeds vmap
    g = jax.jit(jax.grad(lambda p: jnp.sum(apply(p, items, rating, mask) ** 2)))(params)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))
    stacked = jax.vmap(init)(jax.random.split(jax.random.key(5), 2))
    zs = jax.vmap(apply, in_axes=(0, None, None, None))(stacked, items, rating, mask)
    assert zs.shape == (2, 3, DIM) and not np.allclose(zs[0], zs[1])


def test_bag_encoder_checks_output_shape_and_kind():
    class Flat(nn.Module):
        @nn.compact
        def __call__(self, items, rating, mask):
            return nn.Dense(DIM)(rating[..., None])  # f32[b, L, D], not [b, D]

    init, apply = fa.bag_encoder_from_flax(Flat(), kind="linen")
    with pytest.raises(ValueError, match=r"f32\[b, D\]"):
        apply(
            init(jax.random.key(0)),
            jnp.zeros((2, 3), jnp.int32),
            jnp.ones((2, 3)),
            jnp.ones((2, 3), bool),
        )
    with pytest.raises(ValueError, match="kind='haiku'"):
        fa.bag_encoder_from_flax(Flat(), kind="haiku")


# ----------------------------------------------------------------------------- errors


def test_linen_batch_stats_is_refused_by_name():
    class WithBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False)(nn.Dense(3)(x))

    with pytest.raises(ValueError, match=r"WithBN creates variable collections \['batch_stats'\]"):
        fa.from_linen(WithBN(), X)
    with pytest.raises(TypeError, match="flax.linen.Module"):
        fa.from_linen(NnxMLP(rngs=nnx.Rngs(0)), X)


def test_nnx_non_param_state_is_refused_by_name():
    class WithBN(nnx.Module):
        def __init__(self, *, rngs):
            self.bn = nnx.BatchNorm(3, rngs=rngs)
            self.drop = nnx.Dropout(0.1, rngs=rngs)

    with pytest.raises(ValueError, match=r"bn/mean \(BatchStat\).*drop/rngs/key \(RngKey\)"):
        fa.from_nnx(lambda rngs: WithBN(rngs=rngs))


def test_transferjax_imports_without_flax():
    code = (
        "import sys; sys.modules['flax'] = None\n"
        "import transferjax, transferjax.models, transferjax.methods, transferjax.cli\n"
        "assert 'transferjax.models.flax_adapter' not in sys.modules\n"
        "try:\n    import transferjax.models.flax_adapter\nexcept ImportError as e:\n"
        "    assert '.[flax]' in str(e), e\nelse:\n    raise SystemExit('imported without flax')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).parents[2]),
    )
    assert res.returncode == 0, res.stderr[-2000:]
