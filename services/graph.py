"""The backward graph of a TraceResult as JSON, DOT and SVG (drawn by graphviz)."""

from __future__ import annotations

from typing import Any

import graphviz
import numpy as np

from shared.result import GraphEdge, GraphNode, GraphView, TensorData, TraceResult


def as_array(td: TensorData) -> np.ndarray:
    """Inline tensor data as an array of its dtype (elements not computed, null in JSON, as NaN)."""
    if td.dtype.startswith(("int", "uint", "bool")):
        return np.array(td.data, dtype=td.dtype).reshape(td.shape)
    data = td.data if td.checked is None else _none_to_nan(td.data)
    return np.array(data, dtype=np.float64).reshape(td.shape).astype(td.dtype)


def _none_to_nan(data: Any) -> Any:
    if isinstance(data, list):
        return [_none_to_nan(x) for x in data]
    return float("nan") if data is None else data


def short(td: TensorData | None, width: int = 24) -> str:
    """A tensor in a few characters, numbers printed as torch prints them (inf, -inf, nan; ints as ints):
    the number, a short list, or shape and range."""
    if td is None:
        return "-"
    if td.data is not None:
        if not td.shape:
            return f"{td.data:.6g}" if isinstance(td.data, float) else str(td.data)
        text = np.array2string(as_array(td), precision=4, separator=", ", threshold=12, edgeitems=2, max_line_width=10**6)
        text = " ".join(text.split())
        return text if len(text) <= width else f"{td.shape} {text[: width - 3]}..."
    s = td.summary
    return f"{td.shape} [{s.min:.3g}, {s.max:.3g}]" if s and s.min is not None and s.max is not None else str(td.shape)


def graph_json(result: TraceResult) -> GraphView:
    """Nodes and edges with the numbers on them, for programs that draw their own pictures."""
    return GraphView(
        output=result.output,
        nodes=[GraphNode(name=k, op=n.op, expr=n.expr, shape=n.shape, grad_fn=n.grad_fn, is_leaf=n.is_leaf,
                         value=n.value, grad=n.grad) for k, n in result.nodes.items()],
        edges=[GraphEdge(src=e.src, dst=e.dst, grad=e.grad) for e in result.edges],
    )


def to_dot(result: TraceResult) -> graphviz.Digraph:
    """Forward edges left to right, each labelled with the gradient that flowed back along it."""
    dot = graphviz.Digraph("gradtrace", graph_attr={"rankdir": "LR", "fontname": "Helvetica"},
                           node_attr={"shape": "record", "fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    for name, n in result.nodes.items():
        title = f"{name}: {n.op}" + (f" ({n.grad_fn})" if n.grad_fn else "")
        label = "{" + " | ".join(_esc(x) for x in (title, f"value {short(n.value)}", f"grad {short(n.grad)}")) + "}"
        color = "lightblue" if n.is_leaf else ("gold" if name == result.output else "white")
        dot.node(_id(name), label=label, style="filled", fillcolor=color)
    drawn = set()
    for e in result.edges:
        dot.edge(_id(e.src), _id(e.dst), label=f"grad {_esc(short(e.grad, 16))}", color="firebrick", fontcolor="firebrick")
        drawn.add((e.src, e.dst))
    for name, n in result.nodes.items():
        for i in n.inputs:
            if isinstance(i, str) and (i, name) not in drawn:
                dot.edge(_id(i), _id(name), style="dashed", color="gray")
                drawn.add((i, name))
    return dot


def render(result: TraceResult, fmt: str) -> bytes:
    """'dot' source or a picture ('svg', 'png') rendered by the graphviz binary."""
    d = to_dot(result)
    if fmt == "dot":
        return d.source.encode()
    return d.pipe(format=fmt)


def _id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else f"_{ord(c)}_" for c in name)


def _esc(text: str) -> str:
    for c in "\\{}|<>\"":
        text = text.replace(c, "\\" + c)
    return text
