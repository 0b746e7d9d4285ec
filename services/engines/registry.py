"""The engines, by name: adding an engine is one class here and its name in the contract
(shared.spec.Engine). trace, compare, assemble and the store handle every engine alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from services.engines import EngineRun
from services.engines.numeric import run_numeric
from services.engines.reference import run_reference
from services.ir import Graph

Tick = Callable[[float], None]
"""Progress within an engine (fraction done); may raise to cancel."""


class Engine:
    """One way to compute a graph's values and gradients."""

    name: ClassVar[str]
    exact: ClassVar[bool] = True
    """Analytic (compared with tight tolerances) or approximate (finite differences: looser ones)."""
    fields: ClassVar[tuple[str, ...]] = ("value", "grad")
    """What it computes for each node (finite differences: leaf grads only)."""

    def run(self, graph: Graph, tick: Tick | None = None) -> EngineRun:
        """Forward and backward over a materialized graph."""
        raise NotImplementedError


class TorchEngine(Engine):
    """PyTorch itself: every grad captured (what retain_grad() would keep), grad_fns hooked where an edge needs it
    (imports torch on first use)."""

    name = "torch"

    def run(self, graph: Graph, tick: Tick | None = None) -> EngineRun:
        from services.engines.torch_engine import run_torch

        return run_torch(graph)


class ReferenceEngine(Engine):
    """Our own numpy autograd: an independent second opinion that never imports torch."""

    name = "reference"

    def run(self, graph: Graph, tick: Tick | None = None) -> EngineRun:
        return run_reference(graph)


class NumericEngine(Engine):
    """Central finite differences in float64 for sampled leaf elements."""

    name = "numeric"
    exact = False
    fields = ("grad",)

    def run(self, graph: Graph, tick: Tick | None = None) -> EngineRun:
        opts = graph.numeric
        return run_numeric(graph, opts.eps, opts.max_elements_per_leaf, opts.seed, tick)


ENGINES: dict[str, Engine] = {e.name: e for e in (TorchEngine(), ReferenceEngine(), NumericEngine())}
"""In the order they run (and are reported): the first that runs is the primary engine."""


def in_order(names: list[str]) -> list[str]:
    """The requested engines in registry order."""
    return [n for n in ENGINES if n in names]
