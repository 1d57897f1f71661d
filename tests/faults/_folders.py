"""Shared pieces of the fault tests: a tiny CSV experiment, run folders, and the check that a
failed rerun left a finished run folder byte for byte as it was."""

from __future__ import annotations

import pathlib
import shutil

import numpy as np

from transferjax import config as C


def write_csvs(root: pathlib.Path, *, seed: int = 0) -> tuple[pathlib.Path, pathlib.Path]:
    """source.csv and target.csv (user,item,rating) with 50 shared users, small and dense."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, users, items in (("source", range(0, 70), 30), ("target", range(20, 90), 20)):
        lines = ["user,item,rating"]
        for u in users:
            for i in rng.choice(items, size=6, replace=False):
                lines.append(f"u{u},{name[0]}{i},{int(rng.integers(1, 6))}")
        path = root / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def csv_config(source: pathlib.Path, target: pathlib.Path, **overrides) -> C.RunConfig:
    """Target-only MF on the CSV pair: 4 epochs, a checkpoint after each (the last 2 kept)."""
    sets = {
        "method": "mf",
        "data.name": "csv",
        "data.csv_source": str(source),
        "data.csv_target": str(target),
        "protocol.beta": "0.3",
        "mf.dim": "4",
        "mf.epochs": "4",
        "mf.batch_size": "64",
        "trainer.epochs": "4",
        "trainer.batch_size": "64",
        "trainer.checkpoint_every": "1",
        "trainer.checkpoint_min_interval_s": "0",
        **{k: str(v) for k, v in overrides.items()},
    }
    return C.apply_overrides(C.RunConfig(), [f"{k}={v}" for k, v in sets.items()])


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    """Every file under `folder` (recursively) by relative path, with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def assert_unchanged(folder: pathlib.Path, before: dict[str, bytes]) -> None:
    """The folder holds exactly the files of `before`, with the same bytes."""
    after = snapshot(folder)
    assert sorted(after) == sorted(before), (
        f"files added {sorted(set(after) - set(before))}, lost {sorted(set(before) - set(after))}"
    )
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"files changed: {changed}"


def copy_run(src: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dest)
    return dest


def checkpoint_steps(ckpt: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


_FINISHED: dict[str, dict] = {}


def finished_run(base: pathlib.Path) -> dict:
    """Runs the tiny CSV experiment once per test session (under `base`): its data folder, run
    folder ("run", checkpoints 3 and 4 kept), config and history."""
    from transferjax.train.run import run

    key = str(base)
    if key not in _FINISHED:
        root = base / "finished"
        source, target = write_csvs(root / "data")
        cfg = csv_config(source, target)
        metrics = run(cfg, out_dir=root / "run", echo=lambda *_: None, progress=False)
        assert checkpoint_steps(root / "run" / "ckpt") == [3, 4]
        _FINISHED[key] = {"root": root, "cfg": cfg, "history": metrics["history"]}
    return _FINISHED[key]


def private_copy(finished: dict, dest: pathlib.Path) -> dict:
    """A copy of the finished run folder and its data under `dest`, with the config that reads
    that data (its config.json rewritten to match): {"out", "data", "cfg", "history"}."""
    import json

    from transferjax.train import folder as F

    shutil.copytree(finished["root"] / "data", dest / "data")
    shutil.copytree(finished["root"] / "run", dest / "run")
    cfg = csv_config(dest / "data" / "source.csv", dest / "data" / "target.csv")
    rec = json.loads((dest / "run" / F.RECORD).read_text())
    F.record(dest / "run", cfg, data=rec["data"], state=rec["state"])
    return {**finished, "out": dest / "run", "cfg": cfg, "data": dest / "data"}
