"""Test set-up: fake CPU devices, strict dtype promotion, shared paths."""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_dtype_promotion", "strict")

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> pathlib.Path:
    """Path to ../shared/datasets; skips the test with a reason when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED} (needs ../shared/datasets beside the repo)")
    return SHARED
