"""Fixtures for the service tests: a real redis-server, real Celery workers and the Flask app, no fakes."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST = socket.gethostname()

CHAIN_SPEC: dict[str, Any] = {
    "program": "import torch\nx = torch.tensor(2.0, requires_grad=True)\nfx = x**2 + 3*x + 1\nfx.retain_grad()\n"
    "gx = fx**3+4*fx+2\ngx.retain_grad()\ngx.backward()\n"
}
CONV_SPEC: dict[str, Any] = {
    "inputs": {
        "x": {"value": [[[[0.5739, 0.9303, 0.5375], [0.2379, 0.0570, 0.7423], [0.7322, 0.7695, 0.8314]]]],
              "requires_grad": False},
        "w": [[[[0.8531, 0.5101], [0.8575, 0.3703]]]],
    },
    "nodes": [{"name": "output", "op": "conv2d", "inputs": ["x", "w"]}, {"name": "loss", "op": "sum", "inputs": ["output"]}],
}


def slow_spec(samples: int) -> dict[str, Any]:
    """A spec whose numeric engine takes about samples * 0.5 ms (finite differences on a 300x300 leaf)."""
    return {
        "inputs": {"x": {"shape": [300, 300]}},
        "nodes": [{"name": "y", "op": "mul", "inputs": ["x", "x"]}, {"name": "l", "op": "sum", "inputs": ["y"]}],
        "engines": ["torch", "reference", "numeric"],
        "numeric": {"max_elements_per_leaf": samples},
    }


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `pred` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def settings_env(settings: Any) -> dict[str, str]:
    """The environment that reproduces `settings` in a child process."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "REDIS_CLUSTER", "BROKER_URL") and not k.startswith("GRADTRACE_")}
    for name, value in settings.model_dump().items():
        env[f"GRADTRACE_{name.upper()}"] = str(value)
    env["PYTHONPATH"] = str(ROOT)
    return env


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Signal the process group this fixture started (by its id), then make sure it is gone."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass
    try:  # pool children left over after a SIGKILL of the main process
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Worker:
    """A real `celery worker` process in its own process group."""

    def __init__(self, settings: Any, name: str, log_dir: Path, pool: str = "prefork", concurrency: int = 2,
                 loglevel: str = "warning") -> None:
        from worker.celery_app import make_celery

        self.name = f"{name}@{HOST}"
        self.settings = settings
        self.celery = make_celery(settings)
        self.log = log_dir / f"worker-{name}-{time.time_ns()}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker", f"--pool={pool}",
               f"--concurrency={concurrency}", "-l", loglevel, "-n", self.name, "--without-mingle", "--without-gossip"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def ping(self) -> bool:
        """True when this worker answers a control ping."""
        return bool(self.celery.control.ping(destination=[self.name], timeout=0.5))

    def wait_ready(self, timeout: float = 90) -> Worker:
        """Block until the worker answers pings (or fail with its log)."""
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} did not start:\n{self.log.read_text()[-3000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once."""
        stop_group(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL if it lingers."""
        stop_group(self.proc, signal.SIGTERM)


@pytest.fixture(scope="session")
def redis_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (no persistence) on a free port: 'redis://127.0.0.1:PORT'."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(d)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    import redis

    client = redis.Redis(port=port)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(up, 15, "redis-server")
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def cluster_port() -> int:
    """A free port P whose cluster bus port (P + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a Redis Cluster node")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Redis Cluster of three primaries (no replicas, no persistence) on free ports, joined by
    `redis-cli --cluster create`: 'redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3'."""
    import redis

    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    d = tmp_path_factory.mktemp("redis-cluster")
    ports: list[int] = []
    while len(ports) < 3:
        if (p := cluster_port()) not in ports:
            ports.append(p)
    procs = [subprocess.Popen(
        [exe, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file",
         str(d / f"nodes-{p}.conf"), "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
         "--dir", str(d)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) for p in ports]
    nodes = [redis.Redis(port=p, socket_timeout=2) for p in ports]

    def info(node: Any) -> dict[str, Any]:
        try:
            return dict(node.cluster("info"))
        except redis.RedisError:
            return {}

    try:
        wait_for(lambda: all(info(n) for n in nodes), 15, "the cluster's redis-servers")
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        wait_for(lambda: all(info(n).get("cluster_state") == "ok" and int(info(n).get("cluster_known_nodes", 0)) == 3
                             for n in nodes), 30, "the cluster to be ok on every node")
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def make_settings(redis_base: str, broker_db: int = 1, broker_url: str | None = None, **overrides: Any) -> Any:
    """Settings for the test service: store in db 0, broker in `broker_db` (or at `broker_url`)."""
    from shared.settings import Settings

    return Settings(redis_url=f"{redis_base}/0", broker_url=broker_url or f"{redis_base}/{broker_db}", **overrides)


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A private rabbitmq-server node (tests/brokers.py), started once (about 5 s) for the tests that want it."""
    from brokers import RabbitServer, rabbit_tool

    if rabbit_tool("rabbitmq-server") is None or rabbit_tool("rabbitmqctl") is None:
        pytest.skip("rabbitmq-server is not installed: `deploy/setup --system` (or `make test`) installs it")
    server = RabbitServer(tmp_path_factory.mktemp("rabbitmq"))
    yield server
    server.stop()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Any:
    """The broker a reliability test runs against, each in turn: Redis (the default) and RabbitMQ.
    broker.url(redis_base, db) is a broker of the test's own (a db of that Redis, or a fresh vhost)."""
    from brokers import Broker

    if request.param == "rabbitmq":
        return Broker("rabbitmq", request.getfixturevalue("rabbitmq"))
    return Broker("redis")


@pytest.fixture(scope="session")
def settings(redis_base: str) -> Any:
    """The main service settings."""
    return make_settings(redis_base)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where worker and gunicorn logs go."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def worker(settings: Any, log_dir: Path) -> Iterator[Worker]:
    """The main worker: prefork, two processes."""
    w = Worker(settings, "main", log_dir).wait_ready()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def app(settings: Any) -> Any:
    """The API app on the main settings."""
    from api.app import create_app

    return create_app(settings)


@pytest.fixture
def client(app: Any) -> Any:
    """Flask's test client."""
    return app.test_client()


@pytest.fixture(scope="session")
def rdb(redis_base: str) -> Any:
    """A raw client on the store's db, to look at keys."""
    import redis

    return redis.Redis.from_url(f"{redis_base}/0")


class Api:
    """Submit and poll through a test client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, spec: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        """POST a spec, expect 202, return the job id."""
        r = self.client.post("/v1/jobs", json=spec, headers=headers or {})
        assert r.status_code == 202, r.get_data(as_text=True)
        return r.get_json()["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        """GET the job (must exist)."""
        r = self.client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()

    def wait(self, job_id: str, statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
             timeout: float = 60) -> dict[str, Any]:
        """Poll until the job reaches one of `statuses`."""
        return wait_for(lambda: (j := self.job(job_id))["status"] in statuses and j, timeout, f"job {job_id} {statuses}")


@pytest.fixture
def api(client: Any, worker: Worker) -> Api:
    """Submit/poll helper on the main app, with the main worker running."""
    return Api(client)


@pytest.fixture
def api_for(worker: Worker) -> Any:
    """Api helper on a fresh app for other settings: api_for(settings)."""
    from api.app import create_app

    return lambda settings: Api(create_app(settings).test_client())


@pytest.fixture
def chain_spec() -> dict[str, Any]:
    """The tutorial's chain rule program."""
    return copy.deepcopy(CHAIN_SPEC)


@pytest.fixture
def conv_spec() -> dict[str, Any]:
    """The tutorial's conv example, nodes form."""
    return copy.deepcopy(CONV_SPEC)


@pytest.fixture
def slow() -> Any:
    """slow(samples): a spec taking about samples * 0.5 ms in its numeric engine."""
    return slow_spec


@pytest.fixture
def poll() -> Any:
    """poll(pred, timeout, what): bounded wait."""
    return wait_for


@pytest.fixture
def settings_for(redis_base: str) -> Any:
    """settings_for(broker_db, **overrides): Settings on the test Redis."""
    return lambda broker_db=1, **kw: make_settings(redis_base, broker_db, **kw)


@pytest.fixture
def start_worker(log_dir: Path) -> Iterator[Any]:
    """start_worker(settings, name, **kw): an extra worker, stopped after the test."""
    started: list[Worker] = []

    def start(settings: Any, name: str, **kw: Any) -> Worker:
        w = Worker(settings, name, log_dir, **kw)
        started.append(w)
        return w.wait_ready()

    yield start
    for w in started:
        w.kill()


def job_keys(rdb: Any, job_id: str) -> list[bytes]:
    """Every key of the job (all carry its hash tag: services.store_keys), on one Redis or every node of a cluster."""
    return list(rdb.scan_iter(match=f"gradtrace:{{{job_id}}}:*", count=1000))


@pytest.fixture
def keys_of(rdb: Any) -> Any:
    """keys_of(job_id): the job's keys in the store."""
    return lambda job_id: job_keys(rdb, job_id)


@contextlib.contextmanager
def gunicorn(settings: Any, log_dir: Path) -> Iterator[str]:
    """The API in a real `gunicorn 'api.app:create_app()'` on a free port, settings from the environment."""
    port = free_port()
    log = log_dir / f"gunicorn-{port}.log"
    cmd = [sys.executable, "-m", "gunicorn", "api.app:create_app()", "-b", f"127.0.0.1:{port}", "-w", "2", "-t", "60"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 60, "gunicorn", interval=0.2)
        yield url
    finally:
        stop_group(proc, signal.SIGTERM)


@pytest.fixture(scope="session")
def server(settings: Any, worker: Any, log_dir: Path) -> Iterator[str]:
    """The API in a real gunicorn on the main settings (the main worker runs its jobs)."""
    with gunicorn(settings, log_dir) as url:
        yield url
