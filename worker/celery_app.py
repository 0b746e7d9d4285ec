"""The worker's Celery app (configured in worker.queue), its signals: torch imported before forking and set up in each
pool process, and the reaper of expired leases in the main process."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init, worker_process_init, worker_ready

from shared.settings import get_settings
from worker.queue import QUEUE, RUN_JOB, celery_config, count_workers, make_celery

__all__ = ["QUEUE", "RUN_JOB", "app", "celery_config", "configure_torch", "count_workers", "make_celery"]

def configure_torch(threads: int) -> None:
    """Import torch (never touching CUDA) and cap its CPU threads."""
    import torch

    torch.set_num_threads(threads)


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    configure_torch(get_settings().worker_torch_threads)


@worker_init.connect
def _import_torch_before_forking(**_: Any) -> None:
    """Import torch once in the worker's main process (touching neither CUDA nor its thread pools), so that a
    child forked after a crash starts at once instead of spending seconds near Celery's start-up limit."""
    import torch  # noqa: F401


@worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    """Every worker's main process requeues jobs whose lease ran out (reclaiming is atomic per job)."""
    from services.lease import Reaper, reap
    from services.store import JobStore

    settings = get_settings()
    store = JobStore.from_settings(settings)
    celery = sender.app if sender is not None else app

    def step() -> dict[str, int]:
        return reap(store.expired, lambda j: store.reclaim(j, settings.max_attempts),
                    lambda j: celery.send_task(RUN_JOB, args=[j]))

    Reaper(step, settings.reaper_interval_s).start()


app = make_celery()
