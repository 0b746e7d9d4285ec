"""Section 4: the job store against raw Redis SET/GET of the same bytes, on the same redis-server, same run.

Store write = JobStore.finish(): pick the kept tensors, encode them, dump result and manifest JSON, and
write everything in one MULTI/EXEC. Raw write = one pipeline of plain SETs of the same bytes, already encoded
(one key per tensor, the result JSON, the manifest JSON).
Store read = everything a client needs for the full result: the job record, result JSON included
(JobStore.get, as GET /v1/jobs/{id}), and every stored tensor, one JobStore.tensor() each (GET .../nodes/{name}).
Raw read = the faster, per round, of one pipeline of GETs of the raw keys and one plain GET per key (the API's
access pattern; redis-py reads large pipelined replies slowly); both are in the JSON report.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from bench import graphs
from bench.scale import StoreBench
from bench.stack import Stack
from bench.stats import ratio, summary


def _case(stack: Stack, name: str, spec: dict[str, Any], repeats: int, log: Any) -> dict[str, Any]:
    from services.jobs import select_tensors
    from services.store import tensor_names
    from services.trace import trace
    from shared.codec import to_bytes
    from shared.spec import TraceSpec

    ts = TraceSpec.model_validate(spec)
    done = trace(ts)
    sb = StoreBench(stack)
    r = stack.redis
    spec_json = ts.model_dump_json(exclude_unset=True)
    sel = select_tensors(done.arrays, ts.keep, sb.store.max_job_bytes, done.table.inline_limit,
                         lambda key: tensor_names(done.table, key))
    keys = [k.split("/", 2) for k in sel.chosen]

    cols: dict[str, list[float]] = {k: [] for k in ("store_write", "store_read", "raw_set", "raw_get", "raw_get_pipelined", "raw_get_each",
                                                    "bytes_store", "bytes_raw")}
    for i in range(repeats + 1):  # the first round is a warm-up
        # the store: finish(), then everything a client reads for the full result
        gc.collect()
        job_id, w_ms, nbytes = sb.write(spec_json, done)
        gc.collect()
        t0 = time.perf_counter()
        sb.store.get(job_id, "summary", "result", "manifest")
        for e, f, nm in keys:
            sb.store.tensor(job_id, e, f, nm)
        r_ms = (time.perf_counter() - t0) * 1e3
        stack.flush_store()

        # raw: the same bytes (already encoded: encoding is the store's own work), one key per tensor plus the
        # result and manifest JSON, in one pipeline each way
        payload = {f"raw:t:{j}": to_bytes(a) for j, a in enumerate(sel.chosen.values())}
        payload["raw:result"] = done.result.model_dump_json().encode() if done.result is not None else b""
        payload["raw:table"] = done.table.to_json().encode()
        payload["raw:manifest"] = sel.manifest_json().encode()
        gc.collect()
        b0 = sb.net_in()
        t0 = time.perf_counter()
        with r.pipeline(transaction=False) as p:
            for k, v in payload.items():
                p.set(k, v, ex=600)
            p.execute()
        raw_w = (time.perf_counter() - t0) * 1e3
        raw_bytes = sb.net_in() - b0
        t0 = time.perf_counter()
        with r.pipeline(transaction=False) as p:
            for k in payload:
                p.get(k)
            p.execute()
        raw_r = (time.perf_counter() - t0) * 1e3
        # raw with the API's access pattern: the result, then one plain GET per tensor, no pipeline
        t0 = time.perf_counter()
        r.get("raw:result")
        for j in range(len(sel.chosen)):
            r.get(f"raw:t:{j}")
        raw_each = (time.perf_counter() - t0) * 1e3
        stack.flush_store()
        if i:
            for k, v in (("store_write", w_ms), ("store_read", r_ms), ("raw_set", raw_w), ("raw_get", min(raw_r, raw_each)),
                         ("raw_get_pipelined", raw_r),
                         ("raw_get_each", raw_each), ("bytes_store", nbytes), ("bytes_raw", raw_bytes)):
                cols[k].append(v)

    out = {
        "case": name, "nodes": len(done.graph.nodes), "tensors_stored": len(sel.chosen), "tensors_read": len(keys),
        "tensor_bytes": sel.nbytes, "result_json_bytes": len(done.result.model_dump_json()) if done.result else 0,
        "bytes_written_per_job": summary(cols["bytes_store"], "B"), "raw_bytes_written": summary(cols["bytes_raw"], "B"),
        "store_write_ms": summary(cols["store_write"]), "raw_set_ms": summary(cols["raw_set"]),
        "store_read_ms": summary(cols["store_read"]), "raw_get_ms": summary(cols["raw_get"]),
        "raw_get_each_ms": summary(cols["raw_get_each"]), "raw_get_pipelined_ms": summary(cols["raw_get_pipelined"]),
    }
    out["write_ratio"] = ratio(out["store_write_ms"], out["raw_set_ms"])
    out["read_ratio"] = ratio(out["store_read_ms"], out["raw_get_ms"])
    out["read_ratio_vs_each"] = ratio(out["store_read_ms"], out["raw_get_each_ms"])
    log(f"    {name}: write {out['write_ratio']['value']:.2f}x raw, read {out['read_ratio']['value']:.2f}x raw "
        f"({out['read_ratio_vs_each']['value']:.2f}x one raw GET per tensor)")
    return out


def run(stack: Stack, cfg: Any, log: Any) -> dict[str, Any]:
    rows, cols = cfg.large_shape
    cases = [
        (f"large tensors ({rows}x{cols} float32)", graphs.large_result(rows, cols), cfg.store_repeats),
        ("tutorial chain-rule job", graphs.chain_rule(), cfg.store_repeats * 3),
    ]
    out = []
    for name, spec, reps in cases:
        log(f"  {name} x{reps}")
        out.append(_case(stack, name, spec, reps, log))
    return {"cases": out}
