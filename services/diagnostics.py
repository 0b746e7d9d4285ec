"""What people debugging a trace ask first: where did the first NaN or inf come from (forward and backward),
and how healthy is each parameter's gradient (vanishing, exploding). Computed from one engine's run."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.engines import EngineRun
from services.ir import Graph

MAX_ANOMALIES = 100
VANISHING = 1e-7
"""A gradient vanishes when every |grad| is below this fraction of the value's scale."""
EXPLODING = 1e4
"""A gradient explodes when an element is non-finite or above this in magnitude."""


def nonfinite_flags(arrays: list[np.ndarray | None]) -> np.ndarray:
    """Which arrays hold a non-finite float: one vectorised pass over all of them, not one call per tensor."""
    flags = np.zeros(len(arrays), dtype=bool)
    idx = [i for i, a in enumerate(arrays) if a is not None and a.dtype.kind == "f" and a.size]
    if idx:
        sizes = np.array([arrays[i].size for i in idx])  # type: ignore[union-attr]
        flat = np.concatenate([arrays[i].ravel() for i in idx])  # type: ignore[union-attr]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        flags[idx] = np.logical_or.reduceat(~np.isfinite(flat), starts)
    return flags


def node_flags(graph: Graph, run: EngineRun) -> tuple[np.ndarray, np.ndarray]:
    """Which nodes (graph.names() order) have a non-finite value, and which a non-finite grad: computed once per
    trace, for the anomalies and the result table's `nonfinite` column."""
    names = graph.names()
    values, grads = run.values, run.grads
    return nonfinite_flags([values.get(n) for n in names]), nonfinite_flags([grads.get(n) for n in names])


def _first(a: np.ndarray) -> tuple[int, ...]:
    """Index of the first non-finite element."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(~np.isfinite(a.ravel()))), a.shape))


def _at(x: np.ndarray, out_shape: tuple[int, ...], index: tuple[int, ...]) -> float | None:
    """x's element that lines up with out[index] under broadcasting, or None if x does not broadcast to out."""
    if x.ndim > len(out_shape) or any(s not in (1, o) for s, o in zip(x.shape[::-1], out_shape[::-1], strict=False)):
        return None
    sub = index[len(index) - x.ndim :] if x.ndim else ()
    return float(x[tuple(0 if s == 1 else i for s, i in zip(x.shape, sub, strict=True))])


def _fmt(v: float | None) -> str:
    """A number as torch prints it (inf, -inf, nan)."""
    return "?" if v is None else f"{v:.6g}"


def anomalies(graph: Graph, run: EngineRun, flags: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Forward origins in topological order, then backward origins from the output down, as Anomaly dicts
    (`flags`: node_flags of the run, when already computed). Where everything is finite, no per-node loop runs."""
    values, grads = run.values, run.grads
    names = graph.names()
    value_flags, grad_flags = flags if flags is not None else node_flags(graph, run)
    out: list[dict[str, Any]] = []

    def add(phase: str, node: str, op: str, a: np.ndarray, message: str, **extra: Any) -> None:
        if len(out) < MAX_ANOMALIES:
            idx = _first(a)
            count = int((~np.isfinite(a)).sum())
            out.append({"phase": phase, "node": node, "op": op, "index": list(idx), "value": float(a[idx]),
                        "count": count, "message": message.format(at=_index_text(node, idx), v=_fmt(float(a[idx]))), **extra})

    if value_flags.any():
        bad_value = dict(zip(names, value_flags.tolist(), strict=True))
        for name, leaf in graph.leaves.items():
            if bad_value[name]:
                add("forward", name, leaf.kind, values[name], "the input {at} is {v}")
        for node in graph.nodes:
            ins = [i for i in node.inputs if isinstance(i, str)]
            if not bad_value[node.name] or any(bad_value[i] for i in ins):
                continue
            y = values[node.name]
            idx = _first(y)
            at = {str(i): (float(i) if not isinstance(i, str) else _at(values[i], y.shape, idx)) for i in node.inputs}
            shown = ", ".join(f"{_index_text(k, idx) if k in values else k} = {_fmt(v)}" for k, v in at.items() if v is not None)
            add("forward", node.name, node.op.name, y, f"{node.op.name} gives {{v}} at {{at}}" + (f": {shown}" if shown else ""),
                inputs=at)

    edges = run.edges
    out_grad = grads.get(graph.output)
    if out_grad is not None and nonfinite_flags([out_grad])[0]:
        add("backward", graph.output, "grad_output", out_grad, "the output's gradient (grad_output) is {v} at {at}")
    edge_flags = nonfinite_flags(list(edges.values()))
    if edge_flags.any():  # an origin is a non-finite edge gradient into a node whose own grad is finite
        bad_edge = dict(zip(list(edges), edge_flags.tolist(), strict=True))
        bad_grad = dict(zip(names, grad_flags.tolist(), strict=True))
        for node in reversed(graph.nodes):
            if bad_grad[node.name]:
                continue
            for src in dict.fromkeys(i for i in node.inputs if isinstance(i, str)):
                g = edges.get((src, node.name))
                if g is not None and bad_edge.get((src, node.name)):
                    v = values.get(src)
                    idx = _first(g)
                    shown = f": {_index_text(src, idx)} = {_fmt(float(v[idx]))}" if v is not None and v.shape == g.shape else ""
                    add("backward", src, node.op.name, g, f"the backward of {node.op.name} ({node.name}) gives {src} a gradient "
                        f"of {{v}} at {{at}}{shown}", via=node.name)
    return out


def _index_text(name: str, idx: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, idx))}]" if idx else name


def health(graph: Graph, run: EngineRun) -> dict[str, dict[str, Any]]:
    """GradHealth dicts for every leaf (input or parameter) that has a gradient."""
    out: dict[str, dict[str, Any]] = {}
    for name in graph.leaves:
        g, v = run.grads.get(name), run.values.get(name)
        if g is None or v is None:
            continue
        g64, v64 = g.astype(np.float64), v.astype(np.float64)
        with np.errstate(all="ignore"):
            gn, vn = float(np.linalg.norm(g64.ravel())), float(np.linalg.norm(v64.ravel()))
            max_abs = float(np.abs(g64).max()) if g.size else 0.0
            scale = float(np.abs(v64).max()) if v.size and np.isfinite(v64).all() and np.abs(v64).max() > 0 else 1.0
        finite = bool(np.isfinite(g64).all())
        out[name] = {
            "grad_norm": gn, "max_abs": max_abs, "ratio": gn / vn if vn > 0 else None,
            "vanishing": finite and max_abs < VANISHING * scale, "exploding": not finite or max_abs > EXPLODING,
        }
    return out
