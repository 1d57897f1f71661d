"""Run-folder guards: one writer per folder, a record of what the folder trained on, and a fresh
start that keeps the old folder.

Lock. `OUT/.lock` holds the owner's pid, host and start time; it is created with
O_CREAT|O_EXCL, so of two runs started into one folder exactly one gets it, and the other fails
naming the owner. A lock whose owner is gone (same host, pid not alive) is stale: the next run
takes it over with a warning. The lock is removed when the run ends, also on errors and on
Ctrl-C, and a folder the run created and left empty (it failed before training) is removed
with it, so no stub remains to block the corrected rerun.

Record. `OUT/fingerprint.json` holds sha256 fingerprints of the resolved config, of the data
the run trains and evaluates on (`split_fingerprint`) and of the training state's structure
(tree paths, shapes and dtypes of every stage's checkpointed state), written when training
starts. A rerun into a folder that holds training compares them before it trains and refuses,
saying what differs, rather than continue checkpoints of other data or another state structure.
The config is compared through `config.json` (`same_config`, which lets fields added to the
config classes since keep their defaults), the data and the state by fingerprint.

Fresh. A folder that holds nothing but a config and a record (a run that stopped before its
first checkpoint, metrics or scalars) is fresh: a rerun with another config or data simply
starts there. `move_aside` (`transferjax run --fresh`) renames a used folder to
`.NAME.old-TIMESTAMP` beside it (hidden, so `transferjax report` skips it) and starts anew.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import pathlib
import socket
import warnings

from transferjax import config as C
from transferjax.errors import RunFolderError, TransferjaxWarning
from transferjax.train.files import write_json

LOCK = ".lock"
RECORD = "fingerprint.json"
CONFIG = "config.json"
_STUB = {LOCK, RECORD, CONFIG}  # what a folder may hold and still count as fresh
_FRESH_HINT = "delete {f} or choose another --out (`transferjax run --fresh` moves it aside)"


class RunFolderWarning(TransferjaxWarning):
    """A run folder needed attention that did not stop the run (a stale lock taken over, a
    damaged checkpoint skipped, a folder from before fingerprints were recorded)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _host() -> str:
    return socket.gethostname()


# ----------------------------------------------------------------------------------- lock


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_owner(path: pathlib.Path) -> dict | None:
    """The lock's owner {"pid", "host", "started"}, or None when the file is unreadable."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    return owner


def _is_stale(owner: dict | None) -> bool:
    return owner is not None and owner.get("host") == _host() and not _pid_alive(owner["pid"])


def _create_lock(path: pathlib.Path) -> None:
    """Creates `path` with this process as owner; FileExistsError when it exists."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": _host(), "started": _now()}, f)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _held_error(folder: pathlib.Path, path: pathlib.Path, owner: dict | None) -> RunFolderError:
    if owner is None:
        return RunFolderError(
            f"{folder} is locked by {path}, which names no readable owner; if no run is "
            f"writing this folder, delete {path}"
        )
    return RunFolderError(
        f"{folder} is in use by another run (pid {owner['pid']} on host {owner.get('host')}, "
        f"since {owner.get('started')}); wait for it to end or choose another --out. If that "
        f"process is not a transferjax run, delete {path}"
    )


