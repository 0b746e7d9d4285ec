"""Run a Graph in PyTorch: retain every grad, and hook every grad_fn to see the gradient on each edge."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from services.engines import Edge, EngineRun, NodeMeta
from services.ir import Graph


def to_host(tensors: list[Any], batched: bool) -> list[np.ndarray]:
    """Tensors as numpy arrays. On a GPU (`batched`), one copy per dtype: the tensors are packed
    into one flat device buffer and copied once into pinned host memory, instead of one small
    synchronising copy per tensor, which dominates the cost of a trace on a GPU."""
    import torch

    if not batched:  # on the CPU: views of the same memory (a tensor that needs no grad has no detach to make)
        return [(t.detach() if t.requires_grad else t).numpy() for t in tensors]
    out: list[np.ndarray | None] = [None] * len(tensors)
    by_dtype: dict[Any, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for dtype, idx in by_dtype.items():
        flat = torch.cat([tensors[i].detach().reshape(-1) for i in idx])
        host = torch.empty(flat.shape, dtype=dtype, pin_memory=flat.is_cuda)
        host.copy_(flat, non_blocking=flat.is_cuda)
        if flat.is_cuda:
            torch.cuda.current_stream().synchronize()
        arr = host.numpy()
        pos = 0
        for i in idx:
            n = tensors[i].numel()
            out[i] = arr[pos : pos + n].reshape(tuple(tensors[i].shape))
            pos += n
    return out  # type: ignore[return-value]


def run_torch(graph: Graph) -> EngineRun:
    """Forward and backward in torch on graph.device; torch is imported here, not at module load."""
    import torch

    t0 = time.perf_counter()
    if graph.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but this worker has no CUDA device (torch.cuda.is_available() is False)")
    dev = torch.device(graph.device)
    tensors: dict[str, Any] = {}
    leaf_of: dict[int, str] = {}
    values = graph.leaf_values()
    for leaf in graph.leaves.values():
        t = torch.from_numpy(np.array(values[leaf.name])).to(dev)
        t.requires_grad_(leaf.requires_grad)
        tensors[leaf.name] = t
        leaf_of[id(t)] = leaf.name
    owner: dict[Any, str] = {}
    for node in graph.nodes:
        xs = [tensors[i] if isinstance(i, str) else i for i in node.inputs]
        out = node.op.torch(torch, xs, node.args)
        if any(out is x for x in xs):
            out = out.view_as(out)  # an op that returned its input unchanged still gets its own node
        if out.requires_grad:
            out.retain_grad()
            owner[out.grad_fn] = node.name
        tensors[node.name] = out

    captured: dict[Any, tuple[Any, ...]] = {}
    hooked: set[Any] = set()

    def hook_all(fn: Any) -> None:
        stack = [fn]
        while stack:
            f = stack.pop()
            if f is None or f in hooked:
                continue
            hooked.add(f)
            f.register_hook(lambda gi, go, f=f: captured.__setitem__(f, gi))
            stack.extend(nf for nf, _ in f.next_functions)

    out = tensors[graph.output]
    hook_all(out.grad_fn)
    grad_output = None if graph.grad_output is None else torch.from_numpy(np.array(graph.grad_output)).to(dev)
    out.backward(grad_output)
    if dev.type == "cuda":
        torch.cuda.synchronize()

    run = EngineRun("torch")

    def target(f: Any) -> str | None:
        """The graph node a next_functions entry leads to, looking through torch-internal functions."""
        seen = 0
        while f is not None and seen < 64:
            if f in owner:
                return owner[f]
            if type(f).__name__ == "AccumulateGrad":
                return leaf_of.get(id(f.variable))
            nexts = [nf for nf, _ in f.next_functions if nf is not None]
            f = nexts[0] if nexts else None
            seen += 1
        return None

    def flow(f: Any, g: Any, dst: str, edges: dict[Edge, Any]) -> None:
        if f is None or g is None:
            return
        if f in owner or type(f).__name__ == "AccumulateGrad":
            src = target(f)
            if src is not None:
                key = (src, dst)
                edges[key] = edges[key] + g if key in edges else g
            return
        for (nf, _), gk in zip(f.next_functions, captured.get(f, ()), strict=False):
            flow(nf, gk, dst, edges)

    edges: dict[Edge, Any] = {}
    for name, t in tensors.items():
        fn = t.grad_fn
        is_leaf = name in graph.leaves
        nexts = [(type(nf).__name__, target(nf)) if nf is not None else (None, None) for nf, _ in fn.next_functions] if fn is not None else []
        run.meta[name] = NodeMeta(type(fn).__name__ if fn is not None else None, nexts, is_leaf, bool(t.requires_grad))
        if fn is not None and fn in captured:
            for (nf, _), gk in zip(fn.next_functions, captured[fn], strict=False):
                flow(nf, gk, name, edges)
    names = list(tensors)
    with_grad = [k for k in names if tensors[k].grad is not None]
    edge_keys = list(edges)
    host = to_host(
        [tensors[k] for k in names] + [tensors[k].grad for k in with_grad] + [edges[k] for k in edge_keys],
        batched=dev.type == "cuda",
    )
    run.values = dict(zip(names, host[: len(names)], strict=True))
    run.grads = dict.fromkeys(names)
    run.grads.update(zip(with_grad, host[len(names) : len(names) + len(with_grad)], strict=True))
    run.edges = dict(zip(edge_keys, host[len(names) + len(with_grad) :], strict=True))
    run.seconds = time.perf_counter() - t0
    return run
