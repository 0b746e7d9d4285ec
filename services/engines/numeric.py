"""Central finite differences in float64 of L = <output, grad_output>, for sampled leaf elements."""

from __future__ import annotations

import time

import numpy as np

from services.engines import EngineRun
from services.engines.reference import forward
from services.ir import Graph


def _feeds_output(graph: Graph) -> set[str]:
    """Names the output depends on; other leaves get no gradient (None, as torch leaves them)."""
    need = {graph.output}
    for node in reversed(graph.nodes):
        if node.name in need:
            flags = node.op.differentiable or (True,) * len(node.inputs)
            need.update(i for i, diff in zip(node.inputs, flags, strict=False) if isinstance(i, str) and diff)
    return need


def run_numeric(graph: Graph, eps: float = 1e-6, max_elements_per_leaf: int = 32, seed: int = 0) -> EngineRun:
    """Leaf grads (NaN where an element was not sampled), like torch.autograd.gradcheck's numerical side."""
    t0 = time.perf_counter()
    base = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in graph.leaf_values().items()}
    go = graph.grad_output.astype(np.float64) if graph.grad_output is not None else None
    rng = np.random.Generator(np.random.PCG64(seed))

    def loss(vals: dict[str, np.ndarray]) -> float:
        y = forward(graph, vals, float64=True)[graph.output].astype(np.float64)
        return float(np.sum(y * go)) if go is not None else float(np.sum(y))

    run = EngineRun("numeric")
    need = _feeds_output(graph)
    for name, leaf in graph.leaves.items():
        if not leaf.requires_grad or name not in need:
            continue
        x = base[name].copy()
        grad = np.full(x.shape, np.nan)
        picks = np.arange(x.size) if x.size <= max_elements_per_leaf else rng.choice(x.size, max_elements_per_leaf, replace=False)
        flat, gflat = x.reshape(-1), grad.reshape(-1)
        vals = dict(base)
        vals[name] = x
        for k in picks:
            orig = flat[k]
            flat[k] = orig + eps
            hi = loss(vals)
            flat[k] = orig - eps
            lo = loss(vals)
            flat[k] = orig
            gflat[k] = (hi - lo) / (2 * eps)
        run.grads[name] = grad
    run.seconds = time.perf_counter() - t0
    return run
