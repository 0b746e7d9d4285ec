"""How the benchmark drives the service: over HTTP like a user, and the bare-Celery baseline from Python."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from bench.celery_bench import NOOP

LONG_POLL_S = 30
"""How long one GET waits for the job (`?wait=`): the API answers as soon as the job has finished."""


class ApiClient:
    """Submit a spec and wait for the job (long-polling GETs) until it has succeeded, over real HTTP."""

    def __init__(self, base_url: str, timeout: float = 600) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self.last_get_ms = 0.0
        self.gets = 0
        self.retries = 0

    def submit(self, body: bytes) -> str:
        r = self.http.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        if r.status_code != 202:
            raise RuntimeError(f"submit: HTTP {r.status_code}: {r.text[:500]}")
        return r.json()["id"]

    def get_raw(self, job_id: str, wait: float = 0) -> bytes:
        """One GET of the job. A 503 (Redis did not answer within the API's timeout: a 1M-node job's writes can
        hold it that long) is asked again after a second, as a client should, up to 30 times; `retries` counts them."""
        for _ in range(30):
            r = self.http.get(f"/v1/jobs/{job_id}", params={"wait": wait} if wait else None)
            if r.status_code != 503:
                break
            self.retries += 1
            time.sleep(1.0)
        if r.status_code != 200:
            raise RuntimeError(f"get: HTTP {r.status_code}: {r.text[:500]}")
        return r.content

    def wait(self, job_id: str, timeout: float = 600) -> tuple[dict[str, Any], float]:
        """Long-poll until the job is terminal; (the job, perf_counter when its body had arrived). Raises unless
        succeeded.

        The clock stops when the body is in, before the client parses it (a 100k-node result is ~100 MB)."""
        t0 = time.perf_counter()
        while True:
            g0 = time.perf_counter()
            raw = self.get_raw(job_id, LONG_POLL_S)
            self.gets += 1
            seen = time.perf_counter()
            self.last_get_ms = (seen - g0) * 1e3
            head = raw[:400]  # a cheap look at the status without parsing a large body
            if b'"status":"succeeded"' in head or b'"status":"failed"' in head or b'"status":"cancelled"' in head:
                job = json.loads(raw)
                job["_bytes"] = len(raw)
                if job["status"] != "succeeded":
                    raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
                return job, seen
            elapsed = time.perf_counter() - t0
            if elapsed > timeout:
                raise RuntimeError(f"job {job_id} not done after {timeout} s")
            if seen - g0 < 0.5:  # answered without waiting (all the API's wait slots were taken): back off a little
                time.sleep(0.005)

    def run(self, body: bytes) -> tuple[float, dict[str, Any]]:
        """(ms from POST to the GET that returned it succeeded, the job); the job gets '_wall' added."""
        w0, t0 = time.time(), time.perf_counter()
        job_id = self.submit(body)
        w1, t1 = time.time(), time.perf_counter()
        job, seen = self.wait(job_id)
        job["_wall"] = (w0 * 1e3, w1 * 1e3, (w1 + seen - t1) * 1e3)
        return (seen - t0) * 1e3, job

    def close(self) -> None:
        self.http.close()


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1e3


def breakdown(job: dict[str, Any]) -> dict[str, float]:
    """Where a job's latency went (the store's timestamps have 1 ms resolution; POST and queue overlap a little):
    post (client: POST until its 202 is read: validate, compile, create, enqueue), queue (created -> a worker
    began it), worker (began -> the result was stored: parse, trace, store), seen (stored -> the client read
    it: poll delay plus the GET that returned the result)."""
    t0, t1, t2 = job["_wall"]
    created, started, finished = _ts(job["created_at"]), _ts(job["started_at"]), _ts(job["finished_at"])
    return {"post": t1 - t0, "queue": started - created, "worker": finished - started, "seen": t2 - finished}


class BareCelery:
    """The baseline: send the no-op task on the service's Celery app and BLPOP its done-signal."""

    def __init__(self, celery: Any, redis_url: str) -> None:
        import redis

        self.celery = celery
        self.redis_url = redis_url
        self._local = threading.local()
        self._redis = redis

    def _r(self) -> Any:
        r = getattr(self._local, "r", None)
        if r is None:
            r = self._local.r = self._redis.Redis.from_url(self.redis_url)
        return r

    def run(self) -> float:
        """ms from send_task to the worker's done-signal arriving."""
        key = f"bench:done:{uuid.uuid4().hex}"
        t0 = time.perf_counter()
        self.celery.send_task(NOOP, args=[key])
        if self._r().blpop([key], timeout=60) is None:
            raise RuntimeError("bare Celery task did not finish within 60 s")
        return (time.perf_counter() - t0) * 1e3


def concurrent(make: Callable[[], Callable[[], Any]], clients: int, total: int) -> tuple[float, list[float]]:
    """Run `total` calls spread over `clients` threads (each with its own callable); (jobs/s, per-call ms)."""
    counter = iter(range(total))
    lock = threading.Lock()
    lat: list[float] = []
    errors: list[BaseException] = []

    def loop() -> None:
        call = make()
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            try:
                t0 = time.perf_counter()
                call()
                dt = (time.perf_counter() - t0) * 1e3
            except BaseException as e:  # surfaced after join
                errors.append(e)
                return
            with lock:
                lat.append(dt)

    wall = run_clients(loop, clients)
    if errors:
        raise errors[0]
    return len(lat) / wall, lat


def run_clients(target: Any, n: int) -> float:
    """Run `target` in `n` daemon threads at once; the wall seconds until every one has returned."""
    threads = [threading.Thread(target=target, daemon=True) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0
