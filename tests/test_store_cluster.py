"""The service with its store on a real Redis Cluster (three redis-servers joined by `redis-cli --cluster create`)
and its broker on a plain Redis: the API and real Celery workers end to end, a lost worker's job reclaimed by the
reaper on the cluster, the API up while the cluster is away, and how the settings select cluster mode."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Api, Worker, job_keys, slow_spec, wait_for
from pydantic import ValidationError
from redis.cluster import RedisCluster
from redis.crc import key_slot

from services.store import JobStore
from services.store_client import cluster_seeds, connect
from shared.settings import Settings

FAST = {"lease_s": 3.0, "reaper_interval_s": 0.5, "progress_interval_s": 0.1}


def cluster_settings(redis_cluster: str, redis_base: str, broker_db: int, **overrides: Any) -> Settings:
    """The store on the cluster, the broker in a db of its own on the plain test Redis (no other worker's jobs)."""
    return Settings(redis_url=redis_cluster, broker_url=f"{redis_base}/{broker_db}", **overrides)


def test_chain_rule_end_to_end_on_a_cluster_store(redis_cluster: str, redis_base: str, start_worker: Any,
                                                  chain_spec: dict[str, Any]) -> None:
    from api.app import create_app

    settings = cluster_settings(redis_cluster, redis_base, 13)
    assert settings.redis_cluster
    start_worker(settings, "cluster")
    app = create_app(settings)
    api = Api(app.test_client())
    store: JobStore = app.extensions["gradtrace"].store
    assert store.cluster

    key = f"cluster-{time.time_ns()}"
    job_id = api.submit(chain_spec, {"Idempotency-Key": key})
    assert api.submit(chain_spec, {"Idempotency-Key": key}) == job_id
    t0 = time.monotonic()
    r = api.client.get(f"/v1/jobs/{job_id}?wait=30")  # a long poll: XREAD on the job's done stream, on its node
    job = r.get_json()
    assert r.status_code == 200 and job["status"] == "succeeded" and time.monotonic() - t0 < 20, job
    assert job["result"]["nodes"]["x"]["grad"]["data"] == 2569
    r = api.client.get(f"/v1/jobs/{job_id}/nodes/x?field=grad&format=npy")
    assert r.status_code == 200 and float(np.load(io.BytesIO(r.data), allow_pickle=False)) == 2569.0
    r = api.client.get(f"/v1/jobs/{job_id}/nodes?filter=leaves")
    assert r.status_code == 200 and [n["name"] for n in r.get_json()["items"]] == ["x"]
    assert job_id in [j["id"] for j in api.client.get("/v1/jobs").get_json()["items"]]

    keys = job_keys(store.r, job_id)
    assert len(keys) >= 4 and len({key_slot(k) for k in keys}) == 1  # the job's keys: one slot, one node

    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not job_keys(store.r, job_id) and store.r.get(store.idem_key(key)) is None
    assert api.client.get(f"/v1/jobs/{job_id}").status_code == 404


def test_a_killed_worker_s_job_is_reclaimed_on_a_cluster_store(redis_cluster: str, redis_base: str,
                                                                log_dir: Path) -> None:
    """The whole worker SIGKILLed mid-job: the next worker's reaper finds the expired lease on the cluster and
    requeues the job, which is published once, by its second delivery."""
    from api.app import create_app

    settings = cluster_settings(redis_cluster, redis_base, 14, **FAST)
    first = Worker(settings, "cluster-doomed", log_dir).wait_ready()
    api = Api(create_app(settings).test_client())
    second = None
    try:
        job_id = api.submit(slow_spec(6000))
        wait_for(lambda: api.job(job_id)["status"] == "running", 30, "the job to run")
        first.kill()
        second = Worker(settings, "cluster-heir", log_dir).wait_ready()
        job = api.wait(job_id, timeout=60)
        assert job["status"] == "succeeded" and job["attempts"] == 2, job
        store = JobStore.from_settings(settings)
        assert store.get(job_id).data == "2"
        assert job_id.encode() not in store.r.zrange(store.leases_key(), 0, -1)
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_the_api_starts_while_the_cluster_is_away(redis_base: str) -> None:
    from api.app import create_app

    dead = Settings(redis_url="redis+cluster://127.0.0.1:1", broker_url=f"{redis_base}/9")
    client = create_app(dead).test_client()  # the cluster client is made on first use
    r = client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["redis"] is False
    r = client.get("/v1/jobs/" + "0" * 32)
    assert r.status_code == 503 and "unavailable" in r.get_json()["detail"]


def test_settings_select_cluster_mode(monkeypatch: pytest.MonkeyPatch, redis_cluster: str) -> None:
    for name in ("REDIS_URL", "REDIS_CLUSTER", "BROKER_URL", "GRADTRACE_REDIS_URL", "GRADTRACE_REDIS_CLUSTER",
                 "GRADTRACE_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    assert not Settings().redis_cluster
    assert Settings(redis_url="redis+cluster://h:7000", broker_url="redis://b:6379/0").redis_cluster
    assert Settings(redis_url="rediss+cluster://h:7000", broker_url="amqp://b//").redis_cluster
    monkeypatch.setenv("REDIS_CLUSTER", "1")
    monkeypatch.setenv("REDIS_URL", "redis://h:7000/0")
    monkeypatch.setenv("BROKER_URL", "redis://b:6379/0")
    s = Settings()
    assert s.redis_cluster and s.broker_url == "redis://b:6379/0"
    monkeypatch.delenv("BROKER_URL")
    with pytest.raises(ValidationError, match="BROKER_URL"):
        Settings()  # the broker would default to the store's URL: a cluster is no broker
    with pytest.raises(ValidationError, match="BROKER_URL"):
        Settings(broker_url="redis+cluster://b:6379")

    url, seeds = cluster_seeds("redis+cluster://user:pw@a:7000,b:7001,[::1]:7002/0?health_check_interval=5")
    assert url == "redis://user:pw@a:7000/0?health_check_interval=5"
    assert [(n.host, n.port) for n in seeds] == [("b", 7001), ("::1", 7002)]
    assert cluster_seeds("rediss+cluster://a:7000")[0] == "rediss://a:7000"
    # the test cluster through each way of asking for it: every node is found from one seed
    first = redis_cluster.split(",")[0].removeprefix("redis+cluster://")
    for url, flag in ((redis_cluster, False), (f"redis+cluster://{first}", False), (f"redis://{first}/0", True)):
        client = connect(url, flag, 2.0)
        assert isinstance(client, RedisCluster) and len(client.get_primaries()) == 3
        client.close()
