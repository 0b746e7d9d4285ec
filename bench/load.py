"""Section 6, the load run: thousands of jobs from many clients at once, over HTTP; none may be lost.

Each client submits a job, long-polls it to the end and checks its numbers (the tutorial's x.grad = 2569, the
small CNN's verdict); afterwards every job id is read back once more: each one is finished, succeeded, was run
once (attempts 1) and is in the store exactly once."""

from __future__ import annotations

import threading
import time
from typing import Any

from bench import graphs
from bench.clients import ApiClient, run_clients
from bench.stack import Stack
from bench.stats import latency_summary


def run(stack: Stack, cfg: Any, log: Any) -> dict[str, Any]:
    """Submit cfg.load_jobs jobs from cfg.load_clients threads; counts by outcome, throughput and latency."""
    bodies = [graphs.dumps(graphs.chain_rule()), graphs.dumps(graphs.small_cnn(1))]
    total, clients = cfg.load_jobs, cfg.load_clients
    log(f"  {total} jobs from {clients} clients (chain rule and small CNN, alternating)")
    counter = iter(range(total))
    lock = threading.Lock()
    ids: list[str] = []
    lat: list[float] = []
    problems: list[str] = []

    def client() -> None:
        api = ApiClient(stack.api_url)
        try:
            while True:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                t0 = time.perf_counter()
                try:
                    job_id = api.submit(bodies[k % 2])
                    with lock:
                        ids.append(job_id)
                    job, _ = api.wait(job_id)
                except Exception as e:  # counted, not raised: a lost or failed job is the finding
                    with lock:
                        problems.append(f"{type(e).__name__}: {e}"[:300])
                    continue
                ms = (time.perf_counter() - t0) * 1e3
                nodes = job["result"]["nodes"]
                wrong = k % 2 == 0 and nodes["x"]["grad"]["data"] != 2569.0
                wrong |= job["result"]["comparison"]["verdict"] == "disagree"
                with lock:
                    lat.append(ms)
                    if wrong:
                        problems.append(f"job {job_id}: wrong numbers")
        finally:
            api.close()

    wall = run_clients(client, clients)

    log(f"  reading back all {len(ids)} jobs")
    check = ApiClient(stack.api_url)
    statuses: dict[str, int] = {}
    rerun = 0
    for job_id in ids:
        r = check.http.get(f"/v1/jobs/{job_id}", params={"result": "false", "manifest": "false"})
        st = r.json()["status"] if r.status_code == 200 else f"http {r.status_code}"
        statuses[st] = statuses.get(st, 0) + 1
        rerun += r.status_code == 200 and r.json().get("attempts", 1) != 1
    check.close()
    lost = total - statuses.get("succeeded", 0)
    cancel_s = cancel_latency(stack)
    log(f"  cancel noticed in {cancel_s:.2f} s" if cancel_s is not None else "  cancel: not measured")
    return {
        "cancel_s": cancel_s,
        "jobs": total, "clients": clients, "submitted": len(ids), "distinct_ids": len(set(ids)),
        "statuses": statuses, "lost_or_failed": lost, "run_more_than_once": rerun,
        "problems": problems[:10], "problem_count": len(problems),
        "wall_s": wall, "throughput_jobs_s": total / wall if wall else None,
        "latency_ms": latency_summary(lat),
    }


SLOW_NUMERIC = {
    "inputs": {"x": {"shape": [300, 300]}},
    "nodes": [{"name": "y", "op": "mul", "inputs": ["x", "x"]}, {"name": "l", "op": "sum", "inputs": ["y"]}],
    "engines": ["torch", "reference", "numeric"],
    "numeric": {"max_elements_per_leaf": 60_000},
}
"""About half a minute of finite differences, unless cancelled."""


def cancel_latency(stack: Stack, timeout_s: float = 60.0) -> float | None:
    """Seconds from DELETE of a job inside its numeric engine to its worker letting go (the cancel flag 'stopped')."""
    from services.store import JobStore

    store = JobStore.from_settings(stack.settings())
    api = ApiClient(stack.api_url)
    try:
        job_id = api.submit(graphs.dumps(SLOW_NUMERIC))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # wait until the numeric engine runs
            progress = (api.http.get(f"/v1/jobs/{job_id}", params={"result": "false"}).json().get("progress") or {})
            if progress.get("step") == "numeric":
                break
            time.sleep(0.02)
        else:
            return None
        t0 = time.perf_counter()
        api.http.delete(f"/v1/jobs/{job_id}")
        while time.perf_counter() - t0 < timeout_s:
            if store.cancel_state(job_id) == "stopped":
                return time.perf_counter() - t0
            time.sleep(0.005)
        return None
    finally:
        api.close()
