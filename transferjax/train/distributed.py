"""Multi-process runs on `jax.distributed`: starting the runtime, which process writes, and
host copies of arrays that span processes.

A run on several processes (hosts, or several processes on one machine) is one JAX program per
process, all running the same code: `transferjax run --distributed` (or the environment
variables below) calls `jax.distributed.initialize` before any JAX computation, after which
`jax.devices()` lists every process's devices and the trainer's mesh (`transferjax.train.mesh`)
spans all of them. Each process computes; only process 0 writes the run folder, TensorBoard
events and reports (`is_writer`); all processes take part in orbax's checkpoint saves and
restores, each writing and reading the shards of its own devices.

Where the cluster comes from:
  - TRANSFERJAX_COORDINATOR=host:port, TRANSFERJAX_NUM_PROCESSES=N, TRANSFERJAX_PROCESS_ID=i
    (all three; JAX_COORDINATOR_ADDRESS is read by JAX itself as well): explicit, e.g. two
    processes on one machine with coordinator 127.0.0.1:PORT;
  - `--distributed` without them: JAX's own detection (SLURM, Open MPI, Cloud TPU slices,
    Kubernetes), the plain `jax.distributed.initialize()`.
On a CPU the cross-process collectives run over gloo (`jax_cpu_collectives_implementation`,
set here; it changes nothing on GPUs and TPUs), and JAX_NUM_CPU_DEVICES=N (or
XLA_FLAGS=--xla_force_host_platform_device_count=N) gives each process N fake devices.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from transferjax.errors import ConfigError, RunFolderError

COORDINATOR = "TRANSFERJAX_COORDINATOR"
NUM_PROCESSES = "TRANSFERJAX_NUM_PROCESSES"
PROCESS_ID = "TRANSFERJAX_PROCESS_ID"
ENV = (COORDINATOR, NUM_PROCESSES, PROCESS_ID)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Explicit arguments of `jax.distributed.initialize` (None: JAX detects them)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def _int(env, name: str, *, low: int) -> int:
    text = env[name].strip()
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise ConfigError(f"{name}={text!r}: expected an integer >= {low}")
    return value


def cluster_from_env(env=None) -> Cluster | None:
    """The `Cluster` that TRANSFERJAX_COORDINATOR, _NUM_PROCESSES and _PROCESS_ID describe, or
    None when none of them is set.

    Raises:
      ConfigError: naming the variable, when only some are set, the address is not host:port,
        or a number is malformed or out of range.
    """
    env = os.environ if env is None else env
    given = [k for k in ENV if env.get(k, "").strip()]
    if not given:
        return None
    if len(given) < len(ENV):
        missing = ", ".join(k for k in ENV if k not in given)
        raise ConfigError(
            f"{', '.join(given)} set but {missing} not: a multi-process run needs all of "
            f"{', '.join(ENV)} (or none of them and --distributed, for JAX's own detection on "
            f"SLURM or a TPU slice)"
        )
    address = env[COORDINATOR].strip()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{COORDINATOR}={address!r}: expected host:port, e.g. 10.0.0.1:1234")
    n = _int(env, NUM_PROCESSES, low=1)
    i = _int(env, PROCESS_ID, low=0)
    if i >= n:
        raise ConfigError(f"{PROCESS_ID}={i}: must be below {NUM_PROCESSES}={n}")
    return Cluster(address, n, i)


def initialize(*, requested: bool, env=None) -> bool:
    """Starts `jax.distributed` when `requested` (`--distributed`) or the environment names a
    cluster (`cluster_from_env`); returns whether it did. Call before any JAX computation.

    Raises:
      ConfigError: a malformed environment, or `--distributed` where JAX detects no cluster
        (the message names the variables that describe one).
    """
    cluster = cluster_from_env(env)
    if cluster is None and not requested:
        return False
    if jax.distributed.is_initialized():
        return True
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    c = cluster or Cluster()
    try:
        jax.distributed.initialize(
            coordinator_address=c.coordinator,
            num_processes=c.num_processes,
            process_id=c.process_id,
        )
    except ValueError as e:  # no cluster detected: no coordinator address or process count
        raise ConfigError(
            f"--distributed: JAX found no cluster to join ({e}); outside SLURM, Open MPI or a "
            f"TPU slice set {COORDINATOR}=host:port, {NUM_PROCESSES}=N and {PROCESS_ID}=i in "
            f"each process"
        ) from e
    return True


def is_multiprocess() -> bool:
    """Whether this run spans several processes."""
    return jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes run folders, TensorBoard events and reports (process 0)."""
    return jax.process_index() == 0


def host_value(tree):
    """`tree` with every array that spans other processes' devices replaced by its whole value
    as a numpy array on this host (gathered across processes when it is not replicated), so
    that host code and one-device programs can read it; other leaves stay as they are.

    Every process must call it with the same tree (the gather is a collective)."""
    from jax.experimental import multihost_utils

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = one(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def settle(error: BaseException | None, *, what: str) -> None:
    """Every process reports whether `what` failed on it (`error`, or None) and learns whether
    it failed anywhere: the process where it failed raises `error`, every other one a
    `RunFolderError` naming that process, so that none is left waiting in a collective for a
    process that stopped. With one process, raises `error` if there is one.

    Every process must call it (it gathers one flag from each)."""
    failed = np.array([error is not None])
    if is_multiprocess():
        from jax.experimental import multihost_utils

        failed = np.asarray(multihost_utils.process_allgather(np.int32(error is not None)))
    if error is not None:
        raise error
    if failed.any():
        who = ", ".join(str(i) for i in np.flatnonzero(failed))
        raise RunFolderError(f"process {who} could not {what} (its own error says why)")
