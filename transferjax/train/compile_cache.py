"""JAX's persistent compilation cache, switched on for the command line.

A run compiles each stage's epoch program and each evaluation program once; JAX's own disk
cache (`jax_compilation_cache_dir`) keeps those executables, so the next run of the same shapes
(another seed count, a sweep point with other traced values, another task of the same sizes, a
rerun after an edit elsewhere) loads them instead of compiling again. The cache is keyed by the
compiled program, the compiler options and the JAX/XLA versions, so a hit runs exactly the code a
fresh compile would give: numbers do not change. Saving on compile is what shortens a run most
on a CPU, where compilation often takes longer than training (`python -m benchmarks.quality`
reports the wall time with an empty cache).

Where: `$TRANSFERJAX_COMPILE_CACHE`, else `<transferjax cache>/jax-compile` (the cache folder of
`transferjax data fetch`: `$TRANSFERJAX_CACHE`, `$XDG_CACHE_HOME/transferjax` or
~/.cache/transferjax). `TRANSFERJAX_COMPILE_CACHE=off` turns it off; a cache folder the user
already gave JAX (`JAX_COMPILATION_CACHE_DIR`) is left as it is. The folder is trusted code: keep
it private to the user (JAX's own warning). Library users opt in by calling `enable` once,
before anything compiles.
"""

from __future__ import annotations

import os
import pathlib

import jax

from transferjax.data.fetch import default_cache_dir

# Programs that compile faster than this are not worth a disk write and a later read.
MIN_COMPILE_S = 0.1
# Least recently used entries are evicted above this size (JAX enforces it under a lock on the
# folder, from the `filelock` package: a dependency of transferjax for that reason).
MAX_BYTES = 2 * 1024**3


def cache_dir() -> pathlib.Path | None:
    """The folder `enable` uses, or None when the cache is off."""
    given = os.environ.get("TRANSFERJAX_COMPILE_CACHE", "")
    if given.lower() in ("off", "0", "no", "false"):
        return None
    return pathlib.Path(given) if given else default_cache_dir() / "jax-compile"


def enable(path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Points JAX's persistent compilation cache at `path` (default `cache_dir()`).

    Returns the folder in use, or None when the cache is off. Call it before the first compile:
    JAX reads the setting when it compiles. A folder that cannot be created turns the cache off
    (the run goes on compiling as usual).
    """
    if jax.config.jax_compilation_cache_dir:
        return pathlib.Path(jax.config.jax_compilation_cache_dir)
    folder = pathlib.Path(path) if path is not None else cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return folder
