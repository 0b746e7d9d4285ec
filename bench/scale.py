"""Section 2: how every stage grows with graph size (chains, wide graphs) and with the CNN's batch."""

from __future__ import annotations

import gc
import math
import time
from typing import Any
from urllib.parse import quote

import numpy as np

from bench import graphs
from bench.stack import Stack
from bench.stats import summary

STAGES = ("spec_parse", "compile", "torch", "reference", "numeric", "compare", "assemble", "store_write",
          "store_read", "post", "e2e", "fetch", "node_fetch", "inproc_trace", "inproc_torch_trace", "inproc_torch_engine",
          "bare_torch", "worker_peak_mib")
"""Per size: the worker's compile/engine/compare/assemble times (result.timings_ms of the e2e jobs) and its
JobStore.finish time, the store read of that job (in-process), HTTP POST / end to end / GET of the finished job /
GET of one node tensor, in-process traces (all engines; torch only), the torch engine alone (run_torch) and bare
torch fwd+bwd, interleaved in one loop, the worker's peak RSS."""


def bare_torch(graph: Any, device: str = "cpu") -> float:
    """ms of a plain torch forward+backward of the graph: no hooks, no retained grads, no copies back (on a GPU:
    the leaves go up first, as in the torch engine, and the time ends at a synchronize). The time includes freeing
    the graph's tensors, as run_torch's does (8% of it on the 10k chain, nothing on the CNN)."""
    import torch

    dev = torch.device(device)
    t0 = time.perf_counter()
    tensors: dict[str, Any] = {}
    for leaf in graph.leaves.values():
        tensors[leaf.name] = torch.from_numpy(np.array(leaf.value)).to(dev).requires_grad_(leaf.requires_grad)
    for node in graph.nodes:
        tensors[node.name] = node.op.torch(torch, [tensors[i] if isinstance(i, str) else i for i in node.inputs], node.args)
    go = None if graph.grad_output is None else torch.from_numpy(np.array(graph.grad_output)).to(dev)
    tensors[graph.output].backward(go)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    del tensors
    return (time.perf_counter() - t0) * 1e3


class StoreBench:
    """JobStore.finish / get on the stack's Redis, from this process."""

    def __init__(self, stack: Stack) -> None:
        from services.store import JobStore

        self.stack = stack
        self.store = JobStore.from_settings(stack.settings())

    def net_in(self) -> int:
        return int(self.stack.redis.info("stats")["total_net_input_bytes"])

    def write(self, spec_json: str, done: Any) -> tuple[str, float, int]:
        """(job id, ms of finish(), bytes Redis received during it)."""
        job_id, _ = self.store.create(spec_json)
        delivery = self.store.deliver(job_id, 3)
        b0 = self.net_in()
        t0 = time.perf_counter()
        ok = self.store.finish(job_id, done, done.graph.keep, delivery)
        ms = (time.perf_counter() - t0) * 1e3
        nbytes = self.net_in() - b0
        if not ok:
            raise RuntimeError("store.finish refused the job")
        return job_id, ms, nbytes

    def read(self, job_id: str) -> float:
        """ms of what GET /v1/jobs/{id} asks of the store: JobStore.get of the status fields, summary, result and
        manifest (the API splices their JSON into the response without parsing it)."""
        gc.collect()
        t0 = time.perf_counter()
        self.store.get(job_id, "summary", "result", "manifest")
        return (time.perf_counter() - t0) * 1e3


