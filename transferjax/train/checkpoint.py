"""Training-state checkpoints with orbax, for automatic resume from a run folder.

A checkpoint holds the params (every part, including the one being trained), the optimizer
state of the stage in progress, and JSON metadata: the stage index, the epochs it completed, the
global epoch counter, the evaluation history so far, the timings and the fingerprint of the
state's structure (`structure_fingerprint`). Epoch keys are derived from the run key by
`fold_in(stage, epoch)`, so a resumed run replays exactly the epochs an uninterrupted run would
have.

Saving runs in the background: `save` snapshots the state (a device copy, so the next epoch may
donate its buffers) and returns while one writer thread writes it, which overlaps orbax's
file-system round trips (most of a save's wall time, little of its CPU) with training. A save
waits for the previous one; reads, `wait` and `close` wait for the pending one; a failed
background save raises at the next of these.

Resume takes the newest checkpoint that restores (`Checkpointer.restore_newest`): a damaged one
(a truncated array file, empty or broken metadata, missing files) is skipped with a warning and
moved aside, so that a crash while one checkpoint was written, or a damaged disk block, costs
the epochs since the previous checkpoint rather than the run.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import pathlib
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.errors import RunFolderError
from transferjax.train.folder import RunFolderWarning


def structure_fingerprint(tree) -> str:
    """sha256 over the tree paths, shapes and dtypes of the leaves of `tree` (arrays or
    `jax.ShapeDtypeStruct`s): equal for two states exactly when one can be restored as the
    other."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        h.update(f"{jax.tree_util.keystr(path)}:{tuple(leaf.shape)}:{leaf.dtype};".encode())
    return h.hexdigest()


