"""The API served by a real gunicorn process, driven over HTTP with httpx."""

from __future__ import annotations

import io
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
