"""Our own autograd in numpy, written from the math and importing no torch: forward in
topological order, then backward in reverse, accumulating into inputs shared by several nodes."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import numpy as np

from services.engines import EngineRun
from services.ir import Graph, Input, Node


def _arg(values: dict[str, np.ndarray], i: Input, dtype: str | np.dtype) -> np.ndarray:
    """A node input; a Python number takes a float node's dtype (as torch's scalars do) and stays as it is otherwise
    (`x > 0.5` on an int64 x compares with 0.5)."""
    if isinstance(i, str):
        return values[i]
    return np.asarray(i, dtype=dtype) if _is_float(dtype) else np.asarray(i)


_NUMPY = {name: np.dtype(name) for name in ("float32", "float64", "int64", "bool")}
"""A node's dtype as numpy's (each a singleton: compared by identity)."""


@lru_cache(maxsize=64)
def _is_float(dtype: str | np.dtype) -> bool:
    return np.dtype(dtype).kind == "f"


@lru_cache(maxsize=256)
def _promoted(dtypes: tuple[np.dtype, ...]) -> np.dtype:
    """numpy's promotion of these dtypes, cached: np.result_type costs microseconds a call, once per node that
    has a Python number among its inputs (every other node of the benchmark's scalar chains)."""
    return np.result_type(*dtypes)


def forward(
    graph: Graph, leaf_values: dict[str, np.ndarray] | None = None, float64: bool = False,
    saved: dict[str, Any] | None = None, known: dict[str, np.ndarray] | None = None, nodes: list[Node] | None = None,
) -> dict[str, np.ndarray]:
    """Every leaf and node value; `leaf_values` overrides leaves (finite differences use it, with `float64`:
    then casts between float dtypes keep float64, so that no step rounds to float32). With `saved`, what each
    op saves for its backward is kept there by node name. With `known` (values of an earlier pass) only `nodes`
    (in graph order) are computed again: those that depend on the leaves that changed."""
    values = dict(known) if known is not None else graph.leaf_values()
    if leaf_values:
        values.update(leaf_values)
    for node in graph.nodes if nodes is None else nodes:
        if float64 and node.op.name == "to" and str(node.dtype).startswith("float"):
            x = values[node.inputs[0]]  # type: ignore[index]
            values[node.name] = x if x.dtype.kind == "f" else x.astype(np.float64)  # an int64's .float(): float64 here
            continue
        if all(isinstance(i, str) for i in node.inputs):
            xs = [values[i] for i in node.inputs]  # type: ignore[index]
        else:  # Python numbers take the inputs' dtype
            dtype = _promoted(tuple(values[i].dtype for i in node.inputs if isinstance(i, str)))
            xs = [_arg(values, i, dtype) for i in node.inputs]
        if saved is None:
            out = node.op.forward(xs, node.args)
        else:
            out, keep = node.op.forward_saving(xs, node.args)
            if keep is not None:
                saved[node.name] = keep
        out = np.asarray(out)
        want = _NUMPY[node.dtype]
        if out.dtype is not want and not (float64 and want.kind == "f"):
            out = out.astype(want)  # torch's promotion, not numpy's: int64 * float32 is float32 (numpy: float64)
        values[node.name] = out
    return values


def run_reference(graph: Graph) -> EngineRun:
    """Forward, then backward from graph.output seeded with ones (or grad_output)."""
    t0 = time.perf_counter()
    run = EngineRun("reference")
    saved: dict[str, Any] = {}
    values = forward(graph, saved=saved)
    out = values[graph.output]
    grads: dict[str, np.ndarray] = {
        graph.output: graph.grad_output if graph.grad_output is not None else np.ones_like(out)
    }
    needs = {k: v.requires_grad for k, v in graph.leaves.items()} | {n.name: n.requires_grad for n in graph.nodes}
    for node in reversed(graph.nodes):
        g = grads.get(node.name)
        if g is None or not node.requires_grad:
            continue
        xs = [_arg(values, i, node.dtype) for i in node.inputs]
        wants = tuple(isinstance(i, str) and needs[i] for i in node.inputs)
        in_grads = node.op.backward_saved(g, values[node.name], xs, node.args, saved.pop(node.name, None), wants)
        for src, gi in zip(node.inputs, in_grads, strict=False):
            if not isinstance(src, str) or gi is None or not needs[src]:
                continue
            gi = np.asarray(gi, dtype=values[src].dtype)
            key = (src, node.name)
            run.edges[key] = run.edges[key] + gi if key in run.edges else gi
            grads[src] = grads[src] + gi if src in grads else gi
    run.values = values
    run.grads = {k: grads.get(k) for k in values}
    run.seconds = time.perf_counter() - t0
    return run
