"""The service end to end through the Flask test client, a real Redis and a real Celery worker."""

from __future__ import annotations

from typing import Any

from tests.conftest import CHAIN_SPEC, CONV_SPEC


def test_chain_rule_through_the_service(api: Any) -> None:
    job_id = api.submit(CHAIN_SPEC)
    job = api.wait(job_id)
    assert job["status"] == "succeeded", job
    nodes = job["result"]["nodes"]
    assert nodes["x"]["grad"]["data"] == 2569
    assert nodes["fx"]["grad"]["data"] == 367
    assert nodes["gx"]["value"]["data"] == 1377
