"""The Celery app, configured from the one Settings object; torch is set up in each pool process."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from shared.settings import Settings, get_settings

QUEUE = "gradtrace"
RUN_JOB = "gradtrace.run_job"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings: late acks, one job per process at a time, time limits below the visibility timeout."""
    vt = settings.visibility_timeout_s
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": vt,
            # look for messages of lost workers every few seconds, not only at start-up
            "unacked_restore_interval": max(1, min(10, vt // 4)),
            "unacked_restore_throttle": 1,
        },
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
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


def configure_torch(threads: int) -> None:
    """Import torch (never touching CUDA) and cap its CPU threads."""
    import torch

    torch.set_num_threads(threads)


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    configure_torch(get_settings().worker_torch_threads)


app = make_celery()
