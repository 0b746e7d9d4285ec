"""Optional API tokens: bearer auth on every /v1 route when GRADTRACE_API_TOKENS is set, open health routes and
page, and a per-token limit on unfinished jobs (429 with Retry-After)."""

from __future__ import annotations

from typing import Any

import pytest

PROGRAM = {"program": "x = torch.tensor(2.0, requires_grad=True)\ny = x * x\n"}


@pytest.fixture
def locked(settings_for: Any) -> Any:
    """A client of an API with two tokens, at most 2 unfinished jobs per token, and no worker on its queue (jobs
    stay queued)."""
    from api.app import create_app

    return create_app(settings_for(broker_db=9, api_tokens="alpha-token, beta-token",
                                   max_unfinished_per_token=2)).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_v1_route_needs_a_token(locked: Any) -> None:
    for method, path in [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef"),
                         ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef/graph"),
                         ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef/nodes"),
                         ("DELETE", "/v1/jobs/0123456789abcdef0123456789abcdef")]:
        r = locked.open(path, method=method, json=PROGRAM if method == "POST" else None)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["WWW-Authenticate"].startswith("Bearer") and "Authorization: Bearer" in r.get_json()["detail"]
        r = locked.open(path, method=method, json=PROGRAM if method == "POST" else None, headers=bearer("wrong"))
        assert r.status_code == 401 and "not one of" in r.get_json()["detail"]
    assert locked.get("/v1/jobs", headers=bearer("beta-token")).status_code == 200


def test_health_docs_and_the_page_stay_open(locked: Any) -> None:
    assert locked.get("/healthz").status_code == 200
    assert locked.get("/readyz").status_code in (200, 503)  # open: no worker consumes this queue, so 503 here
    assert locked.get("/openapi.json").status_code == 200
    assert locked.get("/").status_code == 200


def test_the_page_s_cookie_is_a_token_too(locked: Any) -> None:
    assert locked.get("/v1/jobs").status_code == 401
    locked.set_cookie("gradtrace_token", "alpha-token")
    assert locked.get("/v1/jobs").status_code == 200


def test_a_token_s_unfinished_jobs_are_limited(locked: Any) -> None:
    ids: list[str] = []
    for _ in range(2):
        r = locked.post("/v1/jobs", json=PROGRAM, headers=bearer("alpha-token"))
        assert r.status_code == 202, r.get_data(as_text=True)
        ids.append(r.get_json()["id"])
    r = locked.post("/v1/jobs", json=PROGRAM, headers=bearer("alpha-token"))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "2 unfinished jobs" in r.get_json()["detail"]
    # another token has its own count
    r = locked.post("/v1/jobs", json=PROGRAM, headers=bearer("beta-token"))
    assert r.status_code == 202
    ids.append(r.get_json()["id"])
    # a cancelled job no longer counts
    assert locked.delete(f"/v1/jobs/{ids[0]}", headers=bearer("alpha-token")).status_code == 202
    r = locked.post("/v1/jobs", json=PROGRAM, headers=bearer("alpha-token"))
    assert r.status_code == 202
    ids.append(r.get_json()["id"])
    assert locked.post("/v1/jobs", json=PROGRAM, headers=bearer("alpha-token")).status_code == 429
    for job_id in ids:  # leave no queued job behind for the other tests
        locked.delete(f"/v1/jobs/{job_id}", headers=bearer("alpha-token"))


def test_without_tokens_the_api_is_open(client: Any) -> None:
    assert client.get("/v1/jobs").status_code == 200
