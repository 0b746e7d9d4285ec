"""Section 5: the small CNN with device 'cuda' (torch engine), against bare torch on the GPU and the host<->device
copy floor.

torch time on the GPU (run_torch, synchronised) and the full trace plus store.finish (copies to host and
storage included), against a bare torch forward+backward on the GPU (interleaved with them) and bytes moved /
pinned-memory copy bandwidth measured in the same run: leaves go host->device once, every value, grad and edge
gradient comes device->host.

On a GPU machine without the rest of the stack: `python -m bench.gpu --out gpu.json` (a private redis-server for
the store part when one is on the PATH or given with --redis-server; without it the store part is skipped)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
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

    from bench.scale import StoreBench, bare_torch
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
        bare_torch(graph, "cuda")
        torch_ms, full_ms, store_ms, bare_ms = [], [], [], []
        stages: dict[str, list[float]] = {}
        moved = 0
        for _ in range(cfg.gpu_repeats):
            bare_ms.append(bare_torch(graph, "cuda"))
            t0 = time.perf_counter()
            r = run_torch(graph)
            torch_ms.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            done = trace(spec)
            for k, v in done.table.summary["timings_ms"].items():
                stages.setdefault(k, []).append(v)
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
        t, f, bare = summary(torch_ms), summary(full_ms), summary(bare_ms)
        floor = {"median": floor_ms, "n": 1}
        rows.append({
            "batch": b, "bytes_moved": moved, "copy_floor_ms": floor_ms, "torch_gpu_ms": t, "full_trace_ms": f,
            "bare_gpu_ms": bare, "store_ms": summary(store_ms) if store_ms else None,
            "torch_over_floor": ratio(t, floor), "full_over_floor": ratio(f, floor),
            "torch_over_bare": ratio(t, bare), "full_over_bare": ratio(f, bare),
            "stages_ms": {k: summary(v) for k, v in stages.items()},
        })
        log(f"  CNN batch {b}: bare {bare['median']:.2f} ms, torch engine {t['median']:.2f} ms, full {f['median']:.2f} ms, "
            f"copy floor {floor_ms:.3f} ms")
    return {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "store": sb is not None,
            "bandwidth": bw, "rows": rows}


class PrivateRedis:
    """A redis-server of its own on a free port, and what StoreBench asks of a Stack (settings, client, flush),
    for this section run alone."""

    def __init__(self, exe: str) -> None:
        import redis

        from bench.stack import free_port, redis_command, wait_for

        self.tmp = tempfile.mkdtemp(prefix="gradtrace-gpu-")
        port = free_port()
        self.proc = subprocess.Popen(redis_command(exe, port, self.tmp), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.base = f"redis://127.0.0.1:{port}"
        self.redis = redis.Redis.from_url(f"{self.base}/0")
        wait_for(self.redis.ping, 15, "redis-server")

    def settings(self) -> Any:
        from bench.stack import BENCH_SETTINGS
        from shared.settings import Settings

        return Settings(redis_url=f"{self.base}/0", broker_url=f"{self.base}/1", **BENCH_SETTINGS)

    def flush_store(self) -> None:
        self.redis.flushdb()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Section 5 alone: JSON to --out, the section's markdown table to stdout."""
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="where the JSON goes")
    ap.add_argument("--batches", default="32,128", help="CNN batch sizes (default 32,128)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--redis-server", default=shutil.which("redis-server"), help="redis-server for the store part")
    args = ap.parse_args(argv)
    cfg = SimpleNamespace(gpu_batches=[int(b) for b in args.batches.split(",")], gpu_repeats=args.repeats)
    stack = None
    if args.redis_server and os.access(args.redis_server, os.X_OK):
        try:
            stack = PrivateRedis(args.redis_server)
        except Exception as e:  # the store part is optional here
            print(f"no store part: {e}", file=sys.stderr)
    try:
        rep = run(stack, cfg, lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        if stack is not None:
            stack.stop()
    with open(args.out, "w") as f:
        json.dump({"gpu": rep}, f, indent=1)
    from bench.report import gpu_section

    print("\n\n".join(gpu_section(rep)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
