"""Section 1: queue overhead of the whole stack against a bare Celery task and the in-process trace."""

from __future__ import annotations

import time
from typing import Any

from bench import graphs
from bench.clients import LONG_POLL_S, ApiClient, BareCelery, breakdown, concurrent
from bench.stack import Stack
from bench.stats import latency_summary, ratio, summary, timeit


def redis_calls(stack: Stack, one: Any, n: int) -> dict[str, float]:
    """Redis commands per call of `one` (INFO commandstats before and after n sequential calls)."""
    def snap() -> dict[str, int]:
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stack.redis.info("commandstats").items()}

    before = snap()
    for _ in range(n):
        one()
    after = snap()
    per = {k: (after[k] - before.get(k, 0)) / n for k in after if after[k] != before.get(k, 0)}
    per.pop("info", None)
    per = dict(sorted(per.items(), key=lambda kv: -kv[1]))
    return {"total": sum(per.values()), **per}


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
    parts: dict[str, list[float]] = {}
    api.gets = 0
    for _ in range(cfg.latency_n):
        ms, job = api.run(body)
        e2e_ms.append(ms)
        for k, v in breakdown(job).items():
            parts.setdefault(k, []).append(v)
        bare_ms.append(bare.run())
    polls_seq = api.gets / cfg.latency_n
    job = api.run(body)[1]
    worker_timings = job["result"].get("timings_ms") if job.get("result") else None

    # Redis commands per job (store and broker share the server): e2e jobs, then bare tasks
    calls_e2e = redis_calls(stack, lambda: api.run(body), cfg.calls_n)
    calls_bare = redis_calls(stack, bare.run, cfg.calls_n)

    log(f"  in-process trace x{cfg.inproc_n}")
    inproc_ms = timeit(lambda: trace(TraceSpec.model_validate_json(body)), cfg.inproc_n, warmup=3)

    # throughput: many clients at once, rounds alternating e2e and bare
    log(f"  throughput: {cfg.tput_rounds} rounds x ({cfg.tput_jobs} e2e jobs | {cfg.bare_tput_jobs} bare tasks), {cfg.clients} clients")
    e2e_tput, bare_tput, e2e_load_ms, bare_load_ms = [], [], [], []

    load_clients: list[ApiClient] = []

    def e2e_client() -> Any:
        c = ApiClient(stack.api_url)
        load_clients.append(c)
        return lambda: c.run(body)

    for _ in range(cfg.tput_rounds):
        tp, lat = concurrent(e2e_client, cfg.clients, cfg.tput_jobs)
        e2e_tput.append(tp)
        e2e_load_ms += lat
        tp, lat = concurrent(lambda: bare.run, cfg.clients, cfg.bare_tput_jobs)
        bare_tput.append(tp)
        bare_load_ms += lat
    api.close()
    polls_load = sum(c.gets for c in load_clients) / max(1, cfg.tput_rounds * cfg.tput_jobs)

    out: dict[str, Any] = {
        "job": "examples/chain_rule.py (program)",
        "long_poll_s": LONG_POLL_S,
        "clients": cfg.clients,
        "polls_per_job": {"one_at_a_time": polls_seq, "under_load": polls_load},
        "e2e_latency_ms": latency_summary(e2e_ms),
        "e2e_breakdown_ms": {k: summary(v) for k, v in parts.items()},
        "bare_latency_ms": latency_summary(bare_ms),
        "inproc_trace_ms": summary(inproc_ms),
        "e2e_throughput_jobs_s": summary(e2e_tput, "jobs/s"),
        "bare_throughput_jobs_s": summary(bare_tput, "jobs/s"),
        "e2e_latency_under_load_ms": latency_summary(e2e_load_ms),
        "bare_latency_under_load_ms": latency_summary(bare_load_ms),
        "worker_timings_ms": worker_timings,
        "redis_calls_per_job": {"e2e": calls_e2e, "bare": calls_bare},
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
