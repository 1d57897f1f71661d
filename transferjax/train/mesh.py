"""The device mesh of a run (`trainer.mesh`) and its sharding rules; no other module names
devices.

The mesh always has the axes ("trial", "data", "model") (`transferjax.config.MESH_AXES`), absent
ones of size 1, so one set of `PartitionSpec`s serves every mesh:
  - the epoch's batch indices `idx` (i32[steps, batch], or i32[trials, steps, batch]) are split
    on their batch axis over "data": each device gathers and differentiates its share of a
    step's rows, and the compiler all-reduces the gradients, because the params and optimizer
    state they update are replicated over "data" (no hand-written `psum`);
  - a batch of trials (the leading axis of a vmapped `TrainState`, its traced values and epoch
    keys) is split over "trial": with "trial=4", four seeds train as one program, one per device;
  - embedding tables are split by rows over "model" (`TABLES`, `table_axis`): with "model=N"
    each device holds rows/N of every table and of its optimizer slots (Adam's moments, lazy
    Adam's and row-wise Adagrad's slots), so a table's memory per device falls as 1/N. A
    table's gathers and row updates (dense or row-sparse) are partitioned by the compiler: each
    device reads and updates the batch's rows that fall in its block, and the gathered rows are
    summed over "model" (an all-reduce of [batch, dim], never of a table); full-ranking scores
    stay split over items and their top-k is taken per shard, then merged (`Layout.top_k`);
  - params, optimizer state and the method's data are otherwise replicated.
The global batch is `batch_size` whatever the mesh, so a run's numbers do not depend on the
device count beyond the summation order of the all-reduced gradients and gathered rows.

Which leaves are tables: `TABLES` lists path patterns (the dict keys on a leaf's path, matched
as a suffix, "*" any key) with the axis that indexes users or items: MF's and CMF's `user`,
`item`, `user_bias`, `item_bias`, phi's item-embedding encoder `emb` and its output layers over
all items (`out/<task>/w` on axis 1, `out/<task>/b`). The same patterns find a table's slots in
the optimizer state, whose trees mirror the params' dict keys. A matched leaf whose row count
does not divide by the "model" size stays replicated (`table_spec`).

In a multi-process run (`transferjax.train.distributed`) the mesh spans every process's devices
(`jax.devices()`), and `Layout.put` builds the global arrays from values every process holds
alike, each process filling only its own devices' shards: of the batch indices, its devices'
rows of every step; of a table, its devices' rows. Evaluation there runs on each process's
gathered copy of the params (`host_value`), so `Layout.top_k` is the plain `lax.top_k`.

With one device `make_layout` returns None and the trainer runs exactly the single-device
program it always ran (no shardings at all).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from transferjax.config import MESH_AXES, parse_mesh
from transferjax.errors import ConfigError
from transferjax.eval.topk import merged_top_k

# Embedding tables: (suffix of the dict keys on a leaf's path, "*" any key; axis of its rows).
TABLES: tuple[tuple[tuple[str, ...], int], ...] = (
    (("user",), 0),  # MF, CMF: user factors f32[n_users, dim]
    (("item",), 0),  # item factors f32[n_items, dim]
    (("user_bias",), 0),
    (("item_bias",), 0),
    (("emb",), 0),  # phi's item-embedding encoder f32[n_items, dim]
    (("out", "*", "w"), 1),  # phi's output layers over all items f32[dim, n_items]
    (("out", "*", "b"), 0),  # and their biases f32[n_items]
)


def _dict_keys(path) -> tuple[str, ...]:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def table_axis(path) -> int | None:
    """The row axis of the leaf at `path` (a `jax.tree_util` key path) when it is an embedding
    table or a table's optimizer slot (`TABLES`), else None."""
    keys = _dict_keys(path)
    for pattern, axis in TABLES:
        tail = keys[len(keys) - len(pattern) :] if len(keys) >= len(pattern) else None
        if tail is not None and all(p in ("*", k) for p, k in zip(pattern, tail, strict=True)):
            return axis
    return None


def table_spec(path, shape: tuple[int, ...], *, model: int, batched: bool) -> P | None:
    """The `PartitionSpec` of a table leaf split by rows over "model" ("trial" on the leading
    axis when `batched`), or None when the leaf is no table, "model" has size 1, or its rows do
    not divide by the "model" size (then it stays replicated)."""
    axis = table_axis(path)
    if axis is None or model == 1:
        return None
    axis += int(batched)
    if len(shape) <= axis or shape[axis] % model:
        return None
    spec: list = [None] * (axis + 1)
    spec[axis] = "model"
    if batched:
        spec[0] = "trial"
    return P(*spec)


def device_names() -> list[str]:
    """The devices of the run, every process's, by name (for a run's manifest)."""
    return [str(d) for d in jax.devices()]


def mesh_sizes(spec: str) -> dict[str, int]:
    """{axis: size} of `trainer.mesh` on the run's devices, those of every process in a
    multi-process run ("auto" resolved: every device on "data" on an accelerator or across
    processes, one device on a single-process CPU run, whose fake devices share its cores and
    would only add all-reduces to every step).

    Raises:
      ConfigError: naming `trainer.mesh`, for a malformed value or sizes whose product is not
        the number of devices.
    """
    sizes = parse_mesh(spec)
    n, procs = jax.device_count(), jax.process_count()
    if sizes is None:
        data = 1 if jax.default_backend() == "cpu" and procs == 1 else n
        return {a: data if a == "data" else 1 for a in MESH_AXES}
    if math.prod(sizes.values()) != n:
        shown = " x ".join(f"{a}={s}" for a, s in sizes.items() if s > 1) or "1"
        where = f"this process has {n}" if procs == 1 else f"the {procs} processes have {n}"
        raise ConfigError(
            f"trainer.mesh={spec!r} asks for {math.prod(sizes.values())} devices ({shown}) but "
            f"{where} {jax.default_backend()} device(s); the sizes' product must "
            f"equal the device count (fake CPU devices: "
            f"XLA_FLAGS=--xla_force_host_platform_device_count=N)"
        )
    return sizes


