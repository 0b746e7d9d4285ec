"""The whole trace in one call: compile, run the engines, compare, assemble."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from services.assemble import ResultTable, build_table, full_result_json
from services.compare import compare_runs
from services.compiler import Limits, compile_spec
from services.diagnostics import anomalies, health, node_flags
from services.engines import EngineRun
from services.engines.registry import ENGINES, in_order
from services.ir import Graph
from services.materialize import materialize
from shared.codec import DEFAULT_INLINE_LIMIT
from shared.result import TraceResult
from shared.spec import TraceSpec

Progress = Callable[[str, float], None]
"""Called as progress(step, fraction_done) between steps; may raise to cancel the trace."""


@dataclass
class Trace:
    """A finished trace: its columns (the table every job stores), every array by array_key, and the whole
    TraceResult when the graph is small enough to want one (`full_nodes`)."""

    graph: Graph | None
    """None once let go: the worker drops it before storing, the table and arrays hold all a stored job needs."""
    table: ResultTable
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    result_json: str | None = None

    def fetch(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The arrays these keys name (views read tensors through this, or through the store)."""
        return {k: self.arrays[k] for k in keys if k in self.arrays}

    @cached_property
    def result(self) -> TraceResult | None:
        """The whole TraceResult as a model (parsed from result_json on first use; the worker never needs it)."""
        return TraceResult.model_validate_json(self.result_json) if self.result_json is not None else None


def run_engine(graph: Graph, engine: str, tick: Callable[[float], None] | None = None) -> EngineRun:
    """Run one engine on a materialized graph; `tick` follows its progress."""
    return ENGINES[engine].run(graph, tick)


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
    full_nodes: int | None = None,
) -> Trace:
    """Compile (unless given a Graph), run every engine of the spec, compare, and build the result: its table
    always, the whole TraceResult when the graph has at most `full_nodes` nodes (None: always). The spec is let
    go once compiled: a caller that passes it without keeping it frees it for the engines (~0.5 GB at 1M nodes)."""
    with paused_gc():
        t0 = time.perf_counter()
        graph = spec if isinstance(spec, Graph) else compile_spec(spec, limits)
        compile_ms = (time.perf_counter() - t0) * 1e3
        del spec
        return _trace(graph, compile_ms, inline_limit, progress, full_nodes)


def _trace(graph: Graph, compile_ms: float, inline_limit: int, progress: Progress | None, full_nodes: int | None) -> Trace:
    step = progress or (lambda name, frac: None)
    timings: dict[str, float] = {"compile": compile_ms}
    timings["materialize"] = materialize(graph) * 1e3
    order = in_order(graph.engines)
    runs: list[EngineRun] = []
    for k, engine in enumerate(order):
        step(engine, k / (len(order) + 1))
        run = run_engine(graph, engine, lambda f, k=k, e=engine: step(e, (k + f) / (len(order) + 1)))
        timings[engine] = run.seconds * 1e3
        runs.append(run)
    step("compare", len(order) / (len(order) + 1))
    t1 = time.perf_counter()
    comparison, pairs = compare_runs(runs, graph.dtype, {r.engine: ENGINES[r.engine].exact for r in runs})
    timings["compare"] = (time.perf_counter() - t1) * 1e3
    t2 = time.perf_counter()
    flags = node_flags(graph, runs[0])
    summary = {
        "output": graph.output, "dtype": graph.dtype, "device": graph.device, "engines": [r.engine for r in runs],
        "counts": {"nodes": len(graph.leaves) + len(graph.nodes), "leaves": len(graph.leaves),
                   "parameters": sum(leaf.kind == "parameter" for leaf in graph.leaves.values()),
                   "edges": len(runs[0].edges)},
        "comparison": comparison.model_dump(), "anomalies": anomalies(graph, runs[0], flags), "health": health(graph, runs[0]),
        "notes": graph.notes, "aliases": graph.aliases, "timings_ms": timings,
    }
    table, arrays = build_table(graph, runs, pairs, summary, inline_limit, flags)
    done = Trace(graph=graph, table=table, arrays=arrays)
    timings["assemble"] = (time.perf_counter() - t2) * 1e3
    summary["timings_ms"] = {k: round(v, 3) for k, v in timings.items()}
    if full_nodes is None or len(table.names) <= full_nodes:
        done.result_json = full_result_json(table, done.fetch)
    return done
