"""Build the JSON TraceResult and the table of full arrays from the engines' runs."""

from __future__ import annotations

import numpy as np

from services.compare import PairErrors
from services.engines import EngineRun
from services.ir import Graph
from shared.codec import encode
from shared.result import (
    Comparison,
    EdgeResult,
    EngineTensors,
    NextFunction,
    NodeResult,
    ParameterResult,
    TensorData,
    TraceResult,
)


def array_key(engine: str, field: str, name: str) -> str:
    """Key of a full array in Trace.arrays and in the store: 'torch/grad/fx'."""
    return f"{engine}/{field}/{name}"


def collect_arrays(runs: list[EngineRun]) -> dict[str, np.ndarray]:
    """Every value and grad each engine produced, by array_key."""
    arrays: dict[str, np.ndarray] = {}
    for run in runs:
        for name, v in run.values.items():
            arrays[array_key(run.engine, "value", name)] = v
        for name, g in run.grads.items():
            if g is not None:
                arrays[array_key(run.engine, "grad", name)] = g
    return arrays


def assemble(
    graph: Graph, runs: list[EngineRun], comparison: Comparison, pairs: list[PairErrors], inline_limit: int
) -> TraceResult:
    """The TraceResult: torch's numbers first when torch ran, each other engine beside them."""
    by = {r.engine: r for r in runs}
    primary = runs[0]

    def enc(a: np.ndarray | None) -> TensorData | None:
        return None if a is None else encode(a, inline_limit)

    errors: dict[str, dict[str, object]] = {}
    for p in pairs:
        for key, stat in p.stats.items():
            field, _, name = key.partition(":")
            errors.setdefault(name, {})[f"{field}:{p.name}"] = stat

    nodes: dict[str, NodeResult] = {}
    ops = {n.name: n for n in graph.nodes}
    for name in graph.names():
        node = ops.get(name)
        leaf = graph.leaves.get(name)
        meta = by["torch"].meta.get(name) if "torch" in by else None
        value = primary.values.get(name)
        nodes[name] = NodeResult(
            op=node.op.name if node else ("parameter" if leaf and leaf.kind == "parameter" else "input"),
            expr=node.expr if node else (leaf.expr or leaf.init if leaf else ""),
            inputs=list(node.inputs) if node else [],
            shape=list(node.shape if node else leaf.value.shape),  # type: ignore[union-attr]
            dtype=node.dtype if node else str(leaf.value.dtype),  # type: ignore[union-attr]
            is_leaf=leaf is not None,
            requires_grad=node.requires_grad if node else bool(leaf and leaf.requires_grad),
            value=enc(value),
            grad=enc(primary.grads.get(name)),
            grad_fn=meta.grad_fn if meta else None,
            next_functions=[NextFunction(grad_fn=f, node=n) for f, n in meta.next_functions] if meta else [],
            reference=(
                EngineTensors(value=enc(by["reference"].values.get(name)), grad=enc(by["reference"].grads.get(name)))
                if "reference" in by and primary.engine != "reference" else None
            ),
            numeric=EngineTensors(grad=enc(by["numeric"].grads.get(name))) if name in by.get("numeric", EngineRun("")).grads else None,
            error=errors.get(name, {}),  # type: ignore[arg-type]
        )

    edges = []
    ref_edges = by["reference"].edges if "reference" in by and primary.engine != "reference" else {}
    for (src, dst), g in primary.edges.items():
        stat = errors.get(f"{src}->{dst}", {})
        edges.append(
            EdgeResult(
                src=src, dst=dst, grad=enc(g), reference=enc(ref_edges.get((src, dst))),
                error=next(iter(stat.values()), None),  # type: ignore[arg-type]
            )
        )

    params = {
        name: ParameterResult(
            shape=list(leaf.value.shape), init=leaf.init,
            value=encode(leaf.value, inline_limit), grad=enc(primary.grads.get(name)),
        )
        for name, leaf in graph.leaves.items()
        if leaf.kind == "parameter"
    }
    return TraceResult(
        output=graph.output, dtype=graph.dtype, device=graph.device, engines=[r.engine for r in runs],
        nodes=nodes, edges=edges, parameters=params, comparison=comparison,
    )
