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
  - params, optimizer state and the method's data are otherwise replicated ("model" is unused:
    it is where row-sharded tables would go).
The global batch is `batch_size` whatever the mesh, so a run's numbers do not depend on the
device count beyond the summation order of the all-reduced gradients.

In a multi-process run (`transferjax.train.distributed`) the mesh spans every process's devices
(`jax.devices()`), and `Layout.put` builds the global arrays from values every process holds
alike, each process filling only its own devices' shards: of the batch indices, its devices'
rows of every step.

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

    def put(self, tree, sharding: NamedSharding):
        """`tree` on `sharding` (a no-op for arrays already there). On one process this is
        `jax.device_put`; across processes each leaf is built from its host value by
        `jax.make_array_from_callback`, each process filling only its own devices' shards
        (`jax.device_put` refuses arrays committed to one local device, and PRNG keys, there)."""
        if jax.process_count() == 1:
            return jax.device_put(tree, sharding)
        return jax.tree.map(lambda x: _put_global(x, sharding), tree)

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
            self.put(state, trials),
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
