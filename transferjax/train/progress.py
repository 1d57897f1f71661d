"""Progress reporting: a one-line bar with steps per second and ETA on a terminal, plain log
lines otherwise (CI logs, files). Only process 0 prints."""

from __future__ import annotations

import sys
import time


class Progress:
    """`update(done_epochs, steps, text)` after each epoch; `close()` at the end.

    Args:
      total_epochs: epochs over all stages and trials (for the ETA).
      stream: output stream (default stdout); a bar is drawn only when it is a terminal.
      quiet: print nothing.
    """

    def __init__(self, total_epochs: int, *, stream=None, quiet: bool = False):
        import jax

        self.stream = stream or sys.stdout
        self.quiet = quiet or jax.process_index() != 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = max(1, total_epochs)
        self.t0 = time.perf_counter()
        self.steps = 0

    def update(self, done: int, steps: int, text: str) -> None:
        if self.quiet:
            return
        self.steps += steps
        dt = max(1e-9, time.perf_counter() - self.t0)
        rate = self.steps / dt
        eta = dt / max(done, 1) * (self.total - done)
        msg = f"[{done}/{self.total}] {rate:,.0f} steps/s  eta {eta:,.0f}s  {text}"
        if self.tty:
            width = 30
            fill = int(width * done / self.total)
            self.stream.write("\r" + "#" * fill + "." * (width - fill) + " " + msg[:120] + "\033[K")
        elif done * 20 // self.total != (done - 1) * 20 // self.total or done == self.total:
            self.stream.write(msg + "\n")  # about 20 plain lines per run
        self.stream.flush()

    def close(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
