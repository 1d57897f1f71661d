"""Atomic file writes for run folders: a reader (or a run killed mid-write) sees the old file
or the complete new one, never a half-written one; a write that fails (disk full, read-only
folder) raises OSError naming the file."""

from __future__ import annotations

import json
import os
import pathlib


def _write_atomic(path: pathlib.Path, fill) -> None:
    """Writes `path` through `fill(file)` atomically: a reader sees the old file or the complete
    new one. An OSError that names no file (a failed write on a full disk) gets `path`."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj) -> None:
    """Writes JSON atomically: a reader sees the old file or the complete new one."""
    _write_atomic(pathlib.Path(path), lambda f: json.dump(obj, f, indent=2, sort_keys=True))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes text atomically, like `write_json`."""
    _write_atomic(pathlib.Path(path), lambda f: f.write(text))
