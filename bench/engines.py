"""Section 3: our numpy reference engine against torch, per op family, on the same compiled graphs.

Runs in a child process started with OMP/OPENBLAS/MKL threads = 1 (set before numpy and torch load)
and torch.set_num_threads(1), so both engines get exactly one CPU thread.

    python -m bench.engines '{"batches": [1, 8, 32], "repeats": 7}'   # prints JSON
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _ms(fn: Any, arg: Any) -> float:
    t0 = time.perf_counter()
    fn(arg)
    return (time.perf_counter() - t0) * 1e3


def child(batches: list[int], repeats: int, families: list[str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from bench import graphs
    from bench.scale import bare_torch
    from bench.stats import ratio, summary
    from services.compiler import compile_spec
    from services.engines.reference import run_reference
    from services.engines.torch_engine import run_torch
    from services.materialize import materialize
    from shared.spec import TraceSpec

    rows = []
    for fam in families:
        for b in batches:
            graph = compile_spec(TraceSpec.model_validate(graphs.op_family(fam, b)))
            materialize(graph)
            # interleave the engines, one call each per round, so that drift hits both alike
            t_ms: list[float] = []
            r_ms: list[float] = []
            bare_ms: list[float] = []
            run_torch(graph), run_reference(graph), bare_torch(graph)  # warm-up
            for _ in range(repeats):
                t_ms.append(_ms(run_torch, graph))
                r_ms.append(_ms(run_reference, graph))
                bare_ms.append(bare_torch(graph))
            t, r, bt = summary(t_ms), summary(r_ms), summary(bare_ms)
            rows.append({
                "family": fam, "batch": b, "nodes": len(graph.nodes), "torch_ms": t, "reference_ms": r,
                "bare_torch_ms": bt, "reference_over_torch": ratio(r, t), "reference_over_bare_torch": ratio(r, bt),
            })
    return {
        "threads": {"torch": torch.get_num_threads(), **{k: os.environ.get(k) for k in THREAD_VARS}},
        "rows": rows,
    }


def run(cfg: Any, log: Any) -> dict[str, Any]:
    from bench.graphs import FAMILIES
    from bench.stack import ROOT

    env = dict(os.environ)
    env.update({k: "1" for k in THREAD_VARS})
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    arg = json.dumps({"batches": cfg.family_batches, "repeats": cfg.family_repeats, "families": list(FAMILIES)})
    log(f"  {len(FAMILIES)} families x batches {cfg.family_batches} x{cfg.family_repeats}, single-threaded child")
    p = subprocess.run([sys.executable, "-m", "bench.engines", arg], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"bench.engines failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    a = json.loads(sys.argv[1])
    print(json.dumps(child(a["batches"], a["repeats"], a["families"])))
