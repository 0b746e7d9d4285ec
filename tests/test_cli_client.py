"""`gradtrace submit|status|fetch` against the real service: gunicorn, a Celery worker and redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import free_port, wait_for
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
runner = CliRunner()


@pytest.fixture(scope="module")
def api_url(server: str) -> str:
    """The session's gunicorn API (tests/conftest.py), on the test Redis with the main worker running."""
    return server


def cli(url: str, *args: str) -> Any:
    """Invoke the CLI in-process against `url`."""
    return runner.invoke(app, [*args, "--url", url])


@pytest.fixture(scope="module")
def chain_job(api_url: str) -> str:
    """The chain rule example submitted without --wait and polled (over HTTP) until finished."""
    res = cli(api_url, "submit", str(EXAMPLES / "chain_rule.py"))
    assert res.exit_code == 0, res.output
    job_id = res.stdout.strip()
    assert len(job_id) == 32 and "\n" not in job_id

    def done() -> bool:
        return httpx.get(f"{api_url}/v1/jobs/{job_id}").json()["status"] in ("succeeded", "failed", "cancelled")

    wait_for(done, 60, f"job {job_id}", interval=0.1)
    return job_id


def test_submit_wait_prints_the_table_and_exits_0(api_url: str) -> None:
    exe = Path(sys.executable).parent / "gradtrace"
    env = {**os.environ, "GRADTRACE_API_URL": api_url}  # the default URL comes from Settings
    proc = subprocess.run([str(exe), "submit", str(EXAMPLES / "chain_rule.py"), "--wait", "--timeout", "60"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "2569" in proc.stdout and "367" in proc.stdout and "PowBackward0" in proc.stdout
    assert "verdict: agree" in proc.stdout
    assert "submitted job" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_program_exits_2_with_the_api_detail(api_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = torch.tensor(1.0, requires_grad=True)\nd = os.getcwd()\n")
    res = cli(api_url, "submit", str(bad), "--wait")
    assert res.exit_code == 2, res.output
    assert "line 3" in res.stderr and "'os.getcwd', imported from a" in res.stderr
    assert res.stdout == ""


def test_invalid_json_spec_names_the_field(api_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"nodes": [], "program": "y=1"}))
    res = cli(api_url, "submit", str(spec))
    assert res.exit_code == 2, res.output
    assert "exactly one of" in res.stderr


def test_disagreement_exits_1(api_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "kink.json"
    spec.write_text(json.dumps({
        "inputs": {"x": {"value": [0.0, 1.0], "dtype": "float64"}},
        "nodes": [{"name": "r", "op": "relu", "inputs": ["x"]}, {"name": "s", "op": "sum", "inputs": ["r"]}],
        "engines": ["torch", "reference", "numeric"],
    }))
    res = cli(api_url, "submit", str(spec), "--wait", "--timeout", "60")
    assert res.exit_code == 1, res.output
    assert "disagree" in res.stdout


def test_failed_job_exits_3_and_status_shows_the_error(api_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "bad_target.py"  # compiles; the class index 7 is data, only the engine sees it
    spec.write_text("import torch.nn.functional as F\nx = torch.randn(2, 3, requires_grad=True)\n"
                    "t = (x.detach()[:, 0] * 0 + 7).long()\nloss = F.cross_entropy(x, t)\n")
    res = cli(api_url, "submit", str(spec), "--wait", "--timeout", "60")
    assert res.exit_code == 3, res.output
    assert "failed: engine_error: IndexError" in res.stderr and res.stdout == ""
    job_id = res.stderr.split("submitted job ", 1)[1].split()[0]
    res = cli(api_url, "status", job_id)
    assert res.exit_code == 0 and "failed" in res.stdout and "error     engine_error: IndexError" in res.stdout
    res = cli(api_url, "fetch", job_id, "x")
    assert res.exit_code == 3 and "failed" in res.stderr


def test_idempotency_key_gives_the_same_job(api_url: str) -> None:
    args = ("submit", str(EXAMPLES / "chain_rule.py"), "--idempotency-key", f"cli-{free_port()}")
    first, second = cli(api_url, *args), cli(api_url, *args)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert first.stdout == second.stdout


def test_status_of_a_finished_job(api_url: str, chain_job: str) -> None:
    res = cli(api_url, "status", chain_job)
    assert res.exit_code == 0, res.output
    assert chain_job in res.stdout and "succeeded" in res.stdout
    assert "done 100%" in res.stdout and "created" in res.stdout and "finished" in res.stdout
    assert "verdict: agree" in res.stdout


def test_fetch_grad_as_npy(api_url: str, chain_job: str, tmp_path: Path) -> None:
    out = tmp_path / "out.npy"
    res = cli(api_url, "fetch", chain_job, "x", "--field", "grad", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert np.load(out) == 2569
    res = cli(api_url, "fetch", chain_job, "fx", "--engine", "reference", "--field", "grad", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert np.load(out) == 367


def test_fetch_json_and_readable_forms(api_url: str, chain_job: str) -> None:
    res = cli(api_url, "fetch", chain_job, "x", "--field", "grad", "--json")
    assert res.exit_code == 0, res.output
    t = json.loads(res.stdout)
    assert t["data"] == 2569.0 and t["engine"] == "torch" and t["field"] == "grad" and t["shape"] == []
    res = cli(api_url, "fetch", chain_job, "gx")
    assert res.exit_code == 0, res.output
    assert "gx value (torch" in res.stdout and "1377" in res.stdout  # gx = 11**3 + 4*11 + 2


def test_fetch_unknown_node_exits_3(api_url: str, chain_job: str) -> None:
    res = cli(api_url, "fetch", chain_job, "nope")
    assert res.exit_code == 3
    assert "nope" in res.stderr


def test_unknown_job_exits_3(api_url: str) -> None:
    res = cli(api_url, "status", "0" * 32)
    assert res.exit_code == 3
    assert "no job" in res.stderr


def test_unreachable_api_exits_3_without_traceback() -> None:
    res = cli(f"http://127.0.0.1:{free_port()}", "submit", str(EXAMPLES / "chain_rule.py"), "--wait")
    assert res.exit_code == 3
    assert "cannot reach the gradtrace API" in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_graph_and_cancel_commands(api_url: str, chain_job: str, tmp_path: Path) -> None:
    svg, js = tmp_path / "g.svg", tmp_path / "g.json"
    res = cli(api_url, "graph", chain_job, "--svg", str(svg), "--json", str(js))
    assert res.exit_code == 0, res.output
    assert "<svg" in svg.read_text() and json.loads(js.read_text())["output"] == "gx"
    assert cli(api_url, "graph", chain_job).exit_code == 2  # no file asked for
    res = cli(api_url, "fetch", chain_job, "x")
    assert "tensor(2.)" in res.stdout  # printed as torch prints it
    other = cli(api_url, "submit", str(EXAMPLES / "chain_rule.py")).stdout.strip()
    wait_for(lambda: httpx.get(f"{api_url}/v1/jobs/{other}").json()["status"] == "succeeded", 60, "the job")
    res = cli(api_url, "cancel", other)
    assert res.exit_code == 0 and "results are deleted" in res.stderr
    res = cli(api_url, "cancel", other)
    assert res.exit_code == 3 and "no job" in res.stderr


def test_submit_wait_says_cancelled_when_the_job_is_cancelled(api_url: str, slow: Any, tmp_path: Path) -> None:
    """A job cancelled while `submit --wait` follows it: the CLI says so (exit 3), not 'unknown job'."""
    spec = tmp_path / "slow.json"
    spec.write_text(json.dumps(slow(60000)))
    exe = Path(sys.executable).parent / "gradtrace"
    proc = subprocess.Popen([str(exe), "submit", str(spec), "--wait", "--timeout", "120", "--url", api_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running() -> str | None:
            jobs = httpx.get(f"{api_url}/v1/jobs?limit=20").json()["items"]
            return next((j["id"] for j in jobs if j["status"] == "running"), None)

        job_id = wait_for(running, 60, "the slow job to run", interval=0.1)
        assert httpx.delete(f"{api_url}/v1/jobs/{job_id}").status_code == 202
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    assert f"job {job_id} cancelled" in err and "unknown" not in err and "Traceback" not in err


def test_the_cli_sends_its_token(redis_base: str, worker: Any, log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import gunicorn, make_settings

    with gunicorn(make_settings(redis_base, api_tokens="cli-secret"), log_dir) as url:
        monkeypatch.delenv("GRADTRACE_API_TOKEN", raising=False)
        res = cli(url, "submit", str(EXAMPLES / "chain_rule.py"), "--wait", "--timeout", "60")
        assert res.exit_code == 3 and "needs a token" in res.stderr and "GRADTRACE_API_TOKEN" in res.stderr
        monkeypatch.setenv("GRADTRACE_API_TOKEN", "cli-secret")
        res = cli(url, "submit", str(EXAMPLES / "chain_rule.py"), "--wait", "--timeout", "60")
        assert res.exit_code == 0 and "2569" in res.stdout, res.output
