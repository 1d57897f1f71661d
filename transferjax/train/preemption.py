"""A termination notice (SIGTERM) stops a run at the end of the epoch in progress, after a
checkpoint of that epoch, so that the same command run again resumes with nothing lost.

Schedulers send SIGTERM some seconds before they kill a job: SLURM at a time limit or a
preemption, Kubernetes when it evicts a pod, a cloud before it reclaims a spot machine.

- One process. While a trainer call with checkpoints runs in the main thread (or
  `train_seeds` spreads seeds over threads), `sigterm_notice` replaces SIGTERM's action by
  recording the notice. A second SIGTERM terminates the process at once, as without it.
  After the epoch in progress, the trainer checkpoints it and raises
  `transferjax.errors.Preempted`; every seed's thread does the same at the end of its own
  epoch.
- Several processes (`jax.distributed`). JAX's preemption service already catches SIGTERM in
  each process and only records it, so without this such a run never stopped. Every process
  asks `reached` after each epoch, with a counter that advances alike in all of them. JAX's
  preemption sync (`multihost_utils.reached_preemption_sync_point`) answers True in every
  process at the same epoch, the first one that all of them reach after the notice. All the
  processes save that epoch's checkpoint together (when the call has checkpoints) and stop.

On one process, outside these blocks and in a call without checkpoints (nothing to save),
SIGTERM keeps its default action. A notice in the last epoch of the last stage lets the call
finish. `transferjax run` and `sweep` print one line naming the checkpoint and exit with status
143 (128 + SIGTERM, what a shell reports for a job that SIGTERM ended).
"""

from __future__ import annotations

import contextlib
import signal
import threading

from jax.experimental import multihost_utils

from transferjax.train.distributed import is_multiprocess

_notice = threading.Event()
_lock = threading.Lock()
_depth = 0  # nested `sigterm_notice` blocks that installed the handler
_previous = None  # SIGTERM's handler before the outermost block
_checked = 0  # epochs checked by this process (the sync counter of a multi-process run)


def notify() -> None:
    """Records a termination notice, as SIGTERM does inside `sigterm_notice`."""
    _notice.set()


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second notice terminates at once
    notify()


@contextlib.contextmanager
def sigterm_notice(*, enabled: bool = True):
    """Within the block, SIGTERM records a notice (`reached` then answers True) instead of
    terminating the process; the previous handler is back afterwards. Does nothing when not
    `enabled`, outside the main thread (Python handles signals there only; an enclosing block
    of the main thread serves a seed's thread), or in a multi-process run (JAX's preemption
    service holds SIGTERM there). Blocks nest; a notice lasts until the outermost one ends."""
    global _depth, _previous
    install = (
        enabled and threading.current_thread() is threading.main_thread() and not is_multiprocess()
    )
    if install:
        with _lock:
            if _depth == 0:
                _notice.clear()
                _previous = signal.signal(signal.SIGTERM, _on_sigterm)
            _depth += 1
    try:
        yield
    finally:
        if install:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    # None: a handler not set from Python, which cannot be put back
                    signal.signal(signal.SIGTERM, _previous or signal.SIG_DFL)
                    _previous = None
                    _notice.clear()  # a notice lives within its block


def reached() -> bool:
    """Whether to stop after the epoch just trained: a notice was recorded within the
    `sigterm_notice` block that is open (one process), or every process has reached the epoch
    agreed on after a notice to any of them (several).

    In a multi-process run every process must call it after each epoch it trains, in the same
    order (it takes part in JAX's preemption sync); with JAX's preemption service turned off
    (`jax_enable_preemption_service`), SIGTERM keeps its default action and this is False."""
    if not is_multiprocess():
        return _depth > 0 and _notice.is_set()
    global _checked
    _checked += 1
    try:
        return multihost_utils.reached_preemption_sync_point(_checked)
    except RuntimeError:  # no preemption service in this cluster
        return False
