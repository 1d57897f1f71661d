"""Test set-up: fake CPU devices, unoptimised compiles, strict dtype promotion, shared paths,
and one persistent compilation cache for the session (a fresh folder: the many tests that build
the same programs, in every worker process and in the command lines they start, compile each
once)."""

import gc
import os
import pathlib
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tiny shapes run in microseconds and most of the suite's time is XLA compiling: skip XLA's
# and LLVM's optimisation passes (they preserve the programs' meaning, and cost about a third
# of the suite's time). Set before jax is imported, so the command lines the tests start
# inherit it; `JAX_DISABLE_MOST_OPTIMIZATIONS=0 python -m pytest` tests the optimised programs.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_dtype_promotion", "strict")

from transferjax.train import compile_cache  # noqa: E402

# One folder for the whole session: made by the first process (pytest itself, or the controller
# of `-n auto`), whose xdist workers inherit its path and share the folder (JAX writes it under a
# file lock), so a program compiled by one worker is loaded by the other.
if "TRANSFERJAX_TEST_COMPILE_CACHE" not in os.environ:
    _CACHE = tempfile.TemporaryDirectory(prefix="transferjax-test-compile-")
    os.environ["TRANSFERJAX_TEST_COMPILE_CACHE"] = _CACHE.name
os.environ["TRANSFERJAX_COMPILE_CACHE"] = os.environ["TRANSFERJAX_TEST_COMPILE_CACHE"]
compile_cache.enable(os.environ["TRANSFERJAX_COMPILE_CACHE"])

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> pathlib.Path:
    """Path to ../shared/datasets; skips the test with a reason when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED} (needs ../shared/datasets beside the repo)")
    return SHARED


@pytest.fixture(autouse=True)
def _frozen_heap():
    """Moves the objects earlier tests left out of the cyclic garbage collector's view for this
    test (`gc.freeze`), and back after it: a full collection inside a test (the memory
    measurement of the benchmark scripts runs one before every block) then scans what the test
    made, not the whole session's heap. What the test drops is still collected."""
    gc.freeze()
    yield
    gc.unfreeze()
