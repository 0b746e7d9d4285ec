"""Faults against real processes: Redis restarted (AOF), frozen (SIGSTOP) and full; a whole worker SIGKILLed,
once or up to the attempt cap; pool children crashing in a row; the broker down or frozen. No job stays stuck, no
request hangs or answers 500, nothing is lost twice.

Each test runs its own redis-server (with AOF where a restart must keep jobs) and its own worker, so that
stopping them disturbs nothing else; and each runs twice (the `broker` fixture): with the broker in that Redis,
and with RabbitMQ (a vhost of its own on the session's private rabbitmq-server)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from brokers import Broker
from conftest import Api, Worker, free_port, make_settings, slow_spec, wait_for

CHAIN = {"program": "x = torch.tensor(2.0, requires_grad=True)\nfx = x**2 + 3*x + 1\ngx = fx**3 + 4*fx + 2\n"}
FAST = {"lease_s": 3.0, "reaper_interval_s": 0.5, "progress_interval_s": 0.1}
"""Short leases so that recovery is quick in a test (the default lease is 20 s, the reaper runs every 5 s)."""


class RedisServer:
    """A private redis-server that a test may stop, restart, freeze and fill."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.port = free_port()
        self.dir = directory
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.dir), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(up, 20, "redis-server")

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits."""
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(20)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    yield server
    if server.proc and server.proc.poll() is None:
        server.signal(signal.SIGCONT)
        server.stop()


def _service(server: RedisServer, broker: Broker, log_dir: Path, name: str,
             **overrides: Any) -> tuple[Any, Worker, Api]:
    """Settings (store: `server`, broker: the test's own), a worker on them, and an API client."""
    from api.app import create_app

    settings = make_settings(server.url, broker_url=broker.url(server.url), **{**FAST, **overrides})
    worker = Worker(settings, name, log_dir).wait_ready()
    return settings, worker, Api(create_app(settings).test_client())


def figure(what: str, seconds: float) -> None:
    """Print a measured figure (`pytest -s tests/test_reliability.py | grep figure:` gives the README's numbers)."""
    print(f"figure: {what}: {seconds:.2f} s")


def _final(api: Api, job_id: str) -> dict[str, Any]:
    r = api.client.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_jobs_end_after_redis_restarts_mid_run(aof_redis: RedisServer, broker: Broker, log_dir: Path) -> None:
    """Redis (AOF) stopped for 8 s while jobs run: once it is back every job ends, succeeded or failed with a
    reason, within 60 s; none stays queued or running."""
    _, worker, api = _service(aof_redis, broker, log_dir, "restart")
    try:
        ids = [api.submit(slow_spec(4000)) for _ in range(3)] + [api.submit(CHAIN) for _ in range(3)]
        wait_for(lambda: any(_final(api, j)["status"] == "running" for j in ids[:3]), 30, "a running job")
        aof_redis.stop()
        time.sleep(8)
        aof_redis.start()
        back = time.monotonic()

        def ended() -> bool:
            return all(_final(api, j)["status"] in ("succeeded", "failed") for j in ids)

        wait_for(ended, 60, "every job to end after Redis came back", interval=0.5)
        assert time.monotonic() - back < 60
        figure(f"[{broker.kind}] Redis back -> every job ended", time.monotonic() - back)
        for j in ids:
            job = _final(api, j)
            assert job["status"] == "succeeded" or job["error"]["message"], job
        assert sum(_final(api, j)["status"] == "succeeded" for j in ids) >= 4
    finally:
        worker.kill()


def test_jobs_survive_a_rabbitmq_restart_mid_run(aof_redis: RedisServer, rabbitmq: Any, log_dir: Path) -> None:
    """RabbitMQ stopped for 3 s and started again while a job runs and three wait in its queue: the waiting ones
    come back with the quorum queue (durable, persistent messages), the running one goes on (its lease renewed,
    so the reaper leaves it) and, redelivered, is taken over by a second attempt at most; all succeed within 60 s
    of RabbitMQ's return. (The broker restarted with Redis as broker is the Redis restart above.)"""
    from api.app import create_app

    settings = make_settings(aof_redis.url, broker_url=rabbitmq.url(rabbitmq.new_vhost()), **FAST)
    worker = Worker(settings, "bunny", log_dir, concurrency=1).wait_ready()
    api = Api(create_app(settings).test_client())
    try:
        ids = [api.submit(slow_spec(8000))] + [api.submit(CHAIN) for _ in range(3)]
        wait_for(lambda: _final(api, ids[0])["status"] == "running", 30, "the slow job to run")
        assert all(_final(api, j)["status"] == "queued" for j in ids[1:])
        rabbitmq.restart(down_s=3)
        back = time.monotonic()

        def ended() -> list[dict[str, Any]] | None:
            jobs = [_final(api, j) for j in ids]
            return jobs if all(j["status"] in ("succeeded", "failed") for j in jobs) else None

        jobs = wait_for(ended, 60, "every job to end", interval=0.5)
        assert [j["status"] for j in jobs] == ["succeeded"] * 4, jobs
        assert jobs[0]["attempts"] in (1, 2) and all(j["attempts"] == 1 for j in jobs[1:]), jobs
        assert time.monotonic() - back < 60
        figure("[rabbitmq] RabbitMQ back -> every job ended", time.monotonic() - back)
    finally:
        worker.kill()


def test_a_killed_worker_s_job_completes_once_on_another(aof_redis: RedisServer, broker: Broker,
                                                         log_dir: Path) -> None:
    """The whole worker (main process and children) SIGKILLed mid-job, a new one started: the job completes
    once within 60 s, whatever the broker's visibility timeout (an hour here)."""
    settings, first, api = _service(aof_redis, broker, log_dir, "doomed", visibility_timeout_s=3600)
    job_id = api.submit(slow_spec(6000))
    wait_for(lambda: _final(api, job_id)["status"] == "running", 30, "the job to run")
    first.kill()
    killed = time.monotonic()
    second = Worker(settings, "heir", log_dir).wait_ready()
    try:
        job = wait_for(lambda: (j := _final(api, job_id))["status"] in ("succeeded", "failed") and j, 60, "the job to end")
        assert job["status"] == "succeeded", job
        assert time.monotonic() - killed < 60
        figure(f"[{broker.kind}] whole worker SIGKILLed -> its job succeeded on another", time.monotonic() - killed)
        assert job["attempts"] == 2
        rec = redis.Redis.from_url(f"{aof_redis.url}/0")
        assert rec.hget(f"gradtrace:{{{job_id}}}:job", "data") == b"2"  # published once, by the second delivery
    finally:
        second.kill()


def test_a_frozen_redis_is_a_quick_503(aof_redis: RedisServer, broker: Broker, log_dir: Path) -> None:
    """Redis SIGSTOPped: POST, GET and /readyz answer 503 within 2 s; after SIGCONT all is well again."""
    _, worker, api = _service(aof_redis, broker, log_dir, "frozen")
    try:
        job_id = api.submit(CHAIN)
        api.wait(job_id)
        aof_redis.signal(signal.SIGSTOP)
        try:
            for call in (lambda: api.client.post("/v1/jobs", json=CHAIN), lambda: api.client.get(f"/v1/jobs/{job_id}"),
                         lambda: api.client.get("/readyz")):
                t0 = time.monotonic()
                r = call()
                took = time.monotonic() - t0
                assert r.status_code == 503, r.get_data(as_text=True)
                assert took < 2.0, took
                figure(f"[{broker.kind}] Redis SIGSTOPped -> 503", took)
        finally:
            aof_redis.signal(signal.SIGCONT)
        assert api.client.get(f"/v1/jobs/{job_id}").status_code == 200
        assert api.wait(api.submit(CHAIN))["status"] == "succeeded"
    finally:
        worker.kill()


def test_a_full_redis_refuses_jobs_with_503_and_deletes_still_work(tmp_path: Path, broker: Broker,
                                                                   log_dir: Path) -> None:
    server = RedisServer(tmp_path, "--appendonly", "no", "--maxmemory", "8mb", "--maxmemory-policy", "noeviction")
    _, worker, api = _service(server, broker, log_dir, "full")
    try:
        done = api.submit(CHAIN)
        api.wait(done)
        filler = redis.Redis(port=server.port)
        for size in (65536, 1024, 16):  # big values first, then small ones until even those are refused
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                for k in range(100_000):
                    filler.set(f"junk:{size}:{k}", b"x" * size)
        r = api.client.post("/v1/jobs", json=CHAIN)
        assert r.status_code == 503 and "full" in r.get_json()["detail"]
        assert api.client.get(f"/v1/jobs/{done}").status_code == 200  # reads work
        assert api.client.delete(f"/v1/jobs/{done}").status_code == 204  # and deletes, which free memory
        assert api.client.get(f"/v1/jobs/{done}").status_code == 404
    finally:
        worker.kill()
        server.stop()


def test_children_crashing_in_a_row_are_replaced_without_start_up_timeouts(aof_redis: RedisServer, broker: Broker,
                                                                           log_dir: Path) -> None:
    """20 pool children SIGKILLed one after another: each replacement starts well within Celery's limit (torch is
    imported once, before forking), and the worker still runs jobs."""
    _, worker, api = _service(aof_redis, broker, log_dir, "crashy")
    try:
        def children_of() -> list[str]:
            return subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True, text=True).stdout.split()

        for _ in range(20):
            # a replacement may not be forked yet right after the last kill: wait for one (Celery's limit is 4 s)
            children = wait_for(children_of, 10, "a pool child", interval=0.05)
            os.kill(int(children[0]), signal.SIGKILL)
            wait_for(lambda old=children[0]: old not in subprocess.run(["pgrep", "-P", str(worker.proc.pid)],
                     capture_output=True, text=True).stdout.split(), 10, "the child to go", interval=0.05)
        wait_for(lambda: len(subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True,
                                            text=True).stdout.split()) >= 2, 30, "two children again")
        assert api.wait(api.submit(CHAIN))["status"] == "succeeded"
        log = worker.log.read_text()
        assert "Timed out waiting for UP message" not in log, log[-3000:]
    finally:
        worker.kill()


