"""How a run stops before its end: a signal (the step finishes and is saved first) or a loss
that is no longer finite. The CLI exits with the exception's code and its one-line message."""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path


class TrainingStopped(Exception):
    """Training ended early; ``exit_code`` is what the CLI exits with, the message one line."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class StopSignals:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, saves, then stops."""

    CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}

    def __enter__(self):
        self.received = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.CODES:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def check_finite(values: dict[str, float], step: int, out: Path | None = None) -> None:
    for name, v in values.items():
        if not math.isfinite(v):
            where = f"{out} keeps" if out is not None else "the run folder keeps"
            raise TrainingStopped(f"loss {name} is {v} at step {step}; stopped, {where} the last good "
                                  "checkpoint (try a lower learning rate)", 2)
