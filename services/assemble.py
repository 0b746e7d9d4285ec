"""Build the JSON TraceResult and the table of full arrays from the engines' runs.

The result is built as plain dicts and validated once, which is much cheaper than
constructing thousands of small pydantic objects one by one."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.compare import PairErrors
from services.diagnostics import anomalies, health
from services.engines import EngineRun
from services.ir import Graph
from shared.codec import encode_dict
from shared.result import Comparison, TraceResult


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


def _errors_by_tensor(pairs: list[PairErrors]) -> dict[str, dict[str, dict[str, Any]]]:
    """{'x': {'grad:torch~reference': {max_abs, max_rel, ok}}, 'x->y': {...}} from every pair."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for p in pairs:
        abs_, rel, ok = p.max_abs.tolist(), p.max_rel.tolist(), p.ok.tolist()
        for i, key in enumerate(p.keys):
            field, _, name = key.partition(":")
            out.setdefault(name, {})[f"{field}:{p.name}"] = {"max_abs": abs_[i], "max_rel": rel[i], "ok": ok[i]}
    return out


def assemble(
    graph: Graph, runs: list[EngineRun], comparison: Comparison, pairs: list[PairErrors], inline_limit: int
) -> TraceResult:
    """The TraceResult: torch's numbers first when torch ran, each other engine beside them."""
    by = {r.engine: r for r in runs}
    primary = runs[0]
    ref = by.get("reference") if primary.engine != "reference" else None
    num = by.get("numeric") if primary.engine != "numeric" else None
    torch_meta = by["torch"].meta if "torch" in by else {}

    def enc(a: np.ndarray | None) -> dict[str, Any] | None:
        return None if a is None else encode_dict(a, inline_limit)

    errors = _errors_by_tensor(pairs)
    nodes: dict[str, dict[str, Any]] = {}
    for name, leaf in graph.leaves.items():
        nodes[name] = {
            "op": "parameter" if leaf.kind == "parameter" else "input", "expr": leaf.expr or leaf.init, "inputs": [],
            "shape": list(leaf.shape), "dtype": leaf.dtype, "is_leaf": True,
            "requires_grad": leaf.requires_grad,
        }
    for node in graph.nodes:
        nodes[node.name] = {
            "op": node.op.name, "expr": node.expr, "inputs": node.inputs, "shape": list(node.shape),
            "dtype": node.dtype, "is_leaf": False, "requires_grad": node.requires_grad,
        }
    for name, d in nodes.items():
        d["value"] = enc(primary.values.get(name))
        d["grad"] = enc(primary.grads.get(name))
        meta = torch_meta.get(name)
        if meta is not None:
            d["grad_fn"] = meta.grad_fn
            d["next_functions"] = [{"grad_fn": f, "node": n} for f, n in meta.next_functions]
        if ref is not None:
            d["reference"] = {"value": enc(ref.values.get(name)), "grad": enc(ref.grads.get(name))}
        if num is not None and name in num.grads:
            d["numeric"] = {"grad": encode_dict(num.grads[name], inline_limit, num.checked.get(name))}
        d["error"] = errors.get(name, {})

    edges = []
    for (src, dst), g in primary.edges.items():
        stat = errors.get(f"{src}->{dst}", {})
        edges.append({
            "src": src, "dst": dst, "grad": enc(g),
            "reference": enc(ref.edges.get((src, dst))) if ref is not None else None,
            "error": next(iter(stat.values()), None),
        })

    params = {
        name: {"shape": list(leaf.shape), "init": leaf.init, "value": enc(leaf.value),
               "grad": enc(primary.grads.get(name))}
        for name, leaf in graph.leaves.items()
        if leaf.kind == "parameter"
    }
    return TraceResult.model_validate({
        "output": graph.output, "dtype": graph.dtype, "device": graph.device, "engines": [r.engine for r in runs],
        "nodes": nodes, "edges": edges, "parameters": params, "comparison": comparison.model_dump(),
        "anomalies": anomalies(graph, primary), "health": health(graph, primary), "notes": graph.notes,
    })