def acquire(folder: str | os.PathLike) -> pathlib.Path:
    """Takes the lock of `folder` (which must exist); returns the lock file's path.

    Raises:
      RunFolderError: another live run holds it (naming its pid and host), or the lock file
        is unreadable.
    """
    folder = pathlib.Path(folder)
    path = folder / LOCK
    for _ in range(3):
        try:
            _create_lock(path)
            return path
        except FileExistsError:
            pass
        owner = _read_owner(path)
        if not _is_stale(owner):
            raise _held_error(folder, path, owner)
        # Take the stale lock over: move it aside, and put back what was moved when it is not
        # the stale lock read above (another run took it over first).
        aside = path.with_name(f"{LOCK}.stale-{os.getpid()}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        if _read_owner(aside) != owner:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
            aside.unlink(missing_ok=True)
            continue
        aside.unlink(missing_ok=True)
        warnings.warn(
            f"{folder}: took over the stale lock of pid {owner['pid']} (no longer running on "
            f"this host, started {owner.get('started')})",
            RunFolderWarning,
            stacklevel=2,
        )
    raise _held_error(folder, path, _read_owner(path))


def release(path: pathlib.Path) -> None:
    """Removes the lock file `path` when this process owns it."""
    owner = _read_owner(path)
    if owner is not None and owner["pid"] == os.getpid() and owner.get("host") == _host():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(folder: str | os.PathLike):
    """Holds the lock of `folder` (created when missing) while the block runs; on exit, also on
    errors, releases it and removes the folder again when this call created it and it is
    empty."""
    folder = pathlib.Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = acquire(folder)
    except BaseException:
        _remove_if_empty(folder, created)
        raise
    try:
        yield folder
    finally:
        release(path)
        _remove_if_empty(folder, created)


def _remove_if_empty(folder: pathlib.Path, created: bool) -> None:
    if created:
        with contextlib.suppress(OSError):
            folder.rmdir()  # fails, as wanted, when anything is in it


# --------------------------------------------------------------------------------- record


def is_fresh(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds no training: nothing but the lock, config.json, the record and
    empty folders (no checkpoint, metrics, scalars or events)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return True
    for p in folder.rglob("*"):
        if not p.is_dir() and str(p.relative_to(folder)) not in _STUB:
            return False
    return True


def config_fingerprint(cfg) -> str:
    return hashlib.sha256(C.dumps(cfg).encode()).hexdigest()


def _config_differences(stored: dict, cfg) -> str:
    """`key: old -> new` for the first few settings that differ, or why none can be listed."""
    try:
        old = C.flatten(C.from_dict(type(cfg), stored))
    except (C.ConfigError, TypeError) as e:
        return f"its config.json does not load with this version ({e})"
    new = C.flatten(cfg)
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _read_json(path: pathlib.Path) -> dict | None:
    """The JSON object in `path`, None when there is none; RunFolderError when it is damaged."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise RunFolderError(f"{path} is damaged ({e}); {_FRESH_HINT.format(f=path.parent)}") from e
    if not isinstance(obj, dict):
        raise RunFolderError(f"{path} is damaged (not a JSON object)")
    return obj


def check(folder: str | os.PathLike, cfg, *, data: str, state: str | None = None) -> None:
    """Refuses, before training, a folder that holds training of another config, other data or
    (when `state` is given) another training-state structure; a fresh folder passes.

    Raises:
      RunFolderError: naming the folder, what differs (settings, or old and new fingerprint)
        and how to start fresh.
    """
    folder = pathlib.Path(folder)
    if is_fresh(folder):
        return
    hint = _FRESH_HINT.format(f=folder)
    stored = _read_json(folder / CONFIG)
    if stored is None:
        raise RunFolderError(
            f"{folder} is not empty and holds no {CONFIG}: it is not a run folder (or its config "
            f"was deleted), and transferjax writes only into run folders; {hint}"
        )
    if not C.same_config(stored, cfg):
        raise RunFolderError(
            f"{folder} holds a run of a different config ({_config_differences(stored, cfg)}); "
            f"{hint}"
        )
    rec = _read_json(folder / RECORD)
    if rec is None:
        return
    if rec.get("data") != data:
        raise RunFolderError(
            f"{folder} was trained on other data: data fingerprint {str(rec.get('data'))[:16]} "
            f"in {folder / RECORD}, {data[:16]} now (the data files changed since); its "
            f"checkpoints and metrics cannot continue with this data: {hint}"
        )
    if state is not None and rec.get("state") not in (None, state):
        raise RunFolderError(
            f"{folder} was trained with another training-state structure: state fingerprint "
            f"{str(rec.get('state'))[:16]} in {folder / RECORD}, {state[:16]} now (the method's "
            f"code changed its params or optimizer state); its checkpoints cannot continue "
            f"this run: {hint}"
        )


def begin(folder: str | os.PathLike, cfg, *, data: str, state: str | None) -> None:
    """Checks `folder` (`check`) and, as training starts, records what it trains on
    (`record`). A folder from before records were kept (training, but no record) is resumed
    with a warning and gets its record only once the run ends (`record`), so that a rerun
    failing in between leaves it as it was."""
    folder = pathlib.Path(folder)
    check(folder, cfg, data=data, state=state)
    if not is_fresh(folder) and not (folder / RECORD).exists():
        warnings.warn(
            f"{folder} was written before transferjax recorded data fingerprints; resuming it "
            f"without checking its data",
            RunFolderWarning,
            stacklevel=2,
        )
        return
    record(folder, cfg, data=data, state=state)


def record(folder: str | os.PathLike, cfg, *, data: str, state: str | None) -> None:
    """Writes config.json and the record of `folder`, each only when its content changes."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rec = {"config": config_fingerprint(cfg), "data": data, "state": state}
    for name, obj in ((CONFIG, C.to_dict(cfg)), (RECORD, rec)):
        with contextlib.suppress(OSError, ValueError):  # compared as JSON: tuples are lists
            if json.loads((folder / name).read_text(encoding="utf-8")) == json.loads(
                json.dumps(obj)
            ):
                continue
        write_json(folder / name, obj)


def move_aside(folder: str | os.PathLike) -> pathlib.Path | None:
    """Renames a used `folder` to `.NAME.old-TIMESTAMP` beside it and recreates it empty, under
    the lock the caller holds (it moves over with the folder); None when the folder is fresh
    (nothing to keep)."""
    folder = pathlib.Path(folder)
    if is_fresh(folder):
        return None
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = folder.with_name(f".{folder.name}.old-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = folder.with_name(f".{folder.name}.old-{stamp}-{n}")
    os.rename(folder, aside)
    folder.mkdir()
    _create_lock(folder / LOCK)
    (aside / LOCK).unlink(missing_ok=True)
    return aside
