"""Leases on running jobs: a worker renews its job's lease while it works, and a reaper requeues (or fails)
jobs whose lease ran out, so that no job stays 'running' after its worker, its message or Redis went away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from redis.exceptions import RedisError

from services.ticker import TICKER, Call, Ticker

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews one delivery's lease every third of `lease_s` (on the process's ticker thread) while the job runs.
    `lost` turns true when the store says the job is no longer this delivery's (reclaimed, cancelled, gone);
    a renewal that fails for want of Redis is tried again at the next beat."""

    def __init__(self, renew: Callable[[], bool], lease_s: float, ticker: Ticker = TICKER) -> None:
        self.renew = renew
        self.every = lease_s / 3
        self.lost = False
        self.ticker = ticker
        self._stopped = False
        self._next: Call | None = None

    def __enter__(self) -> LeaseKeeper:
        self._next = self.ticker.call_later(self.every, self._beat)
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._stopped = True
        if self._next is not None:
            self._next.cancel()

    def _beat(self) -> None:
        if self._stopped:
            return
        try:
            if not self.renew():
                self.lost = True
                return
        except RedisError as e:  # Redis away: the lease may run out meanwhile; the reaper then decides
            log.warning("lease renewal failed: %s", e)
        if not self._stopped:
            self._next = self.ticker.call_later(self.every, self._beat)


def reap(expired: Callable[[], list[str]], reclaim: Callable[[str], str], requeue: Callable[[str], None]) -> dict[str, int]:
    """One pass of the reaper: reclaim every job whose lease ran out and send the requeued ones again."""
    counts = {"requeued": 0, "failed": 0, "alive": 0}
    for job_id in expired():
        state = reclaim(job_id)
        counts[state] = counts.get(state, 0) + 1
        if state == "requeued":
            requeue(job_id)
            log.warning("job %s: lease ran out, requeued", job_id)
        elif state == "failed":
            log.warning("job %s: lease ran out at the attempt cap, failed", job_id)
    return counts


class Reaper:
    """Runs `reap` every `interval_s` seconds in a daemon thread (one per worker; reclaiming is atomic per job,
    so several reapers never requeue a job twice)."""

    def __init__(self, step: Callable[[], dict[str, int]], interval_s: float) -> None:
        self.step = step
        self.interval_s = interval_s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reaper", daemon=True)

    def start(self) -> Reaper:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.step()
            except Exception as e:  # Redis or the broker away: try again at the next pass
                log.warning("reaper pass failed: %s", e)
