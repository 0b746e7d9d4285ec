"""The whole trace in one call: compile, run the engines, compare, assemble."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from services.assemble import assemble, collect_arrays
from services.compare import compare_runs
from services.compiler import Limits, compile_spec
from services.engines import EngineRun
from services.engines.numeric import run_numeric
from services.engines.reference import run_reference
from services.ir import Graph
from services.materialize import materialize
from shared.codec import DEFAULT_INLINE_LIMIT
from shared.result import TraceResult
from shared.spec import TraceSpec

Progress = Callable[[str, float], None]
"""Called as progress(step, fraction_done) between steps; may raise to cancel the trace."""


@dataclass
class Trace:
    """A finished trace: the JSON result, and every full array keyed 'engine/field/name'."""

    graph: Graph
    result: TraceResult
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def run_engine(graph: Graph, engine: str, tick: Callable[[float], None] | None = None) -> EngineRun:
    """Run one engine on a materialized graph; `tick` follows the numeric engine's progress."""
    if engine == "torch":
        from services.engines.torch_engine import run_torch

        return run_torch(graph)
    if engine == "reference":
        return run_reference(graph)
    opts = graph.numeric
    return run_numeric(graph, opts.eps, opts.max_elements_per_leaf, opts.seed, tick)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic GC: a trace allocates many small acyclic objects, and the collector's
    repeated passes over them cost more than the trace itself on large graphs."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def trace(
    spec: TraceSpec | Graph,
    limits: Limits | None = None,
    inline_limit: int = DEFAULT_INLINE_LIMIT,
    progress: Progress | None = None,
) -> Trace:
    """Compile (unless given a Graph), run every engine of the spec, compare and assemble."""
    with paused_gc():
        return _trace(spec, limits, inline_limit, progress)


def _trace(spec: TraceSpec | Graph, limits: Limits | None, inline_limit: int, progress: Progress | None) -> Trace:
    step = progress or (lambda name, frac: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    graph = spec if isinstance(spec, Graph) else compile_spec(spec, limits)
    timings["compile"] = (time.perf_counter() - t0) * 1e3
    timings["materialize"] = materialize(graph) * 1e3
    order = sorted(graph.engines, key=["torch", "reference", "numeric"].index)
    runs: list[EngineRun] = []
    for k, engine in enumerate(order):
        step(engine, k / (len(order) + 1))
        run = run_engine(graph, engine, lambda f, k=k, e=engine: step(e, (k + f) / (len(order) + 1)))
        timings[engine] = run.seconds * 1e3
        runs.append(run)
    step("compare", len(order) / (len(order) + 1))
    t1 = time.perf_counter()
    comparison, pairs = compare_runs(runs, graph.dtype)
    timings["compare"] = (time.perf_counter() - t1) * 1e3
    t2 = time.perf_counter()
    result = assemble(graph, runs, comparison, pairs, inline_limit)
    timings["assemble"] = (time.perf_counter() - t2) * 1e3
    result.timings_ms = {k: round(v, 3) for k, v in timings.items()}
    return Trace(graph=graph, result=result, arrays=collect_arrays(runs))
