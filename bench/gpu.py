"""Section 5: the small CNN with device 'cuda' (torch engine), against the host<->device copy floor.

torch time on the GPU (run_torch, synchronised) and the full trace plus store.finish (copies to host and
storage included), against bytes moved / pinned-memory copy bandwidth measured in the same run: leaves go
host->device once, every value, grad and edge gradient comes device->host."""

from __future__ import annotations

import time
from typing import Any

from bench import graphs
from bench.stats import ratio, summary


def pinned_bandwidth(torch: Any, nbytes: int = 256 * 1024 * 1024, repeats: int = 5) -> dict[str, Any]:
    """GB/s host->device and device->host with pinned host memory (median of `repeats`)."""
    n = nbytes // 4
    host = torch.empty(n, dtype=torch.float32).pin_memory()
    dev = torch.empty(n, dtype=torch.float32, device="cuda")
    h2d, d2h = [], []
    for i in range(repeats + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        dev.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        host.copy_(dev, non_blocking=True)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if i:
            h2d.append(nbytes / (t1 - t0) / 1e9)
            d2h.append(nbytes / (t2 - t1) / 1e9)
    return {"h2d_GBps": summary(h2d, "GB/s"), "d2h_GBps": summary(d2h, "GB/s"), "bytes": nbytes}


def run(stack: Any, cfg: Any, log: Any) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"skipped": "skipped: no CUDA device (torch not importable)"}
    if not torch.cuda.is_available():
        log("  skipped: no CUDA device")
        return {"skipped": "skipped: no CUDA device"}

    from bench.scale import StoreBench
    from services.compiler import compile_spec
    from services.engines.torch_engine import run_torch
    from services.materialize import materialize
    from services.trace import trace
    from shared.spec import TraceSpec

    bw = pinned_bandwidth(torch)
    sb = StoreBench(stack) if stack is not None else None
    rows = []
    for b in cfg.gpu_batches:
        spec = TraceSpec.model_validate(graphs.small_cnn(b, engines=["torch"], device="cuda"))
        graph = compile_spec(spec)
        materialize(graph)
        run_torch(graph)  # warm-up (CUDA context, kernels)
        torch_ms, full_ms, store_ms = [], [], []
        moved = 0
        for _ in range(cfg.gpu_repeats):
            t0 = time.perf_counter()
            r = run_torch(graph)
            torch_ms.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            done = trace(spec)
            if sb is not None:
                job_id, ms, _ = sb.write(spec.model_dump_json(exclude_unset=True), done)
                store_ms.append(ms)
                stack.flush_store()
            full_ms.append((time.perf_counter() - t0) * 1e3)
            up = sum(leaf.value.nbytes for leaf in graph.leaves.values())
            down = sum(a.nbytes for a in r.values.values()) + sum(a.nbytes for a in r.grads.values() if a is not None) \
                + sum(a.nbytes for a in r.edges.values())
            moved = up + down
        floor_ms = (up / (bw["h2d_GBps"]["median"] * 1e9) + down / (bw["d2h_GBps"]["median"] * 1e9)) * 1e3
        t, f = summary(torch_ms), summary(full_ms)
        floor = {"median": floor_ms, "n": 1}
        rows.append({
            "batch": b, "bytes_moved": moved, "copy_floor_ms": floor_ms, "torch_gpu_ms": t, "full_trace_ms": f,
            "store_ms": summary(store_ms), "torch_over_floor": ratio(t, floor), "full_over_floor": ratio(f, floor),
        })
        log(f"  CNN batch {b}: torch {t['median']:.2f} ms, full {f['median']:.2f} ms, copy floor {floor_ms:.3f} ms")
    return {"device": torch.cuda.get_device_name(0), "bandwidth": bw, "rows": rows}