def test_a_job_whose_workers_keep_dying_fails_at_the_attempt_cap(aof_redis: RedisServer, broker: Broker,
                                                                 log_dir: Path) -> None:
    """max_attempts=2 and the worker running the job SIGKILLed at each attempt: the next delivery (RabbitMQ's
    requeue of the dead worker's message, or the reaper's once the lease ran out, Redis's visibility timeout being
    an hour away) fails the job once, saying why, instead of running it a third time."""
    settings, first, api = _service(aof_redis, broker, log_dir, "cap1", max_attempts=2, visibility_timeout_s=3600)
    workers = [first]
    try:
        job_id = api.submit(slow_spec(60000))  # about half a minute: it never gets to finish
        for n in (1, 2):
            wait_for(lambda n=n: (j := _final(api, job_id))["status"] == "running" and j["attempts"] == n, 30,
                     f"attempt {n} to run")
            workers[-1].kill()
            workers.append(Worker(settings, f"cap{n + 1}", log_dir).wait_ready())
        job = wait_for(lambda: (j := _final(api, job_id))["status"] in ("succeeded", "failed") and j, 60,
                       "the job to end")
        assert job["status"] == "failed" and job["attempts"] == 2, job
        # RabbitMQ: its redelivery (waiting for the dead worker's lease) or the reaper finds the cap reached, whichever
        # comes first; Redis (visibility timeout an hour away): the reaper finds the lease out at the cap
        assert job["error"]["type"] in (("attempts_exhausted", "worker_lost") if broker.rabbit else ("worker_lost",)), job
        assert "gave up after 2 attempts" in job["error"]["message"], job
    finally:
        for w in workers:
            w.kill()


