"""ELL embedding bag: X @ table and X^T @ g against a numpy dense reference; layouts; errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import ell
from transferjax.models.encoders import bag_encoder_init, dense_encoder_apply


def _bags(rng, n_rows=6, n_items=13, nnz=40):
    row = rng.integers(0, n_rows - 1, nnz).astype(np.int32)  # the last row stays empty
    item = rng.integers(0, n_items, nnz).astype(np.int32)  # repeats allowed: they add up
    w = rng.uniform(0.5, 5.0, nnz).astype(np.float32)
    dense = np.zeros((n_rows, n_items), np.float64)
    np.add.at(dense, (row, item), w)
    return row, item, w, dense


@pytest.mark.parametrize("width", [1, 4, 16])
def test_bag_matmul_equals_dense_values_and_gradients(width):
    rng = np.random.default_rng(width)
    row, item, w, dense = _bags(rng)
    lay = ell.bag_layout(row, item, w, n_rows=6, n_items=13, width=width)
    assert lay["fwd"]["idx"].shape[1] == width and np.all(np.diff(lay["fwd"]["seg"]) >= 0)
    table = rng.normal(size=(13, 5)).astype(np.float32)
    out = jax.jit(lambda t: ell.bag_matmul(t, lay, n_rows=6))(table)
    np.testing.assert_allclose(out, dense @ table, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(out)[5] == 0)  # the empty row
    g = rng.normal(size=(6, 5)).astype(np.float32)
    grad = jax.jit(jax.grad(lambda t: jnp.sum(ell.bag_matmul(t, lay, n_rows=6) * g)))(table)
    np.testing.assert_allclose(grad, dense.T @ g, rtol=1e-5, atol=1e-5)  # X^T g via "bwd"


@pytest.mark.parametrize("item_blocks", [2, 3, 13])
def test_item_blocks_group_forward_chunks_by_item_range(item_blocks):
    rng = np.random.default_rng(10 + item_blocks)
    row, item, w, dense = _bags(rng, nnz=60)
    lay = ell.bag_layout(row, item, w, n_rows=6, n_items=13, width=4, item_blocks=item_blocks)
    fwd = lay["fwd"]
    block = np.where(fwd["w"] > 0, fwd["idx"] * item_blocks // 13, -1)
    chunk_block = block.max(axis=1)
    assert np.all((block == chunk_block[:, None]) | (block == -1))  # one block per chunk
    assert np.all(np.diff(chunk_block) >= 0)  # chunks laid out block after block
    np.testing.assert_array_equal(lay["bwd"]["idx"], ell.bag_layout(
        row, item, w, n_rows=6, n_items=13, width=4)["bwd"]["idx"])  # backward unchanged
    table = rng.normal(size=(13, 5)).astype(np.float32)
    np.testing.assert_allclose(ell.bag_matmul(table, lay, n_rows=6), dense @ table,
                               rtol=1e-5, atol=1e-5)
    g = rng.normal(size=(6, 5)).astype(np.float32)
    grad = jax.grad(lambda t: jnp.sum(ell.bag_matmul(t, lay, n_rows=6) * g))(table)
    np.testing.assert_allclose(grad, dense.T @ g, rtol=1e-5, atol=1e-5)


def test_layout_chunks_hold_every_entry_once():
    rng = np.random.default_rng(1)
    row, item, w, dense = _bags(rng, nnz=50)
    lay = ell.ell_layout(row, item, w, n_seg=6, width=4)
    counts = np.bincount(row, minlength=6)
    np.testing.assert_array_equal(np.bincount(lay["seg"], minlength=6), -(-counts // 4))
    rebuilt = np.zeros_like(dense)
    np.add.at(rebuilt, (np.repeat(lay["seg"], 4), lay["idx"].ravel()), lay["w"].ravel())
    np.testing.assert_allclose(rebuilt, dense, rtol=1e-6)  # padding slots carry weight 0


def test_ell_encoder_equals_dense_encoder():
    rng = np.random.default_rng(2)
    row, item, w, dense = _bags(rng)
    lay = ell.bag_layout(row, item, w, n_rows=6, n_items=13, width=4)
    params = bag_encoder_init(jax.random.key(0), n_items=13, dims=(8, 4))
    params["b"] = params["b"] + 0.05
    ref = dense_encoder_apply(params, jnp.asarray(dense, jnp.float32))
    np.testing.assert_allclose(ell.ell_encoder_apply(params, lay, n_rows=6), ref,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("item_blocks", [1, 2])
def test_stacked_pool_indexed_in_a_scan_equals_each_batch(item_blocks):
    rng = np.random.default_rng(3)
    batches = [_bags(rng, nnz=n) for n in (10, 45, 0)]  # unequal chunk counts, one empty
    pool = jax.tree.map(jnp.asarray, ell.stack_layouts(
        [ell.bag_layout(r, i, w, n_rows=6, n_items=13, width=4, item_blocks=item_blocks)
         for r, i, w, _ in batches]))
    table = rng.normal(size=(13, 3)).astype(np.float32)

    def body(t, j):
        lay = jax.tree.map(lambda a: a[j], pool)
        loss, grad = jax.value_and_grad(lambda t: jnp.sum(ell.bag_matmul(t, lay, n_rows=6)
                                                          ** 2))(t)
        return t, (loss, grad)

    _, (losses, grads) = jax.jit(lambda t: jax.lax.scan(body, t, jnp.arange(3)))(table)
    for j, (*_, dense) in enumerate(batches):
        h = dense @ table
        np.testing.assert_allclose(losses[j], np.sum(h ** 2), rtol=1e-5)
        np.testing.assert_allclose(grads[j], dense.T @ (2 * h), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("item_blocks", [1, 3])
@pytest.mark.parametrize("change, match", [
    (lambda r, i, w: (r, np.where(np.arange(len(i)) == 3, 13, i), w), "item id 13 of entry 3"),
    (lambda r, i, w: (np.where(np.arange(len(r)) == 2, -1, r), i, w), "row id -1 of entry 2"),
    (lambda r, i, w: (np.where(np.arange(len(r)) == 2, 6, r), i, w), "row id 6 of entry 2"),
    (lambda r, i, w: (r, i, np.where(np.arange(len(w)) == 4, np.nan, w)), "entry 4 is not finite"),
    (lambda r, i, w: (r[:-1], i, w), "one length"),
])
def test_bad_entries_raise_naming_the_entry(change, match, item_blocks):
    row, item, w, _ = _bags(np.random.default_rng(4))
    with pytest.raises(ValueError, match=match):
        ell.bag_layout(*change(row, item, w), n_rows=6, n_items=13, item_blocks=item_blocks)


def test_width_and_item_blocks_must_be_positive():
    with pytest.raises(ValueError, match="width must be >= 1"):
        ell.ell_layout(np.zeros(2, np.int32), np.zeros(2, np.int32), np.ones(2), n_seg=1,
                       width=0)
    with pytest.raises(ValueError, match="item_blocks must be >= 1"):
        ell.bag_layout(np.zeros(2, np.int32), np.zeros(2, np.int32), np.ones(2), n_rows=1,
                       n_items=1, item_blocks=0)
