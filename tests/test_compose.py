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


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions cut at each FROM (global ARGs before the first FROM are stage 0's)."""
    stages: list[list[tuple[str, str]]] = [[]]
    for word, args in dockerfile_instructions():
        if word == "FROM" and any(w == "FROM" for w, _ in stages[-1]):
            stages.append([])
        stages[-1].append((word, args))
    return stages


def interpolate_defaults(value: str) -> str:
    """A compose value with each `${VAR:-default}` replaced by its default (what users get with nothing set)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


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


HEALTHCHECK_SCRIPT = ROOT / "deploy" / "healthcheck"


def healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """deploy/healthcheck (gradtrace-healthcheck in the image) run as the container engine runs it."""
    return subprocess.run([sys.executable, str(HEALTHCHECK_SCRIPT), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_healthchecks_are_the_script_in_exec_form(services: dict[str, Any]) -> None:
    # podman's Docker-compatible API splits a CMD test into words (a `python -c "..."` breaks) and `podman exec`
    # leaves HOSTNAME empty: the tests are one script with one plain word, no shell, no variable
    for name in APP_SERVICES:
        assert services[name]["healthcheck"]["test"] == ["CMD", "gradtrace-healthcheck", name], name
    copies = [a.split() for w, a in dockerfile_stages()[-1] if w == "COPY"]
    assert ["deploy/healthcheck", "/usr/local/bin/gradtrace-healthcheck"] in copies
    assert os.access(HEALTHCHECK_SCRIPT, os.X_OK) and HEALTHCHECK_SCRIPT.read_text().startswith("#!/usr/bin/env python3")
    assert healthcheck().returncode == 2 and healthcheck("nope").returncode == 2


def test_worker_healthcheck_against_a_real_worker(settings_for: Any, start_worker: Any) -> None:
    from conftest import settings_env

    settings = settings_for(broker_db=12)  # a broker db of its own: this worker takes no other test's jobs
    start_worker(settings, "celery", concurrency=1)  # the default node name: celery@<hostname>
    env = {**settings_env(settings), "HOSTNAME": ""}  # as `podman exec` leaves it: the name comes from the kernel
    assert healthcheck("worker", env=env).returncode == 0
    other = healthcheck("worker", "celery@no-such-host", env=env)
    assert other.returncode == 1 and "celery@no-such-host" in other.stderr
    gone = healthcheck("worker", env={**env, "GRADTRACE_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert gone.returncode == 1


def test_api_healthcheck_against_a_real_api(server: str) -> None:
    assert healthcheck("api", server).returncode == 0
    down = healthcheck("api", "http://127.0.0.1:1")
    assert down.returncode == 1 and "127.0.0.1:1/healthz" in down.stderr


def test_flower_healthcheck_sends_the_password_and_wants_ok() -> None:
    import base64
    import http.server
    import threading

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization"))
            body = b"OK" if self.path == "/healthcheck" else b"?"
            self.send_response(200 if self.path == "/healthcheck" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        env = {**os.environ, "FLOWER_BASIC_AUTH": "ci:secret,other:pw"}
        assert healthcheck("flower", base, env=env).returncode == 0
        assert seen == ["Basic " + base64.b64encode(b"ci:secret").decode()]
        assert healthcheck("flower", base + "/nothing-here", env=env).returncode == 1
        httpd.shutdown()


def test_api_runs_gunicorn_on_the_app_factory(services: dict[str, Any]) -> None:
    cmd = command(services["api"])
    ports = [interpolate_defaults(p) for p in services["api"]["ports"]]
    assert cmd[0] == "gunicorn" and "0.0.0.0:8000" in cmd and ports == ["8000:8000"]
    target = next(a for a in cmd if re.fullmatch(r"[\w.]+:\w+\(\)", a))
    module, _, call = target.partition(":")
    assert target == "api.app:create_app()" and callable(getattr(importlib.import_module(module), call[:-2]))
    cmd_in_image = next(exec_form(a) for w, a in dockerfile_instructions() if w == "CMD")
    assert cmd_in_image == cmd, "the image's default command and the compose api command differ"
    proc = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", *cmd[1:]], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_flower_only_with_the_monitoring_profile_on_localhost_with_a_password(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert all("profiles" not in services[name] for name in ("redis", "api", "worker"))
    assert [interpolate_defaults(p) for p in flower["ports"]] == ["127.0.0.1:5555:5555"]  # this host only
    cmd = command(flower)
    assert cmd[cmd.index(celery_app_path(cmd)) + 1] == "flower" and "--port=5555" in cmd
    # required, but not with `${VAR:?}`: Compose interpolates services of inactive profiles too
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    assert flower["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert flower["entrypoint"] == ["gradtrace-flower-entrypoint"]
    copies = [a.split() for w, a in dockerfile_stages()[-1] if w == "COPY"]
    assert ["deploy/flower-entrypoint", "/usr/local/bin/gradtrace-flower-entrypoint"] in copies
    install = " ".join(a for w, a in dockerfile_stages()[-1] if w == "RUN" and "pip install" in a)
    assert '"flower>=2.0"' in install, "flower is not installed in the image"


@pytest.mark.parametrize(("auth", "runs"), [
    (None, False), ("", False), ("admin", False), ("admin:", False), (":pw", False), ("a:b,c", False),
    ("admin:secret", True), ("a:b,c:d", True), ("a:b c", True),
])
def test_flower_entrypoint_refuses_to_start_without_basic_auth(auth: str | None, runs: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    if auth is not None:
        env["FLOWER_BASIC_AUTH"] = auth
    proc = subprocess.run(["sh", str(ROOT / "deploy" / "flower-entrypoint"), "echo", "started"], env=env,
                          capture_output=True, text=True, timeout=30)
    if runs:
        assert proc.returncode == 0 and proc.stdout == "started\n"
    else:
        assert proc.returncode == 64 and "FLOWER_BASIC_AUTH" in proc.stderr and not proc.stdout


def test_every_service_has_memory_and_cpu_limits(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        limits = svc["deploy"]["resources"]["limits"]
        memory = interpolate_defaults(str(limits["memory"]))
        cpus = float(interpolate_defaults(str(limits["cpus"])))
        assert re.fullmatch(r"\d+[mg]", memory) and 0 < cpus <= 2, (name, limits)
    redis_max = interpolate_defaults(command(services["redis"])[command(services["redis"]).index("--maxmemory") + 1])
    gib = {"m": 1 / 1024, "g": 1, "mb": 1 / 1024, "gb": 1}
    to_gib = lambda v: float(re.match(r"\d+", v).group()) * gib[re.search(r"[a-z]+$", v).group()]  # noqa: E731
    assert to_gib(interpolate_defaults(services["redis"]["deploy"]["resources"]["limits"]["memory"])) > to_gib(redis_max)


def test_dockerfile_installs_cpu_torch_before_the_project() -> None:
    stages = dockerfile_stages()
    steps = dockerfile_instructions()
    # the base image and torch's index are build arguments whose defaults are what users get
    assert stages[0][:2] == [("ARG", "BASE_IMAGE=python:3.11-slim"), ("FROM", "${BASE_IMAGE} AS base")]
    assert ("ARG", f"TORCH_INDEX_URL={CPU_INDEX}") in stages[0]
    runs = [(i, a) for i, (w, a) in enumerate(steps) if w == "RUN"]
    torch_at = [i for i, a in runs if "--index-url=$TORCH_INDEX_URL" in a and "pip install $from torch==2.13.0" in a]
    project_at = [i for i, a in runs if re.search(r"pip install --no-deps /tmp/dist/\S*\.whl", a)]
    assert torch_at and project_at and torch_at[0] < project_at[0], steps
    assert "assert not torch.version.cuda" in steps[torch_at[0]][1] and "torch.version.cuda" in steps[project_at[0]][1]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps, "the image pins a torch the project does not"
    assert any("apt-get install" in a and "graphviz" in a for _, a in runs)
    final = stages[-1]
    words = [w for w, _ in final]
    user = next(a for w, a in reversed(final) if w == "USER")
    assert user not in ("root", "0") and words.index("USER") < words.index("CMD")
    assert ("EXPOSE", "8000") in final


def test_the_image_holds_no_build_folder_and_no_wheelhouse() -> None:
    stages = dockerfile_stages()
    names = [next(a for w, a in stage if w == "FROM").split() for stage in stages]
    assert names[1][-2:] == ["AS", "build"] and names[-1] == ["base"], names
    final = stages[-1]
    # the source tree goes into the build stage only; the final stage copies the built wheel (a COPY: its cache key
    # is the wheel's content, where buildah keyed a bind-mounted RUN on its text and kept an older source's layer)
    assert ("COPY", ". .") in stages[1] and all(not a.startswith(". ") for w, a in final if w == "COPY")
    assert ("COPY", "--from=build /dist /tmp/dist") in final
    assert any("rm -rf /tmp/dist" in a for w, a in final if w == "RUN")
    assert ("WORKDIR", "/app") in final and ["gunicorn.conf.py", "/app/"] in [a.split() for w, a in final if w == "COPY"]
    # the wheelhouse is a build argument naming a mounted folder, never a COPY
    for stage in stages:
        assert all("wheelhouse" not in a.lower() for w, a in stage if w in ("COPY", "ADD"))
        if any("$WHEELHOUSE" in a for w, a in stage if w == "RUN"):
            assert ("ARG", "WHEELHOUSE=") in stage


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git"} <= set(ignored)
    assert not {"deploy", "deploy/healthcheck", "deploy/flower-entrypoint", "gunicorn.conf.py"} & set(ignored)


def test_compose_test_script_runs() -> None:
    script = ROOT / "deploy" / "compose-test"
    assert os.access(script, os.X_OK)
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--cold" in proc.stdout and "--keep" in proc.stdout
