"""The backward graph of a TraceResult as JSON, DOT and SVG (drawn by graphviz)."""

from __future__ import annotations

from typing import Any

import graphviz
import numpy as np

from shared.result import GraphView, TensorData


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


def to_dot(view: GraphView) -> graphviz.Digraph:
    """Top to bottom in the gradient's direction: the output at the top, leaves at the bottom, each arrow from a
    node down to one of its inputs labelled with the gradient that flowed along it (dashed: no gradient flowed)."""
    dot = graphviz.Digraph("gradtrace", graph_attr={"rankdir": "TB", "fontname": "Helvetica"},
                           node_attr={"shape": "record", "fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    for n in view.nodes:
        title = f"{n.name}: {n.op}" + (f" ({n.grad_fn})" if n.grad_fn else "")
        label = "{" + " | ".join(_esc(x) for x in (title, f"value {short(n.value)}", f"grad {short(n.grad)}")) + "}"
        color = "#f4c7c3" if not n.ok else "lightblue" if not n.inputs else "gold" if n.name == view.output else "white"
        extra = {"color": "darkorange", "penwidth": "2"} if n.nonfinite else {}
        dot.node(_id(n.name), label=label, style="filled", fillcolor=color, **extra)
    drawn = set()
    for e in view.edges:
        dot.edge(_id(e.dst), _id(e.src), label=f"grad {_esc(short(e.grad, 16))}", color="firebrick", fontcolor="firebrick")
        drawn.add((e.src, e.dst))
    inside = {n.name for n in view.nodes}
    for n in view.nodes:
        for i in n.inputs:
            if isinstance(i, str) and i in inside and (i, n.name) not in drawn:
                dot.edge(_id(n.name), _id(i), style="dashed", color="gray")
                drawn.add((i, n.name))
    return dot


class GraphvizMissing(RuntimeError):
    """Graphviz's `dot` program, which draws the pictures, is not installed (DOT source and JSON need no program)."""

    def __init__(self) -> None:
        super().__init__("Graphviz's `dot` is not installed, so no picture can be drawn: install it (Debian/Ubuntu: "
                         "apt-get install graphviz; macOS: brew install graphviz); DOT and JSON work without it")


def render(view: GraphView, fmt: str) -> bytes:
    """'dot' source or a picture ('svg', 'png') rendered by the graphviz binary (GraphvizMissing without it)."""
    d = to_dot(view)
    if fmt == "dot":
        return d.source.encode()
    try:
        return d.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphvizMissing() from None


def _id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else f"_{ord(c)}_" for c in name)


def _esc(text: str) -> str:
    for c in "\\{}|<>\"":
        text = text.replace(c, "\\" + c)
    return text