def measure(stack: Stack, name: str, spec: dict[str, Any], repeats: int, log: Any, big: bool = False,
            deadline: float | None = None) -> dict[str, Any]:
    """Every stage of one graph, `repeats` times (fewer once past `deadline`).

    In-process: spec parse, the torch-only trace, bare torch and (unless `big`) one full trace.
    Through the stack, per e2e job: POST, end to end, the worker's stage timings (result.timings_ms), its
    JobStore.finish time (bench worker's timing file), bytes Redis received for the job, the worker's peak
    RSS, then the store read (JobStore.get, in-process, of that job), the final poll's HTTP GET (the finished
    job with its full result) and HTTP GETs of single node tensors (not at the largest size)."""
    import torch  # noqa: F401  (imported before timing anything)

    from services.compiler import Limits, compile_spec
    from services.materialize import materialize
    from services.trace import paused_gc, trace
    from shared.spec import TraceSpec

    def left() -> float:
        return math.inf if deadline is None else deadline - time.monotonic()

    wall0 = time.monotonic()
    body = graphs.dumps(spec)
    vals: dict[str, list[float]] = {k: [] for k in STAGES}
    skipped: list[str] = []

    for _ in range(max(repeats, 3) if big else max(repeats, 5)):  # cheap, and sensitive to when the GC runs; the
        # first parse of a large spec also grows the allocator's arenas (a once-per-process cost), so never n=1
        gc.collect()
        t0 = time.perf_counter()
        with paused_gc():  # as the worker parses
            ts = TraceSpec.model_validate_json(body)
        vals["spec_parse"].append((time.perf_counter() - t0) * 1e3)
    limits = Limits.from_settings(stack.settings())  # the stack's node cap (the 1M chain is over the default)
    graph = compile_spec(ts, limits)
    materialize(graph)
    n_nodes = len(graph.nodes)

    # in-process baselines: the torch-only trace (spec parse included, as in the worker), then the torch engine
    # alone and bare torch back to back (the engine's overhead over torch, measured in one process, one loop)
    from services.engines.torch_engine import run_torch

    torch_body = graphs.dumps(graphs.with_engines(spec, ["torch"]))
    for i in range(repeats):
        if i and left() < 0:
            skipped.append(f"in-process torch x{repeats - i}")
            break
        gc.collect()  # every in-process timing starts from a collected heap: reproducible GC work inside it
        t0 = time.perf_counter()
        with paused_gc():  # as in the worker
            trace(TraceSpec.model_validate_json(torch_body), limits)
        vals["inproc_torch_trace"].append((time.perf_counter() - t0) * 1e3)
        for stage, run in (("inproc_torch_engine", lambda: run_torch(graph).seconds * 1e3), ("bare_torch", lambda: bare_torch(graph))):
            gc.collect()
            with paused_gc():
                vals[stage].append(run())
    stored_bytes = result_json_bytes = table_json_bytes = None
    if not big:
        gc.collect()
        t0 = time.perf_counter()
        done = trace(ts, limits, full_nodes=stack.settings().result_full_nodes)
        vals["inproc_trace"].append((time.perf_counter() - t0) * 1e3)
        stored_bytes = sum(a.nbytes for a in done.arrays.values())
        result_json_bytes = len(done.result.model_dump_json()) if done.result is not None else 0
        table_json_bytes = len(done.table.to_json())
        del done
    else:
        skipped.append("in-process full trace (time budget; the worker's stage timings stand for it)")

    # through the stack
    from bench.clients import ApiClient  # here, not at the top: bench.gpu imports this module without Celery

    sb = StoreBench(stack)
    api = ApiClient(stack.api_url)
    bytes_in: list[float] = []
    job_body_bytes = None
    # an e2e run costs ~2.5 in-process full traces, ~6 torch-only ones (measured at 1k and 10k nodes)
    est_s = (2.5 * vals["inproc_trace"][0] if vals["inproc_trace"] else 6 * vals["inproc_torch_trace"][0]) / 1e3
    for i in range(repeats):
        if left() < est_s:
            skipped.append(f"e2e x{repeats - i}")
            break
        stack.reset_worker_peak()
        b0 = sb.net_in()
        ms, job = api.run(body)
        bytes_in.append(sb.net_in() - b0)
        vals["e2e"].append(ms)
        vals["post"].append(job["_wall"][1] - job["_wall"][0])
        vals["worker_peak_mib"].append(stack.worker_peak_mib() or math.nan)
        for k, v in (job["summary"].get("timings_ms") or {}).items():
            if k in vals:
                vals[k].append(v)
        job_id = job["id"]
        job_body_bytes = job.get("_bytes")
        if stored_bytes is None:  # a job over GRADTRACE_RESULT_FULL_NODES sends its manifest only when asked
            if job["manifest"] is None:  # (and over MANIFEST_MAX_TENSORS, never: 413)
                r = api.http.get(f"/v1/jobs/{job_id}", params={"manifest": "true", "result": "false"})
                job["manifest"] = r.json()["manifest"] if r.status_code == 200 else None
            stored_bytes = job["manifest"]["nbytes"] if job["manifest"] else None
        names = graph.names()
        del job  # the parsed result is a big object graph: gone before anything else is timed here
        g0 = time.perf_counter()
        api.get_raw(job_id)  # a plain GET of the finished job (its whole result when small, else the summary)
        vals["fetch"].append((time.perf_counter() - g0) * 1e3)
        fin = stack.worker_finish_ms(job_id)
        if fin is not None:
            vals["store_write"].append(fin)
        picks = [] if big else [names[j] for j in np.linspace(0, len(names) - 1, 3 if len(names) < 5000 else 1).astype(int)]
        if big:
            skipped.append("node tensor GET (time budget; grows like the GET of the job, see the smaller sizes)")
        for nm in picks:
            t0 = time.perf_counter()
            r = api.http.get(f"/v1/jobs/{job_id}/nodes/{quote(nm, safe='')}", params={"format": "npy"})
            vals["node_fetch"].append((time.perf_counter() - t0) * 1e3)
            if r.status_code != 200:
                raise RuntimeError(f"node fetch {nm}: HTTP {r.status_code}: {r.text[:300]}")
        del names
        if left() > 0:  # the store's own read of the job (JobStore.get), in this process
            vals["store_read"].append(sb.read(job_id))
        else:
            skipped.append("store read (time budget)")
        stack.flush_store()
    api.close()
    out = {
        "graph": name, "nodes": n_nodes, "repeats": repeats, "engines": list(graph.engines),
        "stored_tensor_bytes": stored_bytes, "result_json_bytes": result_json_bytes, "table_json_bytes": table_json_bytes,
        "job_json_bytes": job_body_bytes,
        "redis_bytes_in_per_job": summary(bytes_in, "B"),
        "stages": {k: summary(v, "MiB" if k == "worker_peak_mib" else "ms") for k, v in vals.items() if v},
        "skipped": skipped, "wall_s": time.monotonic() - wall0, "get_503_retries": api.retries,
    }
    log(f"    {name}: {n_nodes} nodes, {out['wall_s']:.0f} s" + (f", {api.retries} GETs retried after a 503"
                                                                 if api.retries else ""))
    return out


