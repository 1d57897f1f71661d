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


def _tensorboardx():
    """tensorboardX's `FileWriter` and `summary.scalar`, imported without PyTorch.

    tensorboardX imports torch when it is installed, only to accept torch tensors as values;
    the writers here pass floats. Importing torch costs more than a second of every process's
    start (and more than a small run's training), so when torch is not already loaded it is
    hidden for the duration of the import (`import torch` inside raises ImportError and
    tensorboardX takes its numpy-only path); `import torch` works normally afterwards.
    """
    with _IMPORT_LOCK:
        if "tensorboardX" not in sys.modules and "torch" not in sys.modules:
            sys.modules["torch"] = None  # a None entry makes `import torch` raise ImportError
            try:
                import tensorboardX  # noqa: F401
            finally:
                del sys.modules["torch"]
        from tensorboardX import FileWriter
        from tensorboardX.summary import scalar

        return FileWriter, scalar


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
    """Event files under `logdir` (opened on the first call): one event per `scalars` call,
    holding one summary value per key (tags cleaned as tensorboardX's `add_scalar` cleans them).

    One event per step rather than one per scalar: tensorboardX hands every event to its writer
    thread through a pickling queue, and an evaluation logs a few hundred metrics at once."""

    def __init__(self, logdir: str | os.PathLike):
        self._logdir, self._w, self._scalar = str(logdir), None, None

    def scalars(self, step, values):
        if not values:
            return
        if self._w is None:
            file_writer, self._scalar = _tensorboardx()
            self._w = file_writer(logdir=self._logdir)
        summaries = [self._scalar(k, float(v)) for k, v in values.items()]
        summary = summaries[0]
        for s in summaries[1:]:
            summary.value.extend(s.value)
        self._w.add_summary(summary, global_step=int(step))

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