def test_a_broker_down_or_frozen_is_a_quick_503(aof_redis: RedisServer, broker: Broker, log_dir: Path,
                                                tmp_path: Path) -> None:
    """The broker (not Redis, the store) unreachable or frozen: POST answers 503 within a few broker timeouts,
    /readyz 503 within its deadline, reads still work; once the broker is back, jobs run again."""
    from api.app import create_app

    own: RedisServer | None = None
    if broker.rabbit is not None:
        rabbit = broker.rabbit
        url, nowhere = broker.url(aof_redis.url), f"amqp://guest:guest@127.0.0.1:{free_port()}//"
        freeze, thaw = (lambda: rabbit.signal(signal.SIGSTOP)), (lambda: rabbit.signal(signal.SIGCONT))
    else:  # a Redis of its own as the broker, to freeze without the store
        (tmp_path / "broker").mkdir()
        server = own = RedisServer(tmp_path / "broker", "--appendonly", "no")
        url, nowhere = f"{server.url}/1", f"redis://127.0.0.1:{free_port()}/1"
        freeze, thaw = (lambda: server.signal(signal.SIGSTOP)), (lambda: server.signal(signal.SIGCONT))
    settings = make_settings(aof_redis.url, broker_url=url, **FAST)
    worker = Worker(settings, "brokerless", log_dir).wait_ready()
    api = Api(create_app(settings).test_client())
    limit = 4 * settings.broker_timeout_s  # Redis: read, reconnect, read again; RabbitMQ: the confirm, reconnect
    try:
        done = api.submit(CHAIN)
        assert api.wait(done)["status"] == "succeeded"
        down = Api(create_app(make_settings(aof_redis.url, broker_url=nowhere)).test_client())
        t0 = time.monotonic()
        r = down.client.post("/v1/jobs", json=CHAIN)  # nothing listens where the broker should be
        took = time.monotonic() - t0
        assert r.status_code == 503 and "broker" in r.get_json()["detail"], r.get_data(as_text=True)
        assert took < 2.0, f"POST took {took:.2f} s with nothing listening at the broker's address"
        figure(f"[{broker.kind}] broker down -> POST 503", took)
        r = down.client.get("/readyz")
        assert r.status_code == 503 and any(m.startswith("workers:") and "broker" in m for m in r.get_json()["missing"])
        freeze()
        try:
            t0 = time.monotonic()
            r = api.client.post("/v1/jobs", json=CHAIN)
            took = time.monotonic() - t0
            assert r.status_code == 503 and "broker" in r.get_json()["detail"], r.get_data(as_text=True)
            assert took < limit, f"POST took {took:.2f} s with the broker frozen"
            figure(f"[{broker.kind}] broker frozen -> POST 503", took)
            t0 = time.monotonic()
            assert api.client.get(f"/v1/jobs/{done}").status_code == 200  # the store still answers
            r = api.client.get("/readyz")
            assert r.status_code == 503 and r.get_json()["redis"] is True, r.get_json()
            assert time.monotonic() - t0 < 2.0
        finally:
            thaw()
        assert api.wait(api.submit(CHAIN), timeout=60)["status"] == "succeeded"
    finally:
        worker.kill()
        if own is not None:
            own.stop()


