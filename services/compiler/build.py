"""Turn raw node descriptions into a checked Graph: ops, arity, arguments, order, shapes, limits."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from services.errors import ShapeError, SpecError
from services.ir import Graph, Input, Leaf, Node
from services.ops import get_op
from services.ops.base import NoArgs
from shared.settings import Settings

_NO_ARGS = NoArgs()


@dataclass
class RawNode:
    """A node as a spec form wrote it, with where it came from for error messages."""

    name: str
    op: str
    inputs: list[Input]
    args: dict[str, Any] = field(default_factory=dict)
    expr: str = ""
    line: int | None = None
    col: int | None = None
    loc: tuple[str | int, ...] = ()


@dataclass
class Limits:
    """Size limits a compiled graph must respect."""

    max_nodes: int = 200_000
    max_tensor_elements: int = 16_000_000
    max_total_elements: int = 64_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits configured in shared.settings.Settings."""
        return cls(settings.max_nodes, settings.max_tensor_elements, settings.max_total_elements)


def _err(raw: RawNode, msg: str) -> SpecError:
    return SpecError(msg, loc=raw.loc, node=raw.name, line=raw.line, col=raw.col)


def topo_order(raws: list[RawNode], known: set[str]) -> list[RawNode]:
    """Order nodes so each comes after its inputs (Kahn's algorithm); name unknowns and cycles."""
    by_name: dict[str, RawNode] = {}
    for r in raws:
        if r.name in by_name or r.name in known:
            raise _err(r, f"name '{r.name}' is defined twice")
        by_name[r.name] = r
    for r in raws:
        for i in r.inputs:
            if isinstance(i, str) and i not in by_name and i not in known:
                raise _err(r, f"unknown input '{i}'")
    indeg = {r.name: len({i for i in r.inputs if isinstance(i, str) and i in by_name}) for r in raws}
    users: dict[str, list[str]] = {}
    for r in raws:
        for i in {i for i in r.inputs if isinstance(i, str) and i in by_name}:
            users.setdefault(i, []).append(r.name)
    ready = deque(r.name for r in raws if indeg[r.name] == 0)
    order: list[RawNode] = []
    while ready:
        name = ready.popleft()
        order.append(by_name[name])
        for u in users.get(name, []):
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if len(order) != len(raws):
        stuck = sorted(n for n, d in indeg.items() if d > 0)
        raise _err(by_name[stuck[0]], f"the graph has a cycle through {stuck[:8]}")
    return order


def build_graph(
    leaves: dict[str, Leaf],
    raws: list[RawNode],
    output: str | None,
    grad_output: Any,
    limits: Limits,
    **graph_fields: Any,
) -> Graph:
    """Check every node against its op and infer shapes, then pick the output and its gradient."""
    if len(raws) > limits.max_nodes:
        raise SpecError(f"{len(raws)} nodes exceed the limit of {limits.max_nodes}")
    total = sum(leaf.value.size for leaf in leaves.values())
    order = topo_order(raws, set(leaves))
    shapes: dict[str, tuple[int, ...]] = {k: tuple(v.value.shape) for k, v in leaves.items()}
    dtypes: dict[str, str] = {k: str(v.value.dtype) for k, v in leaves.items()}
    grad: dict[str, bool] = {k: v.requires_grad for k, v in leaves.items()}
    ranges: dict[str, tuple[float, float]] = {
        k: (float(v.value.min()), float(v.value.max())) for k, v in leaves.items() if v.value.dtype.kind in "iub" and v.value.size
    }
    nodes: list[Node] = []
    for raw in order:
        op = get_op(raw.op)
        if op is None:
            raise _err(raw, f"unknown op '{raw.op}'")
        lo, hi = op.arity
        n = len(raw.inputs)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            raise _err(raw, f"{raw.op} takes {want} tensor inputs, got {n}")
        if not op.scalars:
            for k, i in enumerate(raw.inputs):
                if not isinstance(i, str):
                    slot = op.tensors[min(k, len(op.tensors) - 1)]
                    raise _err(raw, f"{raw.op}: '{slot}' (input {k}) must be a tensor, got the number {i:g}")
        try:
            args = _NO_ARGS if op.Args is NoArgs and not raw.args else op.Args.model_validate(raw.args)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise _err(raw, f"{raw.op}: argument '{where}': {first['msg']}") from None
        in_shapes = [shapes[i] if isinstance(i, str) else () for i in raw.inputs]
        in_dtypes = [dtypes[i] if isinstance(i, str) else "scalar" for i in raw.inputs]
        diff_flags = op.differentiable or (True,) * n
        for i, d, diff in zip(raw.inputs, in_dtypes, diff_flags, strict=False):
            if d == "int64" and diff:
                raise _err(raw, f"{raw.op}: input '{i}' is int64; this op needs floating point tensors")
        try:
            shape = tuple(op.shape(in_shapes, args))
            dtype = op.dtype(in_dtypes)
            op.check_ranges([ranges.get(i) if isinstance(i, str) else (i, i) for i in raw.inputs], in_shapes, args)
        except (ShapeError, ValueError) as e:
            shown = ", ".join(f"{i}: {list(s)}" if isinstance(i, str) else f"{i}" for i, s in zip(raw.inputs, in_shapes, strict=False))
            raise _err(raw, f"{e} (inputs {shown})") from None
        size = math.prod(shape)
        if size > limits.max_tensor_elements:
            raise _err(raw, f"output shape {list(shape)} has {size} elements, over the limit of {limits.max_tensor_elements}")
        total += size
        if total > limits.max_total_elements:
            raise _err(raw, f"the graph holds more than {limits.max_total_elements} elements in all")
        rg = any(isinstance(i, str) and grad[i] and diff for i, diff in zip(raw.inputs, diff_flags, strict=False))
        shapes[raw.name], dtypes[raw.name], grad[raw.name] = shape, dtype, rg
        nodes.append(Node(raw.name, op, list(raw.inputs), args, shape, dtype, rg, raw.expr, raw.line))

    if not nodes and not output:
        raise SpecError("the graph has no operations", loc=("program",) if not raws else ())
    out = output or nodes[-1].name
    if out not in shapes:
        raise SpecError(f"output '{out}' is not a node or input", loc=("output",))
    if not grad[out]:
        raise SpecError(f"output '{out}' does not depend on any input that requires grad", loc=("output",))
    go = None
    if grad_output is not None:
        try:
            fill = 1.0 if isinstance(grad_output, str) and grad_output == "ones" else grad_output
            go = np.broadcast_to(np.asarray(fill, dtype=dtypes[out]), shapes[out]).copy()
        except (ValueError, TypeError):
            raise SpecError(
                f"grad_output does not fit output '{out}' of shape {list(shapes[out])}", loc=("grad_output",)
            ) from None
    elif shapes[out] != ():
        raise SpecError(
            f"output '{out}' has shape {list(shapes[out])}, not a scalar: give 'grad_output' "
            "(like tensor.backward(gradient)) or reduce it with sum/mean",
            loc=("output",),
        )
    return Graph(leaves=leaves, nodes=nodes, output=out, grad_output=go, **graph_fields)
