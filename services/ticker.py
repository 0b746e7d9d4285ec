"""One timer thread per process for the running job's background beats (lease renewals, held-back progress):
starting and joining two threads per job cost ~0.8 ms of a ~6 ms small job in the worker."""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Call:
    """A scheduled call; `cancel()` keeps it from running (a call already running finishes)."""

    __slots__ = ("fn", "cancelled")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Ticker:
    """Runs calls at their times (time.monotonic) in one daemon thread, started on first use in each process
    (a forked pool child starts its own). Calls run one after another: a slow one delays the next."""

    def __init__(self) -> None:
        self._seq = itertools.count()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a child has no thread, and maybe a lock held at the fork

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Call]] = []
        self._started = False

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Call:
        """Run `fn` in the ticker's thread `delay_s` seconds from now."""
        call = Call(fn)
        with self._lock:
            if not self._started:  # first use in this process (or in a forked child)
                self._started = True
                threading.Thread(target=self._run, args=(self._wake, self._heap), name="ticker", daemon=True).start()
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), call))
            if self._heap[0][2] is call:
                self._wake.notify()
        return call

    @staticmethod
    def _run(wake: threading.Condition, heap: list[tuple[float, int, Call]]) -> None:
        while True:
            with wake:
                while not heap or heap[0][0] > time.monotonic():
                    wake.wait(heap[0][0] - time.monotonic() if heap else None)
                call = heapq.heappop(heap)[2]
            if call.cancelled:
                continue
            try:
                call.fn()
            except Exception:  # a beat's failure must not stop the beats of later jobs
                log.exception("background call failed")


TICKER = Ticker()
"""This process's ticker."""