def growth(rows: list[dict[str, Any]], work: list[float]) -> list[dict[str, Any]]:
    """For each step to the next size: time(bigger)/time(smaller) per stage, and the work factor."""
    out = []
    for (a, wa), (b, wb) in zip(zip(rows, work, strict=True), zip(rows[1:], work[1:], strict=True), strict=False):
        factor = wb / wa
        stages = {}
        for k in STAGES:
            sa, sb_ = a["stages"].get(k), b["stages"].get(k)
            if sa and sb_ and sa.get("median") and sb_.get("median"):
                r = sb_["median"] / sa["median"]
                stages[k] = {"ratio": r, "per_10x": r ** (1 / math.log10(factor)) if factor > 1 else None}
        out.append({"from": a["graph"], "to": b["graph"], "work_factor": factor, "stages": stages})
    return out


def run(stack: Stack, cfg: Any, log: Any, big: bool) -> dict[str, Any]:
    """big=False: the smaller sizes and the CNN; big=True: the largest size, within cfg.big_deadline, each
    graph only when its projected time (12x the previous size's) fits."""
    out: dict[str, Any] = {"chain": [], "wide": [], "cnn": []}
    sizes = cfg.sizes[-1:] if big else cfg.sizes[:-1]
    for n in sizes:
        reps = cfg.repeats_for(n)
        for kind, make in (("chain", graphs.scalar_chain), ("wide", graphs.wide)):
            if big:
                prev = (cfg.previous or {}).get(kind)
                per_run = (prev["wall_s"] / max(1, prev["repeats"])) if prev else 0.0
                # 10x the previous size's time per run (its stages grew ~9-10x per 10x nodes so far)
                est = 10 * per_run * (n / prev["nodes"] / 10 if prev else 1) * max(1, reps)
                left = cfg.big_deadline - time.monotonic()
                if est > left:
                    msg = f"all: projected {est:.0f} s, {max(0.0, left):.0f} s left in the time budget"
                    out[kind].append({"graph": f"{kind}-{n}", "nodes": n, "skipped": [msg], "stages": {}})
                    log(f"  {kind} {n} nodes: skipped ({msg})")
                    continue
            log(f"  {kind} {n} nodes x{reps}")
            out[kind].append(measure(stack, f"{kind}-{n}", make(n), reps, log, big=big,
                                     deadline=cfg.big_deadline if big else None))
    if not big:
        for b in cfg.cnn_batches:
            log(f"  small CNN batch {b} x{cfg.cnn_repeats}")
            out["cnn"].append(measure(stack, f"cnn-b{b}", graphs.small_cnn(b), cfg.cnn_repeats, log))
    return out


def huge(stack: Stack, log: Any, kind: str = "chain") -> dict[str, Any]:
    """The 1,000,000-node chain or wide graph, once (--huge): e2e, worker RSS and the in-process baselines, as
    `measure` does for the largest size; a failure is recorded as the row's reason, not raised (the rest of the
    run stands)."""
    n = 1_000_000
    make = graphs.scalar_chain if kind == "chain" else graphs.wide
    log(f"  {kind} {n} nodes x1 (--huge)")
    try:
        return measure(stack, f"{kind}-{n}", make(n), 1, log, big=True)
    except Exception as e:  # a crash or timeout of the stack: say what, keep the report
        log(f"  {kind} {n}: failed: {e}")
        return {"graph": f"{kind}-{n}", "nodes": n, "skipped": [f"failed: {str(e)[:300]}"], "stages": {}}
    finally:
        stack.flush_store()


def huge_note(sc: dict[str, Any]) -> str:
    """Why the 1M-node graphs are not in the run: what the largest measured chain projects for them."""
    failed = [r for r in sc.get("chain", []) if r["nodes"] == 1_000_000 and r.get("skipped")]
    why = f"{failed[0]['skipped'][0]}; " if failed else ""
    rows = [r for r in sc.get("chain", []) if r.get("stages", {}).get("worker_peak_mib")]
    if not rows:
        return why + "no chain was measured to project from"
    last = max(rows, key=lambda r: r["nodes"])
    k = 1_000_000 / last["nodes"]
    rss = last["stages"]["worker_peak_mib"]["median"] * k / 1024
    e2e = last["stages"].get("e2e", {}).get("median", math.nan) * k / 1e3
    return (f"{why}projected from the {last['nodes']:,}-node chain (linear): about {rss:.0f} GiB of worker RSS and "
            f"{e2e:.0f} s end to end per run, with the API compiling a ~60 MB spec; this 2-core machine's run budget "
            "(bench/README.md) leaves no room for it: `make bench` runs it (--huge)")