@dataclasses.dataclass(frozen=True)
class Layout:
    """A mesh of more than one device and where the trainer's arrays go on it."""

    mesh: jax.sharding.Mesh

    @property
    def sizes(self) -> dict[str, int]:
        return dict(self.mesh.shape)

    def describe(self) -> str:
        """ "trial=1,data=4,model=1": the mesh as `trainer.mesh` would spell it."""
        return ",".join(f"{a}={s}" for a, s in self.sizes.items())

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def state(self, batched: bool) -> NamedSharding:
        """Of every leaf of a `TrainState`, the trials' traced values and epoch keys: split on
        the leading trial axis over "trial" when `batched`, else replicated."""
        return NamedSharding(self.mesh, P("trial") if batched else P())

    def state_shardings(self, tree, *, batched: bool):
        """A tree of `NamedSharding`s for `tree` (a `TrainState`, its host form or any part):
        tables and their optimizer slots split by rows over "model" (`table_spec`), every leaf
        split over "trial" when `batched`, the rest replicated."""
        model, rest = self.sizes["model"], self.state(batched)

        def one(path, x):
            spec = table_spec(path, np.shape(x), model=model, batched=batched)
            return rest if spec is None else NamedSharding(self.mesh, spec)

        return jax.tree_util.tree_map_with_path(one, tree)

    def constrain_state(self, tree, *, batched: bool):
        """`tree` constrained to `state_shardings` inside a jitted program."""
        return jax.lax.with_sharding_constraint(tree, self.state_shardings(tree, batched=batched))

    def top_k(self, x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        """`jax.lax.top_k(x, k)` over the last axis (items); with "model" > 1 on one process,
        `x` split over "model" by items, each device's top k, then merged (`merged_top_k`):
        no device holds a whole row of scores."""
        if self.sizes["model"] == 1 or jax.process_count() > 1:
            return jax.lax.top_k(x, k)
        return merged_top_k(x, k, mesh=self.mesh, axis="model")

    def rows_spec(self, batched: bool) -> P:
        """Of the batch indices i32[steps, batch] (i32[trials, steps, batch] when `batched`)."""
        return P("trial", None, "data") if batched else P(None, "data")

    def constrain_rows(self, idx: jax.Array, *, batched: bool) -> jax.Array:
        """`idx` constrained to its rows' sharding inside a jitted program (an uneven split,
        a batch not divisible by the "data" size, is allowed there)."""
        return jax.lax.with_sharding_constraint(
            idx, NamedSharding(self.mesh, self.rows_spec(batched))
        )

    def check_trials(self, n: int) -> None:
        """Raises ConfigError unless `n` trials (one trainer call) split evenly over "trial"."""
        t = self.sizes["trial"]
        if t > 1 and n % t:
            raise ConfigError(
                f"trainer.mesh={self.describe()!r} splits the trials over {t} devices but one "
                f"training call has {n} trial(s) (seeds, times sweep points, when vmapped); "
                f"use a multiple of {t} seeds with trainer.vmap=on, or a smaller trial axis"
            )

    def put(self, tree, sharding):
        """`tree` on `sharding` (one `NamedSharding`, or a tree of them shaped like `tree`; a
        no-op for arrays already there). On one process this is `jax.device_put`; across
        processes each leaf is built from its host value by `jax.make_array_from_callback`,
        each process filling only its own devices' shards (`jax.device_put` refuses arrays
        committed to one local device, and PRNG keys, there)."""
        if jax.process_count() == 1:
            return jax.device_put(tree, sharding)
        if isinstance(sharding, NamedSharding):
            return jax.tree.map(lambda x: _put_global(x, sharding), tree)
        return jax.tree.map(_put_global, tree, sharding)

    def place_epoch_args(self, args: tuple, *, batched: bool) -> tuple:
        """(state, hyper, shared, examples, key, idx) of an epoch program, each on its
        sharding (a no-op for arrays already there, as the state an epoch returns is).

        `idx`, the host shuffle, is the same on every process; split over "data" each device
        receives only its columns (its share of every step's rows), so across processes each
        process feeds only its own rows of the global batch."""
        state, hyper, shared, examples, key, idx = args
        trials, rep = self.state(batched), self.replicated()
        if idx is not None:
            even = np.shape(idx)[-1] % self.sizes["data"] == 0
            idx = self.put(idx, NamedSharding(self.mesh, self.rows_spec(batched)) if even else rep)
        return (
            self.put(state, self.state_shardings(state, batched=batched)),
            self.put(hyper, trials),
            self.put(shared, rep),
            self.put(examples, rep),
            self.put(key, trials),
            idx,
        )


def _put_global(x, sharding: NamedSharding):
    """One leaf on `sharding`, a sharding over several processes' devices, from its host value
    (which every process holds alike)."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _put_global(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from transferjax.train.distributed import host_value

        x = host_value(x)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def make_layout(spec: str) -> Layout | None:
    """The `Layout` of `trainer.mesh` (see `mesh_sizes`), or None for one device.

    The mesh's axes are `AxisType.Auto`: the compiler propagates the shardings of the inputs
    and of `Layout.constrain_rows` through each program.
    """
    sizes = mesh_sizes(spec)
    if math.prod(sizes.values()) == 1:
        return None
    mesh = jax.make_mesh(
        tuple(sizes.values()), tuple(sizes), axis_types=(AxisType.Auto,) * len(sizes)
    )
    return Layout(mesh)
