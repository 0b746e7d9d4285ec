"""Hostile and oversize input at the API: a clear 4xx before anything is queued, never a 500, never a job that
fails in the worker for a reason the compiler could have seen."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

BIG_CHAIN = "x = torch.rand(1000, requires_grad=True)\ny = x * 1\n" + "y = y + x\n" * 9990 + "s = y.sum()\n"


def test_an_oversize_result_is_a_422_with_its_figures(client: Any, rdb: Any) -> None:
    """The issue's 70 KB spec (y = y + x ten thousand times on a [1000] input) would store ~300 MiB."""
    before = rdb.dbsize()
    t0 = time.monotonic()
    r = client.post("/v1/jobs", json={"program": BIG_CHAIN})
    assert r.status_code == 422, r.get_data(as_text=True)
    msg = r.get_json()["detail"][0]["msg"]
    assert "MiB" in msg and "GRADTRACE_MAX_RESULT_BYTES" in msg
    assert time.monotonic() - t0 < 2
    assert rdb.dbsize() == before  # no job was created


def test_the_largest_allowed_program_is_accepted_quickly_and_one_node_more_is_not(client: Any) -> None:
    body = "x = torch.rand(3, requires_grad=True)\ny = x * 1\n" + "y = y * 1.0001\n" * 9998 + "s = y.sum()\n"
    t0 = time.monotonic()
    r = client.post("/v1/jobs", json={"program": body})
    assert r.status_code == 202, r.get_data(as_text=True)
    assert time.monotonic() - t0 < 3.0  # a guard against superlinear compiling (~0.4 s here), not a speed figure
    r = client.post("/v1/jobs", json={"program": body.replace("s = y.sum()", "y = y * 2\ns = y.sum()")})
    assert r.status_code == 422 and "over the limit" in r.get_json()["detail"][0]["msg"]


def test_finite_differences_that_cannot_fit_the_time_limit_are_refused(client: Any) -> None:
    spec = {"inputs": {"x": {"shape": [1000, 1000]}}, "nodes": [{"name": "y", "op": "tanh", "inputs": ["x"]},
                                                               {"name": "s", "op": "sum", "inputs": ["y"]}],
            "engines": ["torch", "reference", "numeric"], "numeric": {"max_elements_per_leaf": 1_000_000}}
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422
    item = r.get_json()["detail"][0]
    assert item["loc"] == ["numeric"] and "forward passes" in item["msg"] and "max_elements_per_leaf" in item["msg"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("[" * 2000 + "]" * 2000, 400),  # nested too deep for the JSON parser
        ('{"program": "x = 1", ', 422),  # cut short
        ("null", 422),
        ('{"inputs": {"x": ' + "[" * 900 + "1" + "]" * 900 + '}, "nodes": []}', 422),
    ],
)
def test_malformed_and_deeply_nested_bodies_are_4xx(client: Any, body: str, status: int) -> None:
    r = client.post("/v1/jobs", data=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    assert "detail" in r.get_json()


def test_non_finite_inputs_are_kept_and_traced(api: Any) -> None:
    body = '{"inputs": {"x": {"value": [1.0, NaN, Infinity, -1e999]}}, ' \
           '"nodes": [{"name": "y", "op": "mul", "inputs": ["x", 2.0]}, {"name": "s", "op": "sum", "inputs": ["y"]}]}'
    r = api.client.post("/v1/jobs", data=body, headers={"content-type": "application/json"})
    assert r.status_code == 202, r.get_data(as_text=True)
    job = api.wait(r.get_json()["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["nodes"]["x"]["value"]["data"] == [1.0, "NaN", "Infinity", "-Infinity"]
    assert job["summary"]["anomalies"][0]["node"] == "x"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"program": "x = torch.tensor(2.0, requires_grad=True)\ny = x.flatten(1, 1)\n"}, "dim 1 is out of range"),
        ({"inputs": {"x": {"shape": [2, 3]}, "t": {"value": [0, 7], "dtype": "int64"}},
          "nodes": [{"name": "l", "op": "cross_entropy", "inputs": ["x", "t"]}]}, "out of range for 3 classes"),
        ({"inputs": {"x": 1.0}, "nodes": [{"name": "a\u0000b", "op": "exp", "inputs": ["x"]}]}, "String should match"),
        ({"inputs": {"x\u0007": 1.0}, "nodes": [{"name": "y", "op": "exp", "inputs": ["x\u0007"]}]}, "control characters"),
    ],
)
def test_what_would_fail_in_the_worker_is_a_422_now(client: Any, spec: dict[str, Any], needle: str) -> None:
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.get_data(as_text=True)
    assert needle in json.dumps(r.get_json())


