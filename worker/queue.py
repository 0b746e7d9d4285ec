"""What the API and the worker share about the queue, with no side effects on import: the task's name, the
Celery configuration from the one Settings object, a Celery app to send with, and a ping of the workers.
(worker.celery_app builds the worker's app and connects its signals; the API never imports it.)"""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.settings import Settings, get_settings

QUEUE = "gradtrace"
RUN_JOB = "gradtrace.run_job"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings: late acks, one job per process at a time, time limits below the visibility timeout."""
    vt = settings.visibility_timeout_s
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.broker_timeout_s,
        "broker_transport_options": {
            "visibility_timeout": vt,
            # look for messages of lost workers every few seconds, not only at start-up
            "unacked_restore_interval": max(1, min(10, vt // 4)),
            "unacked_restore_throttle": 1,
            # a stalled broker answers a send with an error within seconds instead of hanging a request
            "socket_timeout": settings.broker_timeout_s,
            "socket_connect_timeout": settings.broker_timeout_s,
        },
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # a child that grew past the job memory budget is replaced once its job is done
        "worker_max_memory_per_child": settings.max_worker_bytes // 1024,
        "task_soft_time_limit": settings.soft_time_limit_s,
        "task_time_limit": settings.hard_time_limit_s,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_default_queue": QUEUE,
    }


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for these settings (the API uses one to enqueue, the worker runs `app`)."""
    celery = Celery("gradtrace", include=["worker.tasks"])
    celery.conf.update(celery_config(settings or get_settings()))
    return celery


def count_workers(celery: Celery, timeout: float = 1.0) -> int:
    """How many workers answer a ping within `timeout` seconds (raises if the broker is unreachable)."""
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        return len(celery.control.ping(timeout=timeout, connection=conn) or [])