def _why(e: BaseException) -> str:
    """The first line of an error, short enough for a message about one checkpoint."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class Checkpointer:
    """Saves and restores the training state under `directory` (keeps the last `keep`).

    With a `sharding` (one sharding every leaf of the state is on, or `template -> tree of
    shardings`: `transferjax.train.mesh.Layout.state_shardings`) the state restores straight
    onto it. In a multi-process run every process creates the
    checkpointer and calls `save` and `restore` alike: orbax writes and reads each process's
    shards from that process (replicated arrays once) and the metadata from process 0.
    """

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 2, sharding=None):
        import orbax.checkpoint as ocp

        self._ocp, self._sharding = ocp, sharding
        self.directory = pathlib.Path(directory).absolute()
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=False
            ),
        )
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        self._pending: concurrent.futures.Future | None = None

    def wait(self) -> None:
        """Blocks until the pending background save (if any) is on disk; raises its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def steps(self) -> list[int]:
        """The steps of the checkpoints on disk, newest first."""
        self.wait()
        self._mngr.reload()
        return sorted(self._mngr.all_steps(), reverse=True)

    def meta(self, step: int) -> dict:
        """The JSON metadata of checkpoint `step` (raises when it cannot be read)."""
        self.wait()
        out = self._mngr.restore(
            step, args=self._ocp.args.Composite(meta=self._ocp.args.JsonRestore())
        )
        if not isinstance(out.meta, dict):
            raise ValueError(f"metadata is {type(out.meta).__name__}, not a JSON object")
        return dict(out.meta)

    def latest_meta(self) -> dict | None:
        """Metadata of the newest checkpoint, or None when there is none."""
        steps = self.steps()
        return {**self.meta(steps[0]), "_step": steps[0]} if steps else None

    def save(self, step: int, state, meta: dict) -> None:
        """Writes `state` (a pytree of arrays) and `meta` (JSON) as checkpoint `step`, in the
        background: both are copied before this returns, so the caller may change or donate
        them at once."""
        snap = jax.tree.map(
            lambda x: jnp.copy(x) if isinstance(x, jax.Array) else np.array(x), state
        )
        meta = json.loads(json.dumps(meta))
        self.wait()
        if jax.process_count() > 1:  # orbax synchronises processes with collectives: in order
            self._write(step, snap, meta)
        else:
            self._pending = self._writer.submit(self._write, step, snap, meta)

    def _write(self, step: int, state, meta: dict) -> None:
        args = self._ocp.args
        self._mngr.save(
            step,
            args=args.Composite(state=args.StandardSave(state), meta=args.JsonSave(meta)),
            force=True,
        )
        self._mngr.wait_until_finished()

    def restore(self, step: int, template):
        """The state of checkpoint `step`, shaped like `template`.

        Raises:
          RunFolderError: naming the folder, when the checkpoint holds another structure
            (written by another version of the method's code): its state cannot continue this
            run.
        """
        self.wait()
        abstract = self._abstract(template)
        try:
            out = self._mngr.restore(
                step, args=self._ocp.args.Composite(state=self._ocp.args.StandardRestore(abstract))
            )
        except ValueError as e:
            raise RunFolderError(
                f"{self.directory}: checkpoint {step} does not match this run's training state (it "
                f"was written by another version of the code); delete {self.directory} to train "
                f"from the start. Orbax: {e}"
            ) from e
        return out.state

    def restore_newest(
        self, template_for: Callable[[dict], object], *, structure_for: Callable[[dict], str]
    ) -> tuple[int, dict, object] | None:
        """(step, meta, state) of the newest checkpoint that restores; None when there is none.

        `template_for(meta)` is the state a checkpoint with `meta` restores into, and
        `structure_for(meta)` its `structure_fingerprint`. A checkpoint whose metadata or
        arrays cannot be read is damaged: once an older one restored, each damaged one is named
        in a warning and moved to `<directory>.damaged/<step>` (kept for inspection, out of
        the way of the steps the resumed run saves again).

        Raises:
          RunFolderError: a checkpoint records another state structure (the code changed), or
            none of the checkpoints restores; the message names the folder and each
            checkpoint's damage, and says which folder to delete to train from the start.
        """
        damaged: list[tuple[int, BaseException]] = []
        for step in self.steps():
            try:
                meta = self.meta(step)
                want = structure_for(meta)
            except Exception as e:  # any unreadable metadata: damaged
                damaged.append((step, e))
                continue
            got = meta.get("state_structure")
            if got is not None and got != want:
                raise RunFolderError(
                    f"{self.directory}: checkpoint {step} holds another training-state structure "
                    f"(fingerprint {got[:16]}, this run's {want[:16]}): the method's code changed "
                    f"since; delete {self.directory} (or the run folder) to train from the start"
                )
            try:
                state = self._restore_any(step, template_for(meta))
            except Exception as e:  # truncated or missing array files, broken tree metadata
                damaged.append((step, e))
                continue
            for bad, e in damaged:
                where = self._move_aside(bad)
                warnings.warn(
                    f"{self.directory / str(bad)}: checkpoint {bad} is damaged ({_why(e)}); "
                    f"resumed from checkpoint {step} instead and moved the damaged one to "
                    f"{where}",
                    RunFolderWarning,
                    stacklevel=2,
                )
            return step, meta, state
        if not damaged:
            return None
        listed = "; ".join(f"checkpoint {s}: {_why(e)}" for s, e in damaged)
        raise RunFolderError(
            f"{self.directory}: no checkpoint can be restored ({listed}); to train from the "
            f"start delete {self.directory} or the run folder (`transferjax run --fresh` moves "
            f"the run folder aside)"
        )

    def _restore_any(self, step: int, template):
        abstract = self._abstract(template)
        out = self._mngr.restore(
            step, args=self._ocp.args.Composite(state=self._ocp.args.StandardRestore(abstract))
        )
        return out.state

    def _abstract(self, template):
        """`template`'s leaves as `jax.ShapeDtypeStruct`s (on the checkpointer's sharding)."""
        shardings = self._sharding
        if not callable(shardings):
            shardings = jax.tree.map(lambda _: self._sharding, template)
        else:
            shardings = shardings(template)
        return jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), template, shardings
        )

    def _move_aside(self, step: int) -> pathlib.Path:
        dest_root = self.directory.with_name(f"{self.directory.name}.damaged")
        dest_root.mkdir(parents=True, exist_ok=True)
        dest, n = dest_root / str(step), 1
        while dest.exists():
            n += 1
            dest = dest_root / f"{step}-{n}"
        if jax.process_index() == 0:  # one process moves it; the others only forget it
            (self.directory / str(step)).rename(dest)
        self._mngr.reload()
        return dest

    def close(self) -> None:
        """Waits for the pending save, then releases orbax's and the writer's threads."""
        try:
            self.wait()
        finally:
            self._writer.shutdown()
            self._mngr.close()