def test_405_says_what_is_allowed(client: Any) -> None:
    r = client.put("/v1/jobs")
    assert r.status_code == 405 and set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    r = client.post("/healthz")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]


def test_an_explicit_default_is_the_same_spec_for_an_idempotency_key(api: Any, chain_spec: dict[str, Any]) -> None:
    key = {"Idempotency-Key": f"same-{time.time_ns()}"}
    a = api.submit(chain_spec, headers=key)
    b = api.submit({**chain_spec, "dtype": "float32", "engines": ["torch", "reference"]}, headers=key)
    assert a == b
    assert api.client.post("/v1/jobs", json={**chain_spec, "dtype": "float64"}, headers=key).status_code == 409


def test_a_job_that_gave_up_shows_the_attempts_it_made(settings_for: Any, chain_spec: dict[str, Any]) -> None:
    from services.store import JobStore
    from shared.spec import TraceSpec

    store = JobStore.from_settings(settings_for())
    job_id, _ = store.create(TraceSpec.model_validate(chain_spec).model_dump_json())
    for _ in range(3):  # each worker lost: its lease ran out
        assert store.deliver(job_id, 3, lease_s=0).state == "running"
    assert store.deliver(job_id, 3).state == "exhausted"
    rec = store.get(job_id)
    assert rec.status == "failed" and rec.attempts == 3 and "after 3 attempts" in rec.error.message  # type: ignore[union-attr]


def test_a_cancelled_job_keeps_its_record(api: Any, slow: Any) -> None:
    job_id = api.submit(slow(60000))
    api.wait(job_id, ("running",), timeout=30)
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 202
    job = api.job(job_id)
    assert job["status"] == "cancelled" and job["finished_at"] and job["progress"]["step"] == "cancelled"
    assert api.client.get(f"/v1/jobs/{job_id}/nodes/x").status_code == 409
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 204  # then deleted for good
    assert api.client.get(f"/v1/jobs/{job_id}").status_code == 404


def test_a_compiler_bug_is_a_logged_500_not_a_spec_error(client: Any, rdb: Any, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Only SpecError is the user's fault (422); any other exception while compiling is our bug."""
    import api.routes

    def broken(*_: Any, **__: Any) -> None:
        raise KeyError("an internal table lacks this op")

    monkeypatch.setattr(api.routes, "compile_spec", broken)
    before = rdb.dbsize()
    r = client.post("/v1/jobs", json={"program": "x = torch.tensor(2.0, requires_grad=True)\ny = x * x\n"})
    assert r.status_code == 500, r.get_data(as_text=True)
    detail = r.get_json()["detail"]
    ref = detail.split("reference ", 1)[1].split(")")[0]
    logged = [rec for rec in caplog.records if ref in rec.getMessage()]
    assert logged and logged[0].exc_info and "KeyError" in repr(logged[0].exc_info[1])
    assert "POST /v1/jobs" in logged[0].getMessage()
    assert rdb.dbsize() == before  # no job was created


def test_every_job_error_code_is_documented() -> None:
    """Every code the worker or API can write is documented in the README's error table."""
    from typing import get_args

    from shared.job import ErrorCode

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for code in get_args(ErrorCode):
        assert f"`{code}`" in readme, f"error code {code} is not documented in README.md"
