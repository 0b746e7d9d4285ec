"""Failures with real parts: engine errors, cancellation, time limits and a worker killed mid-run (on each broker)."""

from __future__ import annotations

import time
from typing import Any

RUNTIME_BAD_TARGET: dict[str, Any] = {"program": "import torch.nn.functional as F\nx = torch.randn(2, 3, requires_grad=True)\n"
               "t = (x.detach()[:, 0] * 0 + 7).long()  # a class index computed from data: only the engine can see it\n"
               "loss = F.cross_entropy(x, t)\n"}


def test_engine_failure_fails_the_job_not_the_worker(api: Any, chain_spec: dict[str, Any], worker: Any, poll: Any) -> None:
    job_id = api.submit(RUNTIME_BAD_TARGET)  # compiles: the class index is data, only the engine sees it
    job = api.client.get(f"/v1/jobs/{job_id}?wait=30").get_json()  # a long poll wakes for a failure too
    assert job["status"] == "failed", job
    assert job["error"]["type"] == "engine_error" and job["error"]["message"].startswith("IndexError: ") and "out of bounds" in job["error"]["message"], job
    assert "Traceback" not in job["error"]["message"] and job["result"] is None
    assert api.client.get(f"/v1/jobs/{job_id}/nodes/x").status_code == 409
    assert api.client.get(f"/v1/jobs/{job_id}/graph").status_code == 409
    assert api.wait(api.submit(chain_spec))["status"] == "succeeded"
    # the worker's log names the job on Celery's lines (task id = job id) and on every line logged during the job
    poll(lambda: f"job {job_id}: job {job_id} failed" in worker.log.read_text(), 10, "the failure in the worker log")
    log = worker.log.read_text()
    lines = log[log.index(f"job {job_id}: job {job_id} failed"):].splitlines()
    assert "Traceback" in lines[1] and "IndexError" in log


def test_celery_s_own_log_lines_name_the_job(settings_for: Any, start_worker: Any, api_for: Any, poll: Any,
                                             chain_spec: dict[str, Any]) -> None:
    settings = settings_for(broker_db=6)
    worker = start_worker(settings, "info", loglevel="info")
    api = api_for(settings)
    job_id = api.submit(chain_spec)
    assert api.wait(job_id)["status"] == "succeeded"
    poll(lambda: f"gradtrace.run_job[{job_id}] succeeded" in worker.log.read_text(), 10, "Celery's success line")
    assert f"gradtrace.run_job[{job_id}] received" in worker.log.read_text()  # the task id is the job id


def test_delete_cancels_a_running_job(api: Any, slow: Any, keys_of: Any, poll: Any, app: Any,
                                      chain_spec: dict[str, Any]) -> None:
    job_id = api.submit(slow(60000))  # about half a minute of finite differences, unless cancelled
    api.wait(job_id, ("running",), timeout=30)
    assert api.client.get(f"/v1/jobs/{job_id}/nodes/x").status_code == 409
    r = api.client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 202 and r.get_json() == {"id": job_id, "status": "cancelled"}
    assert api.job(job_id)["status"] == "cancelled"  # the record stays for its TTL; its data is gone
    assert all(k.endswith((b":job", b":done", b":cancel")) for k in keys_of(job_id))
    store = app.extensions["gradtrace"].store
    t0 = time.monotonic()
    poll(lambda: store.cancel_state(job_id) == "stopped", 60, "the worker to let go of the cancelled job")
    assert time.monotonic() - t0 < 2, "the numeric engine notices a cancel within its loop"
    assert all(k.endswith((b":job", b":done", b":cancel")) for k in keys_of(job_id))  # the worker wrote nothing back
    assert api.job(job_id)["status"] == "cancelled"
    assert api.wait(api.submit(chain_spec))["status"] == "succeeded"


def test_delete_cancels_a_queued_job(api_for: Any, settings_for: Any, chain_spec: dict[str, Any], keys_of: Any) -> None:
    idle = api_for(settings_for(broker_db=8))  # no worker consumes db 8: the job stays queued
    job_id = idle.submit(chain_spec)
    assert idle.job(job_id)["status"] == "queued"
    r = idle.client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 202
    assert idle.job(job_id)["status"] == "cancelled"
    assert idle.client.delete(f"/v1/jobs/{job_id}").status_code == 204  # deleting it again removes the record
    assert not keys_of(job_id)


def test_time_limit(settings_for: Any, start_worker: Any, api_for: Any, slow: Any) -> None:
    settings = settings_for(broker_db=2, soft_time_limit_s=1, hard_time_limit_s=2)
    start_worker(settings, "limited", concurrency=1)
    api = api_for(settings_for(broker_db=2))  # the API's limit is the default: it lets the job through
    job = api.wait(api.submit(slow(20000)), timeout=60)
    assert job["status"] == "failed", job
    assert job["error"] == {"type": "time_limit", "message": "time limit of 1 s exceeded"}


def test_killed_worker_job_is_redelivered(settings_for: Any, start_worker: Any, api_for: Any, slow: Any, broker: Any,
                                          redis_base: str) -> None:
    # a SIGKILLed worker never acks: Redis restores the message once the visibility timeout has passed, RabbitMQ
    # requeues it as soon as the worker's connection is gone; either way a new worker runs it (second attempt)
    settings = settings_for(broker_url=broker.url(redis_base, 3), visibility_timeout_s=10, soft_time_limit_s=8,
                            hard_time_limit_s=9)
    first = start_worker(settings, "doomed", concurrency=1)
    api = api_for(settings)
    job_id = api.submit(slow(3000))
    api.wait(job_id, ("running",), timeout=30)
    first.kill()
    assert api.job(job_id)["status"] == "running"
    start_worker(settings, "heir", concurrency=1)
    job = api.wait(job_id, timeout=60)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert job["result"]["nodes"]["l"]["value"]["summary"] is None
