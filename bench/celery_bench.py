"""The worker the benchmark runs: the service's own Celery app and task, plus a no-op baseline task.

Started as `celery -A bench.celery_bench:app worker ...`, so the baseline runs on the very same app,
settings, queue, broker and pool processes as `gradtrace.run_job`.

The no-op cannot return a result (the service runs Celery without a result backend, and adding one
would change the settings being compared), so it signals completion with one RPUSH to the store's
Redis: the cheapest "done" a caller can wait for, which the client awaits with BLPOP.
"""

from __future__ import annotations

import os
import time
from typing import Any

import worker.tasks  # noqa: F401  (registers gradtrace.run_job on `app`)
from worker.celery_app import app

NOOP = "bench.noop"
TIMINGS_ENV = "GRADTRACE_BENCH_TIMINGS"
"""When set (by bench.stack), a file each pool process appends 'finish <job id> <ms>' to, for every JobStore.finish:
the only instrumentation of the benchmark's worker (one line written after the job's data is stored)."""


def _time_finish() -> None:
    path = os.environ.get(TIMINGS_ENV)
    if not path:
        return
    from services.store import JobStore

    inner = JobStore.finish

    def finish(self: JobStore, job_id: str, *args: Any, **kwargs: Any) -> bool:
        t0 = time.perf_counter()
        try:
            return inner(self, job_id, *args, **kwargs)
        finally:
            ms = (time.perf_counter() - t0) * 1e3
            with open(path, "a") as f:
                f.write(f"finish {job_id} {ms:.3f}\n")

    JobStore.finish = finish  # type: ignore[method-assign]


_time_finish()


@app.task(name=NOOP, ignore_result=True)
def noop(done_key: str | None = None) -> None:
    """Do nothing; say so on `done_key` (a Redis list) so that the caller can await it."""
    if done_key:
        worker.tasks.store().r.rpush(done_key, b"1")  # BLPOP pops it: the list is gone again


__all__: list[Any] = ["app", "noop"]
