"""The brokers the service tests run against: the test Redis (a db of it) and a private rabbitmq-server.

RabbitServer starts its own node, as redis_base starts its own redis-server: a unique node name, free ports (AMQP,
Erlang distribution, and an epmd of its own, so the machine's epmd and any system RabbitMQ on 5672 are neither
used nor disturbed), its data, logs, config (consumer_timeout) and Erlang cookie ($HOME) in a temp dir, no plugins.
Each test gets a vhost of its own, so a worker of one test never takes another test's jobs."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RABBIT_DIRS = ("/usr/lib/rabbitmq/bin",)
"""Where Debian keeps the real scripts: /usr/sbin/rabbitmq-server is a wrapper that switches to the rabbitmq user
(and so to its $HOME, cookie and data), which a private node must not do."""
COMPOSE_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "rabbitmq.conf"
TEST_OVERRIDES = {"disk_free_limit.absolute": "50MB", "log.console": "false", "log.file.level": "warning"}
"""What the test node sets differently from deploy/rabbitmq.conf: a CI disk may have less than 1 GB free."""


def rabbit_tool(name: str) -> str | None:
    """The path of rabbitmq-server / rabbitmqctl to run directly, or None when RabbitMQ is not installed."""
    for d in RABBIT_DIRS:
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return shutil.which(name)


def node_config() -> str:
    """deploy/rabbitmq.conf (consumer_timeout, memory), so that the tests run with it and check its syntax, with
    TEST_OVERRIDES in place of its own values for those keys."""
    keep = [line for line in COMPOSE_CONFIG.read_text().splitlines()
            if line.partition("=")[0].strip() not in TEST_OVERRIDES]
    return "\n".join([*keep, "# the tests' own (tests/brokers.py)", *(f"{k} = {v}" for k, v in TEST_OVERRIDES.items())])


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports nobody listens on right now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class RabbitServer:
    """A private rabbitmq-server node in `directory`, started at once; `stop()` ends it and its epmd."""

    def __init__(self, directory: Path, start_timeout_s: float = 90) -> None:
        server, self.ctl_path = rabbit_tool("rabbitmq-server"), rabbit_tool("rabbitmqctl")
        if server is None or self.ctl_path is None:
            raise FileNotFoundError("rabbitmq-server is not installed")
        self.port, self.dist_port, self.epmd_port = free_ports(3)
        self.node = f"gradtrace-test-{os.getpid()}-{self.port}@localhost"
        self.dir = directory
        home = directory / "home"  # Erlang keeps the cookie in $HOME/.erlang.cookie: the node's and rabbitmqctl's
        for d in ("home", "mnesia", "log"):
            (directory / d).mkdir(exist_ok=True)
        (directory / "rabbitmq.conf").write_text(node_config())
        (directory / "enabled_plugins").write_text("[].\n")  # no management plugin, nothing else
        (directory / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq/rabbitmq-env.conf
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
        }
        self.log = directory / "server.log"
        self.server = server
        self._vhosts = itertools.count(1)
        t0 = time.monotonic()
        # an epmd of its own on a free port (in the foreground, so it is ours to stop), before the node needs it
        self.epmd = subprocess.Popen(["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.proc = self._start_node(start_timeout_s)
        self.started_in_s = time.monotonic() - t0

    def _start_node(self, timeout_s: float) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([self.server], env=self.env, cwd=self.dir, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.proc

    def restart(self, down_s: float = 0.0, timeout_s: float = 90) -> None:
        """Stop the node cleanly (its connections drop), wait `down_s`, start it again: same name, ports and data
        (durable queues and their persistent messages come back)."""
        _end_group(self.proc)
        time.sleep(down_s)
        self._start_node(timeout_s)

    def url(self, vhost: str = "") -> str:
        """The AMQP URL of `vhost` ('' is the default vhost '/')."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def _connects(self) -> bool:
        import kombu

        try:
            with kombu.Connection(self.url(), connect_timeout=1) as conn:
                conn.connect()
                return True
        except Exception:  # not up yet
            return False

    def _wait_ready(self, timeout_s: float) -> None:
        """Until the node accepts an AMQP connection (a connection through kombu, as Celery makes it)."""
        deadline = time.monotonic() + timeout_s
        while not self._connects():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                files = [self.log, *(self.dir / "log").glob("*.log")]
                logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in files)
                raise AssertionError(f"rabbitmq-server did not start (exit {self.proc.poll()}):\n{logs}")
            time.sleep(0.2)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """rabbitmqctl against this node (same node name, epmd and cookie); its output."""
        proc = subprocess.run([str(self.ctl_path), "-q", "-n", self.node, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert proc.returncode == 0, f"rabbitmqctl {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    def new_vhost(self) -> str:
        """A fresh vhost that guest may use: one per test, so no worker takes another test's jobs."""
        vhost = f"t{next(self._vhosts)}"
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return vhost

    def signal(self, sig: int) -> None:
        """Signal the node's process group (the script and beam.smp, its child): SIGSTOP freezes it, SIGCONT thaws."""
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        """SIGTERM (RabbitMQ stops cleanly), then whatever of its process group is left; then its epmd."""
        for proc in (self.proc, self.epmd):
            _end_group(proc)


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group this module started (by its id), wait, then SIGKILL what is left of it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    try:  # erl_child_setup, inet_gethost, the disk monitor's shell
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(10)


@dataclass
class Broker:
    """The broker a parametrized test runs against: 'redis' (a db of the test's Redis) or 'rabbitmq'."""

    kind: str
    rabbit: RabbitServer | None = None

    def url(self, redis_base: str, db: int = 1) -> str:
        """A broker of the test's own: db `db` of the Redis at `redis_base`, or a fresh RabbitMQ vhost."""
        if self.rabbit is not None:
            return self.rabbit.url(self.rabbit.new_vhost())
        return f"{redis_base}/{db}"
