"""docker-compose.yml and Dockerfile, checked without a Docker engine: schema, cross-references, commands."""

from __future__ import annotations

import copy
import importlib
import importlib.resources
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("api", "worker", "flower")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROJECT_INSTALL = re.compile(r"pip install (\S+ )*\.(\s|$)")  # `pip install [opts] .`


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as data (YAML anchors and merge keys resolved)."""
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    """The compose services."""
    return compose["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [x for x in (ROOT / "Dockerfile").read_text().splitlines() if not x.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, args = line.strip().partition(" ")
            out.append((word.upper(), " ".join(args.split())))
    return out


def exec_form(args: str) -> list[str]:
    """A CMD/ENTRYPOINT in JSON (exec) form, or a shell-form string split like a shell."""
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def command(service: dict[str, Any]) -> list[str]:
    """A service's command as a list."""
    cmd = service["command"]
    return cmd if isinstance(cmd, list) else shlex.split(cmd)


def seconds(duration: str | int | float) -> float:
    """A compose duration ('1m30s', '360s', '1h') in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def celery_app_path(cmd: list[str]) -> str:
    """The value of -A/--app in a celery command."""
    assert cmd[0] == "celery", cmd
    for i, arg in enumerate(cmd):
        if arg in ("-A", "--app"):
            return cmd[i + 1]
        if arg.startswith("--app="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"no -A in {cmd}")


def test_valid_against_the_compose_spec_schema() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_vendored_schema_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.validate(compose)
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["depends_on"]["redis"]["condition"] = "service_ready"
    broken["services"]["api"]["healthcheck"]["intervall"] = "5s"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_depends_on_targets_exist_and_wait_for_healthy_redis(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        deps = {d: {} for d in deps} if isinstance(deps, list) else deps
        for target, cond in deps.items():
            assert target in services, f"{name} depends on unknown service {target}"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
        if name in APP_SERVICES:
            assert deps.get("redis", {}).get("condition") == "service_healthy", name


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for svc in services.values():
        for v in svc.get("volumes", []):
            if isinstance(v, dict):
                if v.get("type", "volume") == "volume" and v.get("source"):
                    used.add(v["source"])
            elif ":" in v and not v.startswith((".", "/", "~", "$")):
                used.add(v.split(":", 1)[0])
    assert used and used <= declared, f"undeclared volumes: {used - declared}"
    assert "redis-data:/data" in services["redis"]["volumes"]


def test_redis_is_durable_and_healthchecked(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"] == "redis:7"
    cmd = " ".join(command(redis))
    assert "--appendonly yes" in cmd and "--maxmemory-policy noeviction" in cmd
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_app_services_share_one_build(services: dict[str, Any]) -> None:
    builds = {name: json.dumps(services[name].get("build"), sort_keys=True) for name in APP_SERVICES}
    assert len(set(builds.values())) == 1 and services["api"]["build"] is not None, builds
    assert len({services[name].get("image") for name in APP_SERVICES}) == 1
    for name in APP_SERVICES:
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_worker_stops_gracefully_after_the_hard_time_limit(services: dict[str, Any], monkeypatch: Any) -> None:
    from shared.settings import Settings

    for key in list(os.environ):
        if key.startswith("GRADTRACE_") or key in ("REDIS_URL", "BROKER_URL"):
            monkeypatch.delenv(key)
    for key, value in services["worker"]["environment"].items():  # what the worker container sees
        monkeypatch.setenv(key, str(value))
    assert seconds(services["worker"]["stop_grace_period"]) > Settings().hard_time_limit_s
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]  # --scale worker=N


def test_celery_commands_name_a_real_app_and_real_options(services: dict[str, Any]) -> None:
    for name in ("worker", "flower"):
        cmd = command(services[name])
        module, _, attr = celery_app_path(cmd).partition(":")
        assert isinstance(getattr(importlib.import_module(module), attr or "app"), Celery), cmd
    cmd = command(services["worker"])
    assert cmd[cmd.index(celery_app_path(cmd)) + 1] == "worker"
    assert "--concurrency=2" in cmd and "--pool=prefork" in cmd
    helptext = subprocess.run([sys.executable, "-m", "celery", "-A", celery_app_path(cmd), "worker", "--help"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT).stdout
    for flag in (a.split("=", 1)[0] for a in cmd[cmd.index("worker") + 1:] if a.startswith("-")):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}[\s,=]", helptext), f"celery worker has no option {flag}"


def test_worker_healthcheck_pings_its_own_node(services: dict[str, Any]) -> None:
    test = services["worker"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"  # $HOSTNAME needs a shell
    cmd = shlex.split(test[1])
    assert cmd[:4] == ["celery", "-A", celery_app_path(command(services["worker"])), "inspect"]
    assert cmd[4] == "ping" and cmd[cmd.index("-d") + 1] == "celery@$$HOSTNAME"  # $$: compose's literal $


def test_worker_healthcheck_command_against_a_real_worker(services: dict[str, Any], settings_for: Any,
                                                          start_worker: Any) -> None:
    from conftest import HOST, settings_env

    settings = settings_for(broker_db=12)  # a broker db of its own: this worker takes no other test's jobs
    start_worker(settings, "celery", concurrency=1)  # the default node name: celery@<hostname>
    shell = services["worker"]["healthcheck"]["test"][1].replace("$$", "$")  # as compose hands it to the shell

    def check(hostname: str) -> int:
        env = {**settings_env(settings), "HOSTNAME": hostname}
        return subprocess.run(["sh", "-c", shell], env=env, cwd=ROOT, capture_output=True, timeout=60).returncode

    assert check(HOST) == 0
    assert check("no-such-host") != 0


def test_api_runs_gunicorn_on_the_app_factory(services: dict[str, Any]) -> None:
    cmd = command(services["api"])
    assert cmd[0] == "gunicorn" and "0.0.0.0:8000" in cmd and "8000:8000" in services["api"]["ports"]
    target = next(a for a in cmd if re.fullmatch(r"[\w.]+:\w+\(\)", a))
    module, _, call = target.partition(":")
    assert target == "api.app:create_app()" and callable(getattr(importlib.import_module(module), call[:-2]))
    cmd_in_image = next(exec_form(a) for w, a in dockerfile_instructions() if w == "CMD")
    assert cmd_in_image == cmd, "the image's default command and the compose api command differ"
    proc = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", *cmd[1:]], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_api_healthcheck_uses_python_on_healthz(services: dict[str, Any]) -> None:
    test = services["api"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"] and "curl" not in " ".join(test)
    assert "http://127.0.0.1:8000/healthz" in test[-1]


def test_flower_only_with_the_monitoring_profile(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"] and "5555:5555" in flower["ports"]
    cmd = command(flower)
    assert cmd[cmd.index(celery_app_path(cmd)) + 1] == "flower" and "--port=5555" in cmd
    assert all("profiles" not in services[name] for name in ("redis", "api", "worker"))
    install = " ".join(a for w, a in dockerfile_instructions() if w == "RUN" and PROJECT_INSTALL.search(a))
    assert "flower" in install, "flower is not installed in the image"


def test_dockerfile_installs_cpu_torch_before_the_project() -> None:
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [(i, a) for i, (w, a) in enumerate(steps) if w == "RUN"]
    torch_at = [i for i, a in runs if f"--index-url {CPU_INDEX}" in a and "torch==2.13.0" in a]
    project_at = [i for i, a in runs if PROJECT_INSTALL.search(a)]
    assert torch_at and project_at and torch_at[0] < project_at[0], steps
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps, "the image pins a torch the project does not"
    assert any("apt-get install" in a and "graphviz" in a for _, a in runs)
    words = [w for w, _ in steps]
    user = next(a for w, a in reversed(steps) if w == "USER")
    assert user not in ("root", "0") and words.index("USER") < words.index("CMD")
    assert ("EXPOSE", "8000") in steps


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git"} <= set(ignored)
