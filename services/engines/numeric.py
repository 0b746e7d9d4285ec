"""Central finite differences in float64 of L = <output, grad_output>, for sampled leaf elements."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from services.engines import EngineRun
from services.engines.reference import forward
from services.ir import Graph, Node


def _feeds_output(graph: Graph) -> set[str]:
    """Names the output depends on; other leaves get no gradient (None, as torch leaves them)."""
    need = {graph.output}
    for node in reversed(graph.nodes):
        if node.name in need:
            flags = node.op.differentiable or (True,) * len(node.inputs)
            need.update(i for i, diff in zip(node.inputs, flags, strict=False) if isinstance(i, str) and diff)
    return need


def downstream(graph: Graph, leaf: str) -> list[Node]:
    """The nodes a perturbation of `leaf` changes along the paths gradients take, in graph order: a detached value
    (x.detach(), x.data, a no_grad computation) or an index (argmax) is held fixed, as torch's derivative holds it."""
    changed = {leaf}
    out = []
    for node in graph.nodes:
        if not node.requires_grad:
            continue
        flags = node.op.differentiable
        if any(isinstance(i, str) and i in changed and (flags is None or (k < len(flags) and flags[k]))
               for k, i in enumerate(node.inputs)):
            changed.add(node.name)
            out.append(node)
    return out


CONE_WORK = 5_000_000
"""Leaves x nodes up to which the nodes each leaf reaches are found (one pass over the graph per leaf)."""

Tick = Callable[[float], None]
"""Called with the fraction of the engine's work done; may raise to cancel (checked every few evaluations)."""


def run_numeric(
    graph: Graph, eps: float = 1e-6, max_elements_per_leaf: int = 32, seed: int = 0, tick: Tick | None = None
) -> EngineRun:
    """Leaf grads at sampled elements (`checked` marks them; NaN elsewhere), like torch.autograd.gradcheck's
    numerical side. `tick` reports progress between evaluations, so a long run can be followed and cancelled."""
    t0 = time.perf_counter()
    base = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in graph.leaf_values().items()}
    go = graph.grad_output.astype(np.float64) if graph.grad_output is not None else None
    rng = np.random.Generator(np.random.PCG64(seed))

    def loss(vals: dict[str, np.ndarray], nodes: list[Node] | None) -> float:
        y = forward(graph, vals, float64=True, known=known, nodes=nodes)[graph.output].astype(np.float64)
        return float(np.sum(y * go)) if go is not None else float(np.sum(y))

    run = EngineRun("numeric")
    need = _feeds_output(graph)
    leaves = [k for k, leaf in graph.leaves.items() if leaf.requires_grad and k in need]
    # Each evaluation recomputes only the nodes downstream of the leaf it perturbs, from one float64 pass at the
    # unperturbed point: the same numbers as a whole pass (the other nodes' inputs are unchanged), less work for
    # leaves near the output (a CNN's last layers). Past CONE_WORK, every evaluation is a pass over the nodes that
    # require grad: the others (detached values, no_grad results, indices) keep their values, as torch's derivative.
    cones = len(leaves) * len(graph.nodes) <= CONE_WORK
    known = forward(graph, base, float64=True)
    grad_nodes = [n for n in graph.nodes if n.requires_grad]
    picks = {
        k: np.arange(base[k].size) if base[k].size <= max_elements_per_leaf
        else np.sort(rng.choice(base[k].size, max_elements_per_leaf, replace=False))
        for k in leaves
    }
    total, done = max(1, sum(len(p) for p in picks.values())), 0
    for name in leaves:
        x = base[name].copy()
        grad = np.full(x.shape, np.nan)
        checked = np.zeros(x.shape, dtype=bool)
        flat, gflat, cflat = x.reshape(-1), grad.reshape(-1), checked.reshape(-1)
        vals = {name: x}
        nodes = downstream(graph, name) if cones else grad_nodes
        for k in picks[name]:
            if tick is not None:
                tick(done / total)
            orig = flat[k]
            flat[k] = orig + eps
            hi = loss(vals, nodes)
            flat[k] = orig - eps
            lo = loss(vals, nodes)
            flat[k] = orig
            gflat[k] = (hi - lo) / (2 * eps)
            cflat[k] = True
            done += 1
        run.grads[name] = grad
        run.checked[name] = checked
    run.seconds = time.perf_counter() - t0
    return run
