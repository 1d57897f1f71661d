"""The library works as an installed package, apart from the checkout: a non-editable install
runs the built-in default from an unrelated folder, and no library module finds its files
through its own location (`__file__`), so nothing depends on `experiments/`, `benchmarks/` or
`../shared` sitting beside the installed code."""

import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from transferjax.data import registry

REPO = pathlib.Path(__file__).resolve().parents[1]


def _leaves(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


@pytest.mark.slow
def test_non_editable_install_runs_the_default_outside_the_checkout(tmp_path):
    # the build runs offline in this environment: it needs the build backend pyproject.toml names
    pytest.importorskip(
        "setuptools",
        minversion="77",
        reason="needs setuptools>=77 (the test extra) to build without network access",
    )
    # Build from a copy of the sources, so that the build writes nothing into the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "transferjax", src / "transferjax", ignore=shutil.ignore_patterns("__pycache__")
    )
    site = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    assert (site / "transferjax" / "cli.py").is_file()
    assert not (site / "benchmarks").exists() and not (site / "experiments").exists()

    work = tmp_path / "elsewhere"  # no experiments/, no ../shared, not a git checkout
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "JAX_PLATFORMS": "cpu"}
    env.pop("TRANSFERJAX_DATA", None)

    def py(*args):
        return subprocess.run(
            [sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )

    where = py("-c", "import transferjax; print(transferjax.__file__)")
    assert where.returncode == 0, where.stderr
    imported = pathlib.Path(where.stdout.strip()).resolve()
    assert imported.is_relative_to(site.resolve()), imported  # the installed copy, not the repo

    out = work / "run"
    p = py(
        "-m",
        "transferjax.cli",
        "run",
        "--quick",
        "--set",
        "trainer.epochs=1",
        "--set",
        "mf.epochs=1",
        "--set",
        "trainer.checkpoint_every=0",
        "--out",
        str(out),
    )
    assert p.returncode == 0, p.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selected"]["test"]["rmse"] > 0
    numbers = [v for v in _leaves(metrics["selected"]) if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["git_commit"] is None  # an installed copy records no commit
    # where it ran: the CPU, the machine's cores and those the run could use (inherited here)
    assert manifest["cpu"] and manifest["cores"] == os.cpu_count()
    assert manifest["cores_usable"] == len(os.sched_getaffinity(0))


def test_no_library_module_locates_files_through_its_own_path():
    """Only `train/outputs.py` reads `__file__`: to record the commit of a git checkout it sits
    in."""
    users = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "transferjax").rglob("*.py")
        if re.search(r"\b__file__\b", p.read_text(encoding="utf-8"))
    )
    assert users == ["transferjax/train/outputs.py"]


def test_datasets_root_is_the_environment_or_relative_to_the_working_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(registry.DATA_ENV, raising=False)
    assert registry.datasets_root() == pathlib.Path("../shared/datasets")
    with pytest.raises(
        registry.DataError,
        match=r"\.\./shared/datasets from the current "
        r"directory .*set data\.path .* or TRANSFERJAX_DATA",
    ):
        registry._root("", "douban_book_music")
    monkeypatch.setenv(registry.DATA_ENV, str(tmp_path / "data"))
    assert registry.datasets_root() == tmp_path / "data"
    with pytest.raises(registry.DataError, match=r"TRANSFERJAX_DATA="):
        registry._root("", "douban_book_music")
    (tmp_path / "data" / "douban_book_music").mkdir(parents=True)
    assert registry._root("", "douban_book_music") == tmp_path / "data" / "douban_book_music"
    with pytest.raises(registry.DataError, match="data.path"):
        registry._root(str(tmp_path / "nowhere"), "douban_book_music")
    assert registry._root(str(tmp_path), "douban_book_music") == tmp_path
