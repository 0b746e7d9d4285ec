"""The whole service for the benchmark: a private redis-server, a Celery worker and the API under gunicorn.

Like tests/conftest.py: redis on a free port without persistence (store in db 0, broker in db 1), a
`celery worker` (prefork) and gunicorn, each in its own process group, configured only through the
environment (GRADTRACE_*), stopped by their own process-group ids."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = socket.gethostname()

# What the benchmark changes from the defaults, and why (also written into the report):
BENCH_SETTINGS: dict[str, Any] = {
    # a 100k-node spec in the nodes form is ~6 MB of JSON, over the 2 MiB default body cap
    "max_body_bytes": 64 * 1024 * 1024,
    # the benchmark's scale section runs graphs of up to 100k nodes (and the 1M chain with --huge): over the service's
    # default node cap (10k) and result/worker budgets, which keep a default deployment's requests quick
    "max_nodes": 2_000_000,
    "max_result_bytes": 8 * 1024**3,
    "max_worker_bytes": 20 * 1024**3,
    # the 1M-node chain (--huge) runs ~3 minutes in the worker on 2 cores, over the 300 s default soft limit
    "soft_time_limit_s": 1200,
    "hard_time_limit_s": 1260,
    "visibility_timeout_s": 1800,
}
WORKER_POOL = "prefork"
WORKER_CONCURRENCY = 2
GUNICORN_WORKERS = 2
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "134217728"}
GUNICORN_TIMEOUT_S = 600  # large results take longer than gunicorn's 30 s default to (de)serialise


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_command(exe: str, port: int, data_dir: str | Path) -> list[str]:
    """A private redis-server's command line: localhost only, nothing kept on disk."""
    return [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data_dir)]


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `pred` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = pred()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Signal the process group we started (by its id), then make sure it is gone."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass
    try:  # children left behind by the group leader
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(d))
    return out


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a process, KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_hwm(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Stack:
    """redis-server + celery worker + gunicorn; use as a context manager."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="gradtrace-bench-"))
        self.log_dir = log_dir or self.tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis_port = free_port()
        self.api_port = free_port()
        self.base = f"redis://127.0.0.1:{self.redis_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.worker_name = f"bench-{os.getpid()}@{HOST}"
        self.worker: subprocess.Popen[bytes] | None = None
        self.hwm_resettable = False
        self.timings_file = self.tmp / "worker-timings.txt"

    # settings shared by every process of the stack
    def settings(self) -> Any:
        from shared.settings import Settings

        return Settings(redis_url=f"{self.base}/0", broker_url=f"{self.base}/1", bind=f"127.0.0.1:{self.api_port}",
                        api_url=self.api_url, **BENCH_SETTINGS)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BROKER_URL") and not k.startswith("GRADTRACE_")}
        for name, value in self.settings().model_dump().items():
            env[f"GRADTRACE_{name.upper()}"] = str(value)
        env["GRADTRACE_BENCH_TIMINGS"] = str(self.timings_file)
        env.update(MALLOC_ENV)  # as the Dockerfile sets them
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def _spawn(self, cmd: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.log_dir / log, "wb") as out:
            p = subprocess.Popen(cmd, cwd=ROOT, env=env or self.env(), stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.procs.append(p)
        return p

    def log_tail(self, log: str, n: int = 3000) -> str:
        try:
            return (self.log_dir / log).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def start(self) -> Stack:
        import redis

        self._spawn(redis_command(shutil.which("redis-server") or "/usr/bin/redis-server", self.redis_port, self.tmp),
                    "redis.log")
        self.redis = redis.Redis.from_url(f"{self.base}/0")
        wait_for(self.redis.ping, 15, "redis-server")

        self.worker = self._spawn(
            [sys.executable, "-m", "celery", "-A", "bench.celery_bench:app", "worker", f"--pool={WORKER_POOL}",
             f"--concurrency={WORKER_CONCURRENCY}", "-l", "warning", "-n", self.worker_name,
             "--without-mingle", "--without-gossip"], "worker.log")
        self.api = self._spawn(
            [sys.executable, "-m", "gunicorn", "-w", str(GUNICORN_WORKERS), "-b", f"127.0.0.1:{self.api_port}",
             "--timeout", str(GUNICORN_TIMEOUT_S), "--log-level", "warning", "api.app:create_app()"], "gunicorn.log")

        from worker.celery_app import make_celery

        self.celery = make_celery(self.settings())
        try:
            wait_for(lambda: self.celery.control.ping(destination=[self.worker_name], timeout=0.5), 120, "celery worker")
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{self.log_tail('worker.log')}") from None
        import httpx

        try:
            wait_for(lambda: httpx.get(f"{self.api_url}/readyz", timeout=5).status_code == 200, 120, "gunicorn API")
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{self.log_tail('gunicorn.log')}") from None
        wait_for(lambda: len(self.pool_pids()) >= WORKER_CONCURRENCY, 30, "worker pool processes")
        self.hwm_resettable = all(reset_hwm(p) for p in self.pool_pids())
        return self

    def pool_pids(self) -> list[int]:
        """The worker's pool processes (where tasks run)."""
        return children(self.worker.pid) if self.worker is not None else []

    def reset_worker_peak(self) -> None:
        for p in self.pool_pids():
            reset_hwm(p)

    def worker_peak_mib(self) -> float | None:
        """Largest VmHWM over the pool processes, MiB (since the last reset_worker_peak when resettable)."""
        vals = [v for v in (vm_hwm_kib(p) for p in self.pool_pids()) if v is not None]
        return max(vals) / 1024 if vals else None

    def worker_finish_ms(self, job_id: str, timeout: float = 5.0) -> float | None:
        """How long JobStore.finish took in the worker for this job (from bench.celery_bench's timing file)."""
        deadline = time.monotonic() + timeout
        needle = f"finish {job_id} "
        while True:
            try:
                with open(self.timings_file) as f:
                    for line in f:
                        if line.startswith(needle):
                            return float(line.split()[2])
            except OSError:
                pass
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def flush_store(self) -> None:
        """Drop every job (db 0) between sections so that Redis memory does not pile up."""
        self.redis.flushdb(asynchronous=True)  # freed in the background: no long block of the server

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_group(p)
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
