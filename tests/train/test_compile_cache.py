"""JAX's persistent compilation cache: where it lives, how it is turned off, and that a run
that loads its programs from the cache gives exactly the numbers of one that compiled them."""

import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys

import pytest

from transferjax.train import compile_cache

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSFERJAX_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("TRANSFERJAX_CACHE", str(tmp_path / "tj"))
    assert compile_cache.cache_dir() == tmp_path / "tj" / "jax-compile"
    monkeypatch.setenv("TRANSFERJAX_COMPILE_CACHE", str(tmp_path / "cc"))
    assert compile_cache.cache_dir() == tmp_path / "cc"
    for off in ("off", "OFF", "0", "false"):
        monkeypatch.setenv("TRANSFERJAX_COMPILE_CACHE", off)
        assert compile_cache.cache_dir() is None


def test_enable_keeps_a_folder_jax_already_uses():
    # The test session enabled the cache (conftest): enable() must not move it.
    before = compile_cache.jax.config.jax_compilation_cache_dir
    assert before
    assert compile_cache.enable("/nonexistent/elsewhere") == pathlib.Path(before)
    assert compile_cache.jax.config.jax_compilation_cache_dir == before


def test_the_lock_of_the_size_limit_is_a_declared_dependency():
    """JAX keeps the folder under `MAX_BYTES` with a lock from `filelock`; without that package
    every compile warns and nothing is cached. It must come with transferjax itself, not only
    through an extra (torch brings it to the test environment)."""
    assert compile_cache.MAX_BYTES > 0  # the setting that needs the lock
    required = [
        r
        for r in importlib.metadata.requires("transferjax") or []
        if r.split(";")[0].strip().startswith("filelock") and "extra ==" not in r
    ]
    assert required, importlib.metadata.requires("transferjax")


def _cli_run(out, cache):
    env = {**os.environ, "TRANSFERJAX_COMPILE_CACHE": str(cache)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    p = subprocess.run(
        [sys.executable, "-m", "transferjax.cli", "run", "experiments/synthetic_emcdr.py"]
        + ["--quick", "--set", "method=mf", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_a_cached_run_gives_the_numbers_of_a_compiled_one(tmp_path):
    cache = tmp_path / "cache"
    first = _cli_run(tmp_path / "a", cache)
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "the first run wrote no cache entry"
    second = _cli_run(tmp_path / "b", cache)
    assert second["history"] == first["history"]
    assert second["selected"] == first["selected"]
