"""The API served by a real gunicorn process, driven over HTTP with httpx."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import numpy as np


def test_end_to_end_over_http(server: str, chain_spec: dict[str, Any], poll: Any) -> None:
    with httpx.Client(base_url=server, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
        r = http.post("/v1/jobs", json=chain_spec, headers={"Idempotency-Key": "gunicorn-test"})
        assert r.status_code == 202
        job_id = r.json()["id"]
        assert r.headers["location"] == f"/v1/jobs/{job_id}"
        job = poll(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
                       60, "the job")
        assert job["status"] == "succeeded", job
        assert job["result"]["nodes"]["x"]["grad"]["data"] == 2569
        r = http.get(f"/v1/jobs/{job_id}/nodes/fx", params={"field": "grad"},
                     headers={"Accept": "application/octet-stream"})
        assert r.status_code == 200 and float(np.load(io.BytesIO(r.content), allow_pickle=False)) == 367.0
        r = http.get(f"/v1/jobs/{job_id}/graph", params={"format": "svg"})
        assert r.headers["content-type"].startswith("image/svg+xml") and "<svg" in r.text
        r = http.post("/v1/jobs", content=b"x" * (3 * 1024 * 1024), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "detail" in r.json()
        r = http.post("/v1/jobs", content=iter([b"x" * (1024 * 1024)] * 3), headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text  # chunked, no Content-Length
        assert http.get("/openapi.json").json()["openapi"].startswith("3.1")
        assert http.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert http.get(f"/v1/jobs/{job_id}").status_code == 404


def test_keep_alive_outlasts_the_clients_idle_connections(server: str) -> None:
    """gunicorn.conf.py keeps idle connections 75 s, longer than httpx keeps them (5 s): a client never reuses a
    connection the server is closing (gunicorn's default, 2 s, reset 20 of 2141 requests sent at that moment)."""
    def local_addr(r: httpx.Response) -> Any:
        return r.extensions["network_stream"].get_extra_info("client_addr")

    with httpx.Client(base_url=server, timeout=10) as http:
        first = http.get("/healthz")
        assert first.headers.get("connection", "").lower() != "close"
        first_addr = local_addr(first)
        time.sleep(2.5)  # past gunicorn's default keep-alive
        again = http.get("/healthz")
        assert again.status_code == 200 and local_addr(again) == first_addr  # the same connection
        # a body refused unread is answered with Connection: close (gunicorn drains only 64 KiB of it), and the
        # next request goes on a new connection instead of failing on a dropped one
        r = http.post("/v1/jobs", content=b"x" * (3 * 1024 * 1024), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.headers["connection"] == "close"
        after = http.get("/healthz")
        after_addr = local_addr(after)
        assert after.status_code == 200 and after_addr != first_addr
        small = http.post("/v1/jobs", json={"program": "x = 1 +"})  # a small body is read: the connection stays
        assert small.status_code == 422 and small.headers.get("connection", "").lower() != "close"
        assert local_addr(http.get("/healthz")) == after_addr
