"""The errors transferjax raises for bad input, bad settings and failed runs, and `Preempted`,
the stop on a termination notice.

Every error derives from `TransferjaxError`; the command line prints such an error as one line
(`transferjax: error: ...`) and exits non-zero, and `--debug` shows the traceback. Each message
names what to look at: the file and line, the setting, or the run folder. `Preempted` is not an
error: the command line prints its line (where the checkpoint is) and exits 143.
"""

from __future__ import annotations


class TransferjaxError(Exception):
    """Base class of the errors a user can act on (as opposed to bugs in transferjax)."""


class TransferjaxWarning(UserWarning):
    """Base class of transferjax's warnings (a step taken on the user's behalf: a stale lock
    taken over, a damaged checkpoint skipped, an unverified download); the command line prints
    each as one line `transferjax: warning: ...`."""


class ConfigError(TransferjaxError, ValueError):
    """A config key or value is invalid; the message names the setting and the valid choices."""


class DataError(TransferjaxError, ValueError):
    """Malformed or inconsistent input data; the message names the file/line or field."""


class DivergenceError(TransferjaxError, RuntimeError):
    """Training produced a non-finite loss or metric; the message names the stage, the epoch and
    the setting to look at (usually the learning rate)."""


class RunFolderError(TransferjaxError, RuntimeError):
    """A run folder cannot be used as asked: another run holds it, it was written from other
    data or another state structure, or none of its checkpoints can be restored. The message
    says what differs and how to start fresh."""


class Preempted(BaseException):
    """Training stopped on a termination notice (SIGTERM; `transferjax.train.preemption`), after
    a checkpoint when the call had a checkpoint folder. Not an error, and derived from
    BaseException as KeyboardInterrupt is, so that code catching Exception (a sweep point, a
    seed's thread) does not take it for a failure. The command line prints it as one line and
    exits `exit_status`."""

    exit_status = 128 + 15  # 143: what a shell reports for a job that SIGTERM ended

    def __init__(self, *, stage: str, epoch: int, checkpoint: str | None):
        self.stage, self.epoch, self.checkpoint = stage, epoch, checkpoint
        saved = (
            f"checkpoint saved in {checkpoint}: run the same command again to resume"
            if checkpoint is not None
            else "no checkpoint was saved (checkpoints are off, or every trial had failed)"
        )
        super().__init__(
            f"stopped by a termination notice (SIGTERM) after epoch {epoch} of stage "
            f"{stage!r}; {saved}"
        )
