"""Embedding tables split by rows over the "model" axis (`transferjax.train.mesh.TABLES`):
which leaves are tables, each device holding rows/N of a table and of its optimizer slots, the
numbers of one device for mf (dense and row-sparse), cmf and dann on data=2,model=2 and model=4,
row-sparse steps that never build a whole table, and the full ranking's per-shard top-k.

The synthetic pair is `TINY` with 32 target items, so every table (100 or 80 users, 40 source
and 32 target items) divides by 4 devices.

Tolerances: a table split over "model" changes only where rows are summed: a gather of a
batch's rows is each device's masked gather summed over "model" (exact: one nonzero term per
row), the gradients of the replicated leaves (mu, dense layers) are all-reduced over "data" in
another order (a few ulp, as data parallel in test_mesh.py), and full-ranking scores are
computed per item block with the same dot products (exact). Over the short runs here the
metrics (valid and test rating and full-ranking metrics, train loss) stay within 2e-7 relative
of one device's (measured: mf and cmf identical, row-sparse mf 7e-8, dann 1.8e-7); rtol=1e-5
leaves a margin while any real change (a lost row update, another batch) moves them by 1e-3
or more.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tests.train.test_mesh import BASE as MESH_BASE
from transferjax import config as C
from transferjax.data.registry import build_dataset, build_split
from transferjax.eval.ranking import _topk
from transferjax.eval.topk import merged_top_k
from transferjax.models.sparse import lazy_adam
from transferjax.train.evaluate import make_evaluate
from transferjax.train.mesh import make_layout, table_axis, table_spec
from transferjax.train.trainer import make_train

# test_mesh's run, with 32 target items and full ranking over the split item tables
BASE = C.apply_overrides(  # test at every evaluation too: the whole history is compared
    MESH_BASE, ["data.synthetic.n_items_target=32", "eval.ranking=full", "eval.curves=all"]
)
METHODS = {
    "mf": ("mf", []),
    "mf_sparse": ("mf", ["mf.sparse=true"]),
    "cmf": ("cmf", []),
    "dann": ("dann", []),
}


@pytest.fixture(scope="module")
def split():
    assert jax.local_device_count() == 4, "conftest sets 4 fake CPU devices"
    return build_split(BASE.protocol, build_dataset(BASE.data))


def _cfg(name: str, mesh: str):
    method, sets = METHODS[name]
    cfg = C.override(C.override(BASE, "method", method), "trainer.mesh", mesh)
    return C.apply_overrides(cfg, sets)


def _train(cfg, split, key):
    train = make_train(cfg, split, evaluate=make_evaluate(cfg, split))
    return train, train(key)


def _metrics(result) -> np.ndarray:
    """f64[evaluations, metrics]: every valid and test metric and the train loss."""
    rows = []
    for h in result.history:
        keys = sorted(k for k in h["valid"] if not k.startswith("n_"))
        rows.append(
            [h["valid"][k] for k in keys] + [h["test"][k] for k in keys] + [h["train"]["loss"]]
        )
    return np.array(rows)


def _tables(tree) -> list:
    """(path, leaf, row axis) of every table leaf of `tree`."""
    out = []
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        axis = table_axis(path)
        if axis is not None and np.ndim(x) > axis:
            out.append((jax.tree_util.keystr(path), x, axis))
    return out


def test_the_table_rule_names_embedding_tables_and_their_slots():
    mf = {"user": jnp.zeros((8, 3)), "item_bias": jnp.zeros(8), "mu": jnp.zeros(())}
    phi = {"out": {"click": {"w": jnp.zeros((3, 8)), "b": jnp.zeros(8)}}, "mlp": [{"w": 1}]}
    paths = {
        jax.tree_util.keystr(p): table_axis(p)
        for p, _ in jax.tree_util.tree_leaves_with_path({"mf": mf, "phi": phi})
    }
    assert paths == {
        "['mf']['item_bias']": 0,
        "['mf']['mu']": None,
        "['mf']['user']": 0,
        "['phi']['mlp'][0]['w']": None,
        "['phi']['out']['click']['b']": 0,
        "['phi']['out']['click']['w']": 1,
    }
    # optimizer states mirror the params' dict keys: Adam's moments, lazy Adam's slots
    for state in (optax.adam(1e-3).init(mf), lazy_adam(lr=1e-3).init(mf)):
        found = {(x.shape, a) for _, x, a in _tables(state)}
        assert found == {((8, 3), 0), ((8,), 0)}
    path = jax.tree_util.tree_leaves_with_path({"user": jnp.zeros((6, 3))})[0][0]
    assert table_spec(path, (6, 3), model=2, batched=False) == P("model")
    assert table_spec(path, (4, 6, 3), model=2, batched=True) == P("trial", "model")
    assert table_spec(path, (6, 3), model=4, batched=False) is None  # 6 rows: replicated
    assert table_spec(path, (6, 3), model=1, batched=False) is None


@pytest.mark.parametrize("mesh,model", [("model=4", 4), ("data=2,model=2", 2)])
def test_each_device_holds_rows_over_n_of_a_table_and_its_moments(mesh, model):
    layout = make_layout(mesh)
    params = {"user": jnp.arange(80 * 8.0).reshape(80, 8), "item_bias": jnp.zeros(32)}
    params["mu"] = jnp.zeros(())
    for opt in (optax.adam(1e-3), lazy_adam(lr=1e-3)):
        state = (params, opt.init(params))
        placed = layout.put(state, layout.state_shardings(state, batched=False))
        tables = _tables(placed)
        assert len(tables) == 6  # user, item_bias and their two slots
        for name, x, axis in tables:
            for shard in x.addressable_shards:
                assert shard.data.shape[axis] == x.shape[axis] // model, name
            assert x.addressable_shards[0].data.nbytes * model == x.nbytes
        np.testing.assert_array_equal(placed[0]["user"], params["user"])
        assert placed[0]["mu"].sharding.is_fully_replicated


@pytest.mark.parametrize("name", ["mf", "mf_sparse", "cmf", "dann"])
@pytest.mark.slow
def test_sharded_tables_match_one_device(name, split):
    key = jax.random.key(0)
    _, ref = _train(_cfg(name, "auto"), split, key)
    # model=4 on the MF tables only: cmf's and dann's programs are the costliest to compile
    meshes = ("data=2,model=2", "model=4") if name.startswith("mf") else ("data=2,model=2",)
    for mesh in meshes:
        model = 2 if mesh.startswith("data") else 4
        train, got = _train(_cfg(name, mesh), split, key)
        np.testing.assert_allclose(_metrics(got), _metrics(ref), rtol=1e-5, err_msg=mesh)
        tables = _tables(got.params)
        assert tables, name
        for path, x, axis in tables:
            assert x.addressable_shards[0].data.shape[axis] * model == x.shape[axis], path
        for (_, _, _, shapes), program in train.programs.compiled.items():
            state_in, state_out = program.input_shardings[0][0], program.output_shardings[0]
            n_opt = 0
            for (path, s_in), s_out, shape in zip(
                jax.tree_util.tree_leaves_with_path(state_in),
                jax.tree.leaves(state_out),
                shapes,
                strict=False,
            ):
                axis = table_axis(path)
                if axis is None or len(shape) <= axis:
                    continue
                assert s_in.shard_shape(shape)[axis] * model == shape[axis], path
                assert s_out.is_equivalent_to(s_in, len(shape)), path
                n_opt += "opt" in jax.tree_util.keystr(path)
            assert n_opt, "the optimizer slots of the tables are split too"


@pytest.mark.slow
@pytest.mark.parametrize("mesh,rows", [("model=4", 20), ("data=2,model=2", 40)])
def test_row_sparse_steps_build_no_whole_table(mesh, rows, split):
    """The compiled row-sparse MF epoch holds only 80/N of the 80 user rows per device: no
    instruction (gather, scatter-add, all-gather, update) makes a whole f32[80, 32] table or
    f32[80] bias column; the batch's rows are read and updated in each device's block."""
    train, _ = _train(_cfg("mf_sparse", mesh), split, jax.random.key(0))
    ((_, program),) = train.programs.compiled.items()
    hlo = program.as_text()
    assert f"f32[{rows},32]" in hlo and f"f32[{rows}]" in hlo
    assert "f32[80,32]" not in hlo and "f32[80]" not in hlo


@pytest.mark.slow
def test_merged_top_k_equals_lax_top_k():
    mesh = make_layout("model=4").mesh
    rng = np.random.default_rng(0)
    for n in (64, 30):  # 30: padded to 32 with -inf columns
        x = rng.integers(0, 5, (6, n)).astype(np.float32)  # many ties
        x[0, :] = -np.inf
        x[1, 3:] = -np.inf
        x = jax.device_put(x, NamedSharding(mesh, P(None, "model") if n % 4 == 0 else P()))
        for k in (1, 5, 10):
            got = jax.jit(lambda x, k=k: merged_top_k(x, k, mesh=mesh, axis="model"))(x)
            want = jax.lax.top_k(x, k)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    batched = jax.vmap(lambda x: merged_top_k(x, 5, mesh=mesh, axis="model"))
    xs = rng.normal(size=(3, 4, 64)).astype(np.float32)
    np.testing.assert_array_equal(jax.jit(batched)(xs)[1], jax.lax.top_k(xs, 5)[1])


def test_ranking_top_k_per_shard_gathers_no_score_matrix():
    """`_topk` of the full ranking with `Layout.top_k` on item-split scores: the same hits and
    top items as one device, and only [chunk, 4*k] candidates cross devices."""
    layout = make_layout("model=4")
    rng = np.random.default_rng(1)
    scores = jax.device_put(
        rng.normal(size=(8, 64)).astype(np.float32), NamedSharding(layout.mesh, P(None, "model"))
    )
    ex_r, ex_i = np.array([0, 0, 3]), np.array([5, 6, 60])
    p_r, p_i = np.array([0, 1, 2, 7]), np.array([1, 2, 40, 63])
    args = (scores, 8, ex_r, ex_i, p_r, p_i)
    want = _topk(*args, k=10)
    got = _topk(*args, k=10, top_k=layout.top_k)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    hlo = _topk.lower(*args, k=10, top_k=layout.top_k).compile().as_text()
    assert "f32[8,16]" in hlo and "f32[8,64]" not in hlo


def test_a_checkpoint_restores_the_tables_split(tmp_path):
    """`Checkpointer` with `Layout.state_shardings`: the tables and their Adam moments come
    back split by rows, the rest replicated, with the values saved."""
    from transferjax.train.checkpoint import Checkpointer

    layout = make_layout("model=4")
    params = {"user": jnp.arange(80 * 8.0).reshape(80, 8), "mu": jnp.ones(())}
    state = {"params": params, "opt": optax.adam(1e-3).init(params)}
    shardings = functools.partial(layout.state_shardings, batched=False)
    state = layout.put(state, shardings(state))
    ckpt = Checkpointer(tmp_path / "ckpt", sharding=shardings)
    ckpt.save(1, state, {"stage": 0})
    got = ckpt.restore(1, state)
    tables = _tables(got)
    assert len(tables) == 3
    for _, x, _ in tables:
        assert x.addressable_shards[0].data.shape[0] == 20
    assert got["params"]["mu"].sharding.is_fully_replicated
    np.testing.assert_array_equal(got["params"]["user"], params["user"])


@pytest.mark.slow
def test_trials_and_split_tables_match_one_device(split):
    """trial=2,model=2: two vmapped seeds, one per pair of devices, each pair splitting the
    row-sparse MF tables by rows (P("trial", "model")); one device's numbers per seed."""
    keys = jnp.stack([jax.random.key(s) for s in range(2)])
    _, ref = _train(_cfg("mf_sparse", "auto"), split, keys)
    train, got = _train(_cfg("mf_sparse", "trial=2,model=2"), split, keys)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(_metrics(g), _metrics(r), rtol=1e-5)
    ((_, program),) = train.programs.compiled.items()
    specs = {s.spec for s in jax.tree.leaves(program.output_shardings[0])}
    assert specs == {P("trial"), P("trial", "model")}