def test_submit_wait_rides_out_a_frozen_redis(aof_redis: RedisServer, log_dir: Path, tmp_path: Path) -> None:
    """`gradtrace submit --wait` (a real gunicorn API) while the store's Redis is frozen for 4 s mid-job: the API
    answers 503, the CLI says so once, goes on waiting, and prints the job's result when Redis is back (exit 0)."""
    import json
    import sys

    import httpx
    from conftest import gunicorn

    settings = make_settings(aof_redis.url, **FAST)
    worker = Worker(settings, "cli-wait", log_dir).wait_ready()
    spec = tmp_path / "slow.json"
    spec.write_text(json.dumps(slow_spec(6000)))  # ~3 s in its numeric engine
    try:
        with gunicorn(settings, log_dir) as url:
            exe = Path(sys.executable).parent / "gradtrace"
            proc = subprocess.Popen([str(exe), "submit", str(spec), "--wait", "--timeout", "120", "--url", url],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                def running() -> bool:
                    return any(j["status"] == "running" for j in httpx.get(f"{url}/v1/jobs").json()["items"])

                wait_for(running, 60, "the job to run", interval=0.1)
                aof_redis.signal(signal.SIGSTOP)
                try:
                    t0 = time.monotonic()
                    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 503  # the CLI sees what this sees
                    time.sleep(max(0.0, 4.0 - (time.monotonic() - t0)))
                finally:
                    aof_redis.signal(signal.SIGCONT)
                out, err = proc.communicate(timeout=90)
            finally:
                proc.kill()
    finally:
        worker.kill()
    assert proc.returncode == 0, err
    assert "503" in err and "still waiting for job" in err and "answers again" in err, err
    assert "Traceback" not in err and "verdict: agree" in out, out
