"""Training-state checkpoints with orbax, for automatic resume from a run folder.

A checkpoint holds the params (every part, including the one being trained), the optimizer
state of the stage in progress, and JSON metadata: the stage index, the epochs it completed, the
global epoch counter, the evaluation history so far and the timings. Epoch keys are derived
from the run key by `fold_in(stage, epoch)`, so a resumed run replays exactly the epochs an
uninterrupted run would have.
"""

from __future__ import annotations

import pathlib

import jax


class Checkpointer:
    """Saves and restores the training state under `directory` (keeps the last `keep`)."""

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = pathlib.Path(directory).absolute()
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=False
            ),
        )

    def latest_meta(self) -> dict | None:
        """Metadata of the newest complete checkpoint, or None when there is none."""
        step = self._mngr.latest_step()
        if step is None:
            return None
        meta = self._mngr.restore(
            step, args=self._ocp.args.Composite(meta=self._ocp.args.JsonRestore())
        )
        return {**meta.meta, "_step": step}

    def save(self, step: int, state, meta: dict) -> None:
        """Writes `state` (a pytree of arrays) and `meta` (JSON) as checkpoint `step`."""
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
          ValueError: naming the folder, when the checkpoint holds another structure (written by
            another version of the method's code): its state cannot continue this run.
        """
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
        try:
            out = self._mngr.restore(
                step, args=self._ocp.args.Composite(state=self._ocp.args.StandardRestore(abstract))
            )
        except ValueError as e:
            raise ValueError(
                f"{self.directory}: checkpoint {step} does not match this run's training state (it "
                f"was written by another version of the code); delete {self.directory} to train "
                f"from the start. Orbax: {e}"
            ) from e
        return out.state

    def close(self) -> None:
        self._mngr.close()
