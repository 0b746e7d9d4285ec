"""A running job's progress, written to the store at most once per interval, so that fast jobs make no writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from services.errors import CancelledError
from services.ticker import TICKER, Call, Ticker

Write = Callable[[str, float], bool]
"""Stores (step, fraction); False when the job was cancelled or deleted."""


class ThrottledProgress:
    """The trace's progress callback: a step reported within `interval_s` of the last write is held back and
    written by the process's ticker when the interval is up (unless a newer step replaced it), so a long step shows under
    its own name while a job that ends first writes nothing. A write that finds the job cancelled makes the
    next call raise CancelledError (in the trace's thread, between steps)."""

    def __init__(self, write: Write, interval_s: float, ticker: Ticker = TICKER) -> None:
        self.write = write
        self.ticker = ticker
        self.interval_s = interval_s
        self.last = time.monotonic()
        self.pending: tuple[str, float] | None = None
        self.cancelled = False
        self.timer: Call | None = None
        self.lock = threading.Lock()

    def __call__(self, step: str, fraction: float) -> None:
        """Report that `step` begins, `fraction` of the job done."""
        self._raise_if_cancelled()
        with self.lock:
            wait = self.interval_s - (time.monotonic() - self.last)
            if wait > 0:
                self.pending = (step, fraction)
                if self.timer is None:
                    self.timer = self.ticker.call_later(wait, self._flush)
                return
            self.pending, self.last = None, time.monotonic()
        if not self.write(step, fraction):
            self.cancelled = True
        self._raise_if_cancelled()

    def close(self) -> None:
        """Drop what is held back and stop the timer (the job is finishing)."""
        with self.lock:
            timer, self.timer, self.pending = self.timer, None, None
        if timer is not None:
            timer.cancel()

    def _flush(self) -> None:
        with self.lock:
            held, self.pending, self.timer = self.pending, None, None
            if held is not None:
                self.last = time.monotonic()
        if held is not None and not self.write(*held):
            self.cancelled = True

    def _raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise CancelledError("the job was cancelled")
