"""The Celery configuration per broker (worker/queue.py), and what it makes of a real RabbitMQ: a quorum queue on a
topic exchange, native delayed delivery for countdowns, a consumer_timeout above the hard time limit, readiness and
the worker's container healthcheck through AMQP."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import ROOT, Api, make_settings, settings_env

CHAIN = {"program": "x = torch.tensor(2.0, requires_grad=True)\nfx = x**2 + 3*x + 1\ngx = fx**3 + 4*fx + 2\n"}


def config(broker_url: str | None, **env: str) -> dict[str, Any]:
    from shared.settings import Settings
    from worker.queue import celery_config

    return celery_config(Settings(broker_url=broker_url, **env))  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["amqp://u:p@rabbit:5672//", "amqps://u:p@rabbit:5671/prod", "pyamqp://rabbit//"])
def test_rabbitmq_gets_quorum_queues_confirms_and_timeouts(url: str) -> None:
    from shared.settings import Settings

    c = config(url)
    assert Settings(broker_url=url).broker_is_amqp and c["broker_url"] == url
    opts = c["broker_transport_options"]
    assert opts == {"confirm_publish": True, "read_timeout": 2.0, "write_timeout": 2.0}  # no Redis options
    assert c["task_default_queue_type"] == "quorum" and c["worker_detect_quorum_queues"] is True
    assert c["task_default_exchange_type"] == "topic"  # native delayed delivery binds topic exchanges only
    assert c["worker_cancel_long_running_tasks_on_connection_loss"] is False  # the job record decides (see queue.py)
    assert c["broker_connection_timeout"] == 2.0
    # quorum queues refuse priorities and global QoS: nothing here asks for either
    assert "task_queue_max_priority" not in c and "task_default_priority" not in c
    assert (c["task_acks_late"], c["task_reject_on_worker_lost"], c["worker_prefetch_multiplier"]) == (True, True, 1)


def test_redis_stays_the_zero_setup_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import Settings

    for key in ("BROKER_URL", "GRADTRACE_BROKER_URL", "REDIS_URL", "GRADTRACE_REDIS_URL", "REDIS_CLUSTER",
                "GRADTRACE_REDIS_CLUSTER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://store:6379/0")
    monkeypatch.setenv("BROKER_URL", "")  # what compose passes when BROKER_URL is not set: `${BROKER_URL:-}`
    s = Settings()
    assert s.broker_url == "redis://store:6379/0" and not s.broker_is_amqp
    with pytest.raises(ValueError, match="BROKER_URL"):  # empty is unset for a cluster store too: refused
        Settings(redis_url="redis+cluster://n1:7000")
    c = config(None)
    opts = c["broker_transport_options"]
    assert opts["visibility_timeout"] == s.visibility_timeout_s > s.hard_time_limit_s
    assert opts["socket_timeout"] == opts["socket_connect_timeout"] == s.broker_timeout_s
    assert "confirm_publish" not in opts and "task_default_queue_type" not in c
    assert c["worker_cancel_long_running_tasks_on_connection_loss"] is False
    assert (c["task_acks_late"], c["task_reject_on_worker_lost"], c["worker_prefetch_multiplier"]) == (True, True, 1)


def test_the_compose_rabbitmq_config_times_consumers_out_after_the_hard_limit() -> None:
    from shared.settings import Settings

    conf = (ROOT / "deploy" / "rabbitmq.conf").read_text()
    ms = int(re.search(r"^consumer_timeout\s*=\s*(\d+)\s*$", conf, re.M).group(1))  # type: ignore[union-attr]
    s = Settings()
    assert ms / 1000 > s.hard_time_limit_s + s.lease_s  # a job's message is acknowledged when the job ends


def _queues(rabbit: Any, vhost: str) -> dict[str, list[str]]:
    """name: [type, durable] of the vhost's queues."""
    out = rabbit.ctl("list_queues", "-p", vhost, "--no-table-headers", "name", "type", "durable")
    return {row.split()[0]: row.split()[1:] for row in out.splitlines() if row.strip()}


