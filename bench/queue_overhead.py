"""Section 1: queue overhead of the whole stack against a bare Celery task and the in-process trace."""

from __future__ import annotations

import time
from typing import Any

from bench import graphs
from bench.clients import POLL_MIN_S, ApiClient, BareCelery, concurrent
from bench.stack import Stack
from bench.stats import latency_summary, ratio, summary, timeit


def run(stack: Stack, cfg: Any, log: Any) -> dict[str, Any]:
    from services.trace import trace
    from shared.spec import TraceSpec

    body = graphs.dumps(graphs.chain_rule())
    api = ApiClient(stack.api_url)
    bare = BareCelery(stack.celery, stack.settings().redis_url)

    log(f"  warm-up: {cfg.warmup} jobs each")
    for _ in range(cfg.warmup):
        api.run(body)
        bare.run()

    # latency, one at a time; e2e and bare interleaved so that drift on a shared machine hits both alike
    log(f"  latency: {cfg.latency_n} e2e jobs and {cfg.latency_n} bare tasks, interleaved")
    e2e_ms, bare_ms = [], []
    for _ in range(cfg.latency_n):
        e2e_ms.append(api.run(body)[0])
        bare_ms.append(bare.run())
    job = api.run(body)[1]
    worker_timings = job["result"].get("timings_ms") if job.get("result") else None

    log(f"  in-process trace x{cfg.inproc_n}")
    inproc_ms = timeit(lambda: trace(TraceSpec.model_validate_json(body)), cfg.inproc_n, warmup=3)

    # throughput: many clients at once, rounds alternating e2e and bare
    log(f"  throughput: {cfg.tput_rounds} rounds x ({cfg.tput_jobs} e2e jobs | {cfg.bare_tput_jobs} bare tasks), {cfg.clients} clients")
    e2e_tput, bare_tput, e2e_load_ms, bare_load_ms = [], [], [], []

    def e2e_client() -> Any:
        c = ApiClient(stack.api_url)
        return lambda: c.run(body)

    for _ in range(cfg.tput_rounds):
        tp, lat = concurrent(e2e_client, cfg.clients, cfg.tput_jobs)
        e2e_tput.append(tp)
        e2e_load_ms += lat
        tp, lat = concurrent(lambda: bare.run, cfg.clients, cfg.bare_tput_jobs)
        bare_tput.append(tp)
        bare_load_ms += lat
    api.close()

    out: dict[str, Any] = {
        "job": "examples/chain_rule.py (program)",
        "poll_interval_ms": POLL_MIN_S * 1e3,
        "clients": cfg.clients,
        "e2e_latency_ms": latency_summary(e2e_ms),
        "bare_latency_ms": latency_summary(bare_ms),
        "inproc_trace_ms": summary(inproc_ms),
        "e2e_throughput_jobs_s": summary(e2e_tput, "jobs/s"),
        "bare_throughput_jobs_s": summary(bare_tput, "jobs/s"),
        "e2e_latency_under_load_ms": latency_summary(e2e_load_ms),
        "bare_latency_under_load_ms": latency_summary(bare_load_ms),
        "worker_timings_ms": worker_timings,
    }
    out["ratios"] = {
        "latency_p50_e2e_over_bare": ratio(out["e2e_latency_ms"], out["bare_latency_ms"]),
        "latency_p99_e2e_over_bare": ratio(out["e2e_latency_ms"], out["bare_latency_ms"], key="p99"),
        "throughput_e2e_over_bare": ratio(out["e2e_throughput_jobs_s"], out["bare_throughput_jobs_s"]),
        "latency_p50_e2e_over_inproc": ratio(out["e2e_latency_ms"], out["inproc_trace_ms"]),
    }
    bound = 2 * out["bare_latency_ms"]["p50"] + out["inproc_trace_ms"]["median"]
    out["latency_bound_ms"] = bound
    out["finished_at"] = time.time()
    return out
