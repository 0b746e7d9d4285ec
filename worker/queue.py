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
    """Celery settings: late acks, one job per process at a time, time limits below the broker's redelivery
    timeout, and what the broker needs (broker_settings)."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.broker_timeout_s,
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        "result_backend": None,
        "task_ignore_result": True,
        # a job's message is acknowledged when its task returns: a worker that dies mid-job leaves it to the broker
        # to deliver again (the job record counts and caps the attempts); a pool child that dies rejects it at once
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A worker that loses its broker connection lets its running jobs go on (Celery 6 will default to stopping
        # them, as the broker delivers their messages again). The job record decides: a job running on keeps
        # renewing its lease, so the reaper leaves it alone; if its message comes again (RabbitMQ requeues a lost
        # connection's messages at once, Redis after the visibility timeout) that delivery takes the job over and
        # the first stops at its next step; a job that ends first is not run again. Stopping them would let their
        # leases run out while the broker is away, and the reaper's requeue would race the redelivery.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # a child that grew past the job memory budget is replaced once its job is done
        "worker_max_memory_per_child": settings.max_worker_bytes // 1024,
        "task_soft_time_limit": settings.soft_time_limit_s,
        "task_time_limit": settings.hard_time_limit_s,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_default_queue": QUEUE,
        **broker_settings(settings),
    }


def broker_settings(settings: Settings) -> dict[str, Any]:
    """What differs between the brokers.

    RabbitMQ (`amqp://`), as Celery recommends for it: the queue is a quorum queue (replicated, durable, and it
    requeues a dead consumer's messages at once), publishes wait for the broker's confirm, and global QoS is off
    (quorum queues refuse it: Celery's worker_detect_quorum_queues then sets a per-consumer prefetch, which
    prefetch multiplier 1 keeps at one job per process). The exchange is a topic exchange so that Celery's native
    delayed delivery can carry countdowns (the task's retries while Redis is away) instead of a worker holding
    them. The redelivery timeout is the server's consumer_timeout, which must exceed the hard time limit.
    Redis (the default): the visibility timeout, above the hard time limit, is when a dead worker's message
    goes back to the queue."""
    t = settings.broker_timeout_s
    if settings.broker_is_amqp:
        return {
            "broker_transport_options": {
                "confirm_publish": True,
                # a stalled broker fails a publish (its confirm) or a ping within seconds instead of hanging a request
                "read_timeout": t,
                "write_timeout": t,
            },
            "task_default_queue_type": "quorum",
            "task_default_exchange_type": "topic",
            "worker_detect_quorum_queues": True,
        }
    vt = settings.visibility_timeout_s
    return {
        **({"broker_transport": "worker.redis_transport:Transport"}
           if (settings.broker_url or "").partition("://")[0] in ("redis", "rediss") else {}),
        "broker_transport_options": {
            "visibility_timeout": vt,
            # look for messages of lost workers every few seconds, not only at start-up
            "unacked_restore_interval": max(1, min(10, vt // 4)),
            "unacked_restore_throttle": 1,
            # a stalled broker answers a send with an error within seconds instead of hanging a request
            "socket_timeout": t,
            "socket_connect_timeout": t,
        },
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