def test_a_real_rabbitmq_declares_a_quorum_queue_and_delays_countdowns_natively(
    rabbitmq: Any, redis_base: str, start_worker: Any, api_for: Any,
) -> None:
    from shared.spec import TraceSpec
    from worker.queue import RUN_JOB

    vhost = rabbitmq.new_vhost()
    settings = make_settings(redis_base, broker_url=rabbitmq.url(vhost))
    worker = start_worker(settings, "quorum", concurrency=1)
    api: Api = api_for(settings)
    assert api.wait(api.submit(CHAIN))["status"] == "succeeded"
    queues = _queues(rabbitmq, vhost)
    assert queues["gradtrace"] == ["quorum", "true"], queues
    exchanges = rabbitmq.ctl("list_exchanges", "-p", vhost, "--no-table-headers", "name", "type")
    assert re.search(r"^gradtrace\s+topic$", exchanges, re.M), exchanges
    assert re.search(r"^celery_delayed_delivery\s+topic$", exchanges, re.M), exchanges  # Celery's delayed delivery
    timeout = rabbitmq.ctl("eval", "application:get_env(rabbit, consumer_timeout).")
    ms = int(re.search(r"\d+", timeout).group())  # type: ignore[union-attr]
    assert ms / 1000 > settings.hard_time_limit_s, timeout

    # a countdown (what the task's retries use while Redis is away) waits in RabbitMQ's delay queues, not in a
    # worker (which would hold it unacknowledged, with quorum queues' fixed prefetch, as an ETA task till it is due)
    store = api.client.application.extensions["gradtrace"].store
    job_id, _ = store.create(TraceSpec.model_validate(CHAIN).model_dump_json())
    t0 = time.monotonic()
    worker.celery.send_task(RUN_JOB, args=[job_id], countdown=3)
    time.sleep(0.5)
    held = worker.celery.control.inspect(destination=[worker.name], timeout=1.0).scheduled()
    assert held == {worker.name: []}, held
    assert api.job(job_id)["status"] == "queued"
    assert api.wait(job_id, timeout=30)["status"] == "succeeded"
    assert time.monotonic() - t0 >= 2.5


def test_readiness_and_the_worker_healthcheck_through_rabbitmq(rabbitmq: Any, redis_base: str, start_worker: Any,
                                                               api_for: Any) -> None:
    settings = make_settings(redis_base, broker_url=rabbitmq.url(rabbitmq.new_vhost()))
    api: Api = api_for(settings)
    r = api.client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["workers"] == 0  # nobody consumes this vhost yet
    start_worker(settings, "celery", concurrency=1)  # the default node name: celery@<hostname>
    r = api.client.get("/readyz")
    assert r.status_code == 200 and r.get_json()["workers"] == 1, r.get_json()
    check = subprocess.run([sys.executable, str(ROOT / "deploy" / "healthcheck"), "worker"],
                           env={**settings_env(settings), "HOSTNAME": ""}, cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stderr


def test_redis_broker_publishes_through_one_client(redis_base: str) -> None:
    # kombu builds a redis.Redis per message sent; our transport keeps one per channel, and the messages still
    # arrive, in order, on the real Redis
    import redis

    from worker.queue import RUN_JOB, make_celery
    from worker.redis_transport import Transport

    settings = make_settings(redis_base, broker_db=7)
    assert config(settings.broker_url)["broker_transport"] == "worker.redis_transport:Transport"
    assert "broker_transport" not in config("amqp://rabbit//")
    celery = make_celery(settings)
    r = redis.Redis.from_url(settings.broker_url)
    r.flushdb()
    with celery.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
        with conn.Producer() as producer:
            clients = []
            for k in range(3):
                celery.send_task(RUN_JOB, args=[f"job{k}"], task_id=f"job{k}", producer=producer)
                clients.append(producer.channel._publisher)
    assert clients[0] is not None and all(c is clients[0] for c in clients)
    assert [m["headers"]["id"] for m in map(_json, r.lrange("gradtrace", 0, -1))] == ["job2", "job1", "job0"]


def _json(raw: bytes) -> dict[str, Any]:
    import json

    return json.loads(raw)
