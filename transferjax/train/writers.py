"""Metric writers behind one small interface: TensorBoard (tensorboardX) and JSON lines.

Only process 0 writes (`jax.process_index() == 0`); other processes get a no-op writer. Files
are created on the first write, not before: a rerun that stops before it trains leaves the run
folder as it was.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import threading

_IMPORT_LOCK = threading.Lock()


def _summary_writer_class():
    """tensorboardX's `SummaryWriter`, imported without PyTorch.

    tensorboardX imports torch when it is installed, only to accept torch tensors as values;
    the writers here pass floats. Importing torch costs more than a second of every process's
    start (and more than a small run's training), so when torch is not already loaded it is
    hidden for the duration of the import (`import torch` inside raises ImportError and
    tensorboardX takes its numpy-only path); `import torch` works normally afterwards.
    """
    with _IMPORT_LOCK:
        if "tensorboardX" in sys.modules or "torch" in sys.modules:
            from tensorboardX import SummaryWriter

            return SummaryWriter
        sys.modules["torch"] = None  # a None entry makes `import torch` raise ImportError
        try:
            from tensorboardX import SummaryWriter
        finally:
            del sys.modules["torch"]
        return SummaryWriter


class Writer:
    """Interface: `scalars(step, {name: value})`, `close()`."""

    def scalars(self, step: int, values: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class NullWriter(Writer):
    def scalars(self, step, values):
        pass


class TensorBoardWriter(Writer):
    """Event files under `logdir`, one scalar per key (the event file is opened on the first
    scalar)."""

    def __init__(self, logdir: str | os.PathLike):
        self._logdir, self._w = str(logdir), None

    def scalars(self, step, values):
        if self._w is None:
            self._w = _summary_writer_class()(logdir=self._logdir)
        for k, v in values.items():
            self._w.add_scalar(k, float(v), global_step=int(step))

    def close(self):
        if self._w is not None:
            self._w.flush()
            self._w.close()


class JsonlWriter(Writer):
    """Appends `{"step": s, **values}` lines to `path` (opened on the first line)."""

    def __init__(self, path: str | os.PathLike):
        self._path, self._f = path, None

    def scalars(self, step, values):
        if self._f is None:
            self._f = open(self._path, "a", encoding="utf-8")
        self._f.write(
            json.dumps({"step": int(step), **{k: float(v) for k, v in values.items()}}) + "\n"
        )
        self._f.flush()

    def close(self):
        if self._f is not None:
            self._f.close()


class MultiWriter(Writer):
    def __init__(self, writers):
        self._ws = list(writers)

    def scalars(self, step, values):
        for w in self._ws:
            w.scalars(step, values)

    def close(self):
        for w in self._ws:
            w.close()


def make_writer(run_dir: str | os.PathLike, *, tensorboard: bool = True) -> Writer:
    """TensorBoard events in `run_dir/tb` and `run_dir/scalars.jsonl`, on process 0 only."""
    import jax

    if jax.process_index() != 0:
        return NullWriter()
    run_dir = pathlib.Path(run_dir)
    ws = [JsonlWriter(run_dir / "scalars.jsonl")]
    if tensorboard:
        ws.append(TensorBoardWriter(run_dir / "tb"))
    return MultiWriter(ws)
