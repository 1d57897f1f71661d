"""One process of a multi-process test run: `python -m tests.train.multiprocess_worker ARGS`
(from the repository root) runs `transferjax ARGS` (the cluster comes from the TRANSFERJAX_*
environment variables).

With EXIT_AFTER_CHECKPOINT=STEP set, process 1 ends abruptly (`os._exit`, no clean-up, as a
killed process) right after it took part in saving checkpoint STEP; process 0 is then left
waiting for it in the next collective, and the test kills it.

With SIGTERM_AT_CHECK=N set, process 1 sends itself SIGTERM when the trainer asks for the N-th
time whether to stop (`transferjax.train.preemption.reached`), then waits a second for JAX's
preemption service to spread the notice before it asks.
"""

import os
import signal
import sys
import time

from transferjax import cli
from transferjax.train.checkpoint import Checkpointer


def _exit_after(step: int) -> None:
    save = Checkpointer.save

    def save_then_exit(self, at: int, state, meta: dict) -> None:
        save(self, at, state, meta)
        import jax

        if at == step and jax.process_index() == 1:
            os._exit(9)

    Checkpointer.save = save_then_exit


def _sigterm_at(n: int) -> None:
    from transferjax.train import trainer

    reached, calls = trainer.reached, []

    def notice_then_reached() -> bool:
        import jax

        calls.append(None)
        if len(calls) == n and jax.process_index() == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        return reached()

    trainer.reached = notice_then_reached


if __name__ == "__main__":
    if os.environ.get("EXIT_AFTER_CHECKPOINT"):
        _exit_after(int(os.environ["EXIT_AFTER_CHECKPOINT"]))
    if os.environ.get("SIGTERM_AT_CHECK"):
        _sigterm_at(int(os.environ["SIGTERM_AT_CHECK"]))
    sys.exit(cli.main(sys.argv[1:]))
