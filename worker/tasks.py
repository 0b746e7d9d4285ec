"""The one task: run a job's trace and store what it gives, whatever happens."""

from __future__ import annotations

import logging
import resource
import time
from functools import lru_cache
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from redis.exceptions import ClusterDownError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError

from services.compiler import Limits
from services.errors import CancelledError, SpecError
from services.lease import LeaseKeeper
from services.progress import ThrottledProgress
from services.store import Delivery, JobStore, ResultTooLarge
from services.trace import paused_gc, trace
from shared.settings import Settings, get_settings
from shared.spec import TraceSpec
from worker.celery_app import RUN_JOB, app, configure_torch

log = logging.getLogger(__name__)


@lru_cache
def store() -> JobStore:
    """This process's store (created after the fork)."""
    return JobStore.from_settings(get_settings())


@lru_cache
def _torch_ready(threads: int) -> bool:
    configure_torch(threads)  # for pools without worker_process_init (solo)
    return True


def execute(job_id: str, jobs: JobStore, settings: Settings) -> str:
    """Run one delivery of a job; returns the state it left the job in ('succeeded', 'failed', 'cancelled'), or
    'not run: <why>' for a delivery that did not run it (finished, gone, cancelled, a duplicate). Never raises
    for a bad job."""
    delivery = jobs.deliver(job_id, settings.max_attempts, settings.lease_s)
    if delivery.state == "duplicate":
        # Another worker holds the job under a lease. A broker that saw that worker die redelivers at once, before
        # its lease runs out: wait for the lease once; a live worker renews it (then this copy is dropped), a dead
        # one does not (then this delivery takes over, without waiting for the reaper).
        time.sleep(min(jobs.lease_left(job_id), settings.lease_s) + 0.1)
        delivery = jobs.deliver(job_id, settings.max_attempts, settings.lease_s)
    if delivery.state != "running":
        if delivery.state in ("gone", "cancelled"):
            jobs.stopped(job_id)
        log.warning("job %s not run: %s", job_id, delivery.state)
        return f"not run: {delivery.state}"  # what Celery logs: a run says 'succeeded', a dropped delivery not

    lease = LeaseKeeper(lambda: jobs.renew(job_id, delivery.attempt, settings.lease_s), settings.lease_s)
    progress = ThrottledProgress(lambda step, frac: not lease.lost and jobs.progress(job_id, step, frac),
                                 settings.progress_interval_s)
    try:
        _torch_ready(settings.worker_torch_threads)
        with lease, paused_gc():  # parse, trace and store allocate many acyclic objects: no GC passes over them
            # the spec (its JSON, then its model) is held by nothing here: trace lets it go once compiled
            done = trace(_spec(delivery), Limits.from_settings(settings), settings.inline_limit, progress,
                         settings.result_full_nodes)
            progress("store", 1.0)
            keep, done.graph = done.graph.keep, None  # the graph's memory is free for the store's write (its peak)
            stored = jobs.finish(job_id, done, keep, delivery, settings.max_result_bytes)
        if stored:
            return "succeeded"
        raise CancelledError(f"job {job_id} was cancelled")
    except CancelledError:
        if lease.lost:
            log.warning("job %s attempt %d: no longer ours (lease reclaimed, cancelled or deleted): stopped", job_id,
                        delivery.attempt)
        jobs.stopped(job_id)
        return "cancelled"
    except SoftTimeLimitExceeded:
        jobs.fail(job_id, "time_limit", f"time limit of {settings.soft_time_limit_s} s exceeded")
    except ResultTooLarge as e:
        jobs.fail(job_id, "result_too_large", str(e))
    except MemoryError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        jobs.fail(job_id, "out_of_memory", f"the worker ran out of memory (its peak: {peak:.0f} MiB)")
    except SpecError as e:
        jobs.fail(job_id, "spec_error", str(e))
    except Exception as e:  # any engine failure fails the job, never the worker
        log.exception("job %s failed (attempt %d)", job_id, delivery.attempt)
        jobs.fail(job_id, "engine_error", f"{type(e).__name__}: {e}" if str(e) else repr(e))
    finally:
        progress.close()
    return "failed"


def _spec(delivery: Delivery) -> TraceSpec:
    """The delivery's spec, parsed; its JSON is dropped from the delivery (tens of MB at 1M nodes)."""
    raw, delivery.spec_json = delivery.spec_json, ""
    return TraceSpec.model_validate_json(raw)


class JobTask(Task):
    """Marks the job failed when the hard time limit killed its process."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Called in the worker's main process for a hard time limit."""
        if isinstance(exc, TimeLimitExceeded) and args:
            limit = get_settings().hard_time_limit_s
            store().fail(str(args[0]), "time_limit", f"hard time limit of {limit} s exceeded: the process was killed")


@app.task(name=RUN_JOB, base=JobTask, ignore_result=True,
          autoretry_for=(RedisConnectionError, ClusterDownError, RedisClusterException), retry_backoff=True,
          retry_backoff_max=30, max_retries=None)
def run_job(job_id: str) -> str:
    """Trace job `job_id` and store its result. While the store (Redis) is unreachable the message is sent again
    with a growing countdown (at most 30 s), for as long as it takes: a broker other than that Redis (RabbitMQ)
    keeps delivering jobs while it is down, and a job whose message gave up would stay queued for good."""
    return execute(job_id, store(), get_settings())
