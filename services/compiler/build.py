"""Turn raw node descriptions into a checked Graph: ops, arity, arguments, order, shapes, limits."""

from __future__ import annotations

import math
from collections import ChainMap, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from services import strides
from services.compiler.inputs import value_range
from services.errors import ShapeError, SpecError, argument_error
from services.ir import Graph, Input, Leaf, LeafGradient, Node
from services.ops import get_op
from services.ops.base import KIND, Op
from shared.settings import Settings


@dataclass
class RawNode:
    """A node as a spec form wrote it, with where it came from for error messages."""

    name: str
    op: str | Op
    """A registered op's name, or an op of the program's own (services.ops.custom)."""
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


def _in_order(raws: list[RawNode], known: set[str]) -> bool:
    """Whether every node comes after its inputs, names unique: the order a spec is usually written in."""
    defined = set(known)
    add = defined.add
    for r in raws:
        if r.name in defined:
            return False
        for i in r.inputs:
            if i.__class__ is str and i not in defined:
                return False
        add(r.name)
    return True


def topo_order(raws: list[RawNode], known: set[str]) -> list[RawNode]:
    """Order nodes so each comes after its inputs; name unknowns and cycles. Nodes already in such an order
    keep it (the order torch would run them in, random draws included); others are sorted by Kahn's algorithm."""
    if _in_order(raws, known):
        return raws
    by_name: dict[str, RawNode] = {}
    for r in raws:
        if r.name in by_name or r.name in known:
            raise _err(r, f"name '{r.name}' is defined twice")
        by_name[r.name] = r
    for r in raws:
        for i in r.inputs:
            if isinstance(i, str) and i not in by_name and i not in known:
                raise _err(r, f"unknown input '{i}'")
    indeg: dict[str, int] = {}
    users: dict[str, list[str]] = {}
    for r in raws:
        deps = {i for i in r.inputs if isinstance(i, str) and i in by_name}
        indeg[r.name] = len(deps)
        for i in deps:
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


LAYOUT_MAKERS = frozenset({"transpose", "permute", "t", "expand", "getitem", "split", "chunk", "unbind"})
"""Ops whose result is not row-major even when their input is (a slice `c[:, 1:]`, a piece of a split)."""


def views_input(op: Op, inputs: list[Any], args: Any) -> bool:
    """Whether torch's result is a view of the op's first input: a view op's, but getitem's with advanced indices (int
    lists, index tensors, a mask's positions) is a new tensor."""
    return op.view and not (op.name == "getitem" and (len(inputs) > 1 or any(isinstance(i, list) for i in args.index)))


class GraphBuilder:
    """Checks nodes one at a time against their ops (arity, arguments, shapes, dtypes, limits), knowing the
    shape, dtype and requires_grad of every name so far: a program compiler asks it as it goes."""

    def __init__(self, limits: Limits, leaves: dict[str, Leaf] | None = None) -> None:
        self.limits = limits
        self.leaves: dict[str, Leaf] = {}
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        self.grad: dict[str, bool] = {}
        self.ranges: dict[str, tuple[float, float]] = {}
        self.used: set[str] = set()
        self.notes: list[str] = []
        """What torch would warn about (op.warning), for the result's notes."""
        self.default_dtype = "float32"
        """torch's default float dtype for the graph (the spec's dtype): int tensor * 0.5 is of it."""
        self.grad_enabled = True
        """False under torch.no_grad(): nodes added then require no grad, whatever their inputs."""
        self.views: dict[str, list[str]] = {}
        """Tensor name -> the nodes that are views of it (an in-place change of it changes them in torch)."""
        self.saved_by_torch: dict[str, str] = {}
        """Tensors torch's own fused modules keep for backward where gradtrace's unrolled nodes do not (an nn.LSTM's
        output), by name: what kept them. An in-place change of one fails at torch's backward()."""
        self.strides: dict[str, tuple[int, ...]] = {}
        """torch's strides (in elements) of the tensors whose strides are not row-major (services.strides):
        torch's random fills of a tensor like one of them (dropout's mask) draw in its memory order."""
        self.module_buffers: set[str] = set()
        """Leaves that are a built-in module's buffers (a BatchNorm's running_mean before its first training call)."""
        self.computed: dict[str, Node] = {}
        """Nodes made leaves by node_to_leaf, by name."""
        self.total = 0
        for leaf in (leaves or {}).values():
            self.add_leaf(leaf)

    def __contains__(self, name: object) -> bool:
        return name in self.shapes

    def add_leaf(self, leaf: Leaf, loc: tuple[str | int, ...] = ()) -> Leaf:
        """Register a leaf (a tensor the spec or program makes); its elements count against the limits."""
        if leaf.name in self.shapes:
            raise SpecError(f"name '{leaf.name}' is defined twice", loc=loc)
        self._count(leaf.size, loc, None)
        self.leaves[leaf.name] = leaf
        self.shapes[leaf.name], self.dtypes[leaf.name], self.grad[leaf.name] = leaf.shape, leaf.dtype, leaf.requires_grad
        if leaf.known_range is not None:
            self.ranges[leaf.name] = leaf.known_range
        return leaf

    def set_requires_grad(self, name: str, flag: bool) -> None:
        """`leaf.requires_grad_(flag)` before any node has used it."""
        if name not in self.leaves:
            raise ValueError(f"'{name}' is not a leaf tensor: only leaves can change requires_grad")
        if name in self.used:
            raise ValueError(f"'{name}' is already used by an operation: call requires_grad_() before using it")
        if flag and self.dtypes[name] not in ("float32", "float64"):
            raise ValueError(f"only floating point tensors can require gradients ('{name}' is {self.dtypes[name]})")
        self.leaves[name].requires_grad = self.grad[name] = flag

    def node_to_leaf(self, name: str, init: str) -> Leaf:
        """Turn node `name`, which nothing uses yet and which requires no grad, into a leaf of the same shape and
        dtype (torch's view of a tensor computed from no tensor that requires grad); its nodes stay for the
        ancestry its value is computed from."""
        node = next(n for n in reversed(self.nodes) if n.name == name)
        self.nodes.remove(node)
        self.computed[name] = node
        leaf = Leaf(name, node.shape, node.dtype, False, init=init, expr=node.expr)
        self.leaves[name] = leaf
        return leaf

    def ancestry(self, name: str) -> list[Node]:
        """The nodes that compute leaf `name` (made by node_to_leaf), in graph order, itself last."""
        by_name = {n.name: n for n in self.nodes}
        wanted: set[str] = set()
        stack = [i for i in self.computed[name].inputs if isinstance(i, str)]
        while stack:
            k = stack.pop()
            if k in wanted or k not in by_name:  # a leaf ends the walk
                continue
            wanted.add(k)
            stack.extend(i for i in by_name[k].inputs if isinstance(i, str))
        return [n for n in self.nodes if n.name in wanted] + [self.computed[name]]

    def mark(self) -> tuple[int, int]:
        """Where the graph is now, for rollback."""
        return len(self.nodes), len(self.shapes)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget every leaf and node added since `mark` (a statement that failed half way)."""
        nodes, names = mark
        gone = list(self.shapes)[names:]
        del self.nodes[nodes:]
        for name in gone:
            for table in (self.leaves, self.shapes, self.dtypes, self.grad, self.ranges, self.views, self.computed,
                          self.strides, self.saved_by_torch):
                table.pop(name, None)  # type: ignore[attr-defined]
        self.module_buffers.difference_update(gone)
        self.used.difference_update(gone)
        for base, made in list(self.views.items()):
            self.views[base] = [v for v in made if v in self.shapes]

    def rename_last(self, old: str, new: str) -> bool:
        """Rename the tensor added last, when nothing used it yet (cheap: no other table holds it); False if not."""
        own = self.shapes.maps[0] if isinstance(self.shapes, ChainMap) else self.shapes  # (an autograd.Function's body)
        if old not in own or next(reversed(own)) != old or old in self.used or new in self.shapes:
            return False
        for table in (self.shapes, self.dtypes, self.grad, self.ranges, self.leaves, self.strides, self.views,
                      self.saved_by_torch):
            if old in table:
                table[new] = table.pop(old)  # type: ignore[attr-defined]
        if old in self.computed:  # a leaf computed from numbers (`Variable(torch.randn(3) * 0.1, requires_grad=True)`)
            self.computed[new] = self.computed.pop(old)
            self.computed[new].name = new
        if new in self.leaves:
            self.leaves[new].name = new
        elif self.nodes and self.nodes[-1].name == old:
            self.nodes[-1].name = new
        for made in self.views.values():
            made[:] = [new if v == old else v for v in made]
        return True

    def drop_leaf(self, name: str) -> None:
        """Forget a leaf no node used (a parameter a weight tie replaced); its stream events still run."""
        assert name not in self.used, name
        del self.leaves[name], self.shapes[name], self.dtypes[name], self.grad[name]
        self.ranges.pop(name, None)

    def rename(self, new: dict[str, str]) -> None:
        """Give tensors new names (old -> new, every name present; the new ones distinct): the graph's nodes, their
        inputs and every table by name."""
        def key(d: dict[str, Any]) -> dict[str, Any]:
            return {new[k]: v for k, v in d.items()}
        for leaf in self.leaves.values():
            leaf.name = new[leaf.name]
        for n in [*self.nodes, *self.computed.values()]:
            n.name = new[n.name]
            n.inputs = [new[i] if isinstance(i, str) else i for i in n.inputs]
            if n.writes is not None:
                n.writes = new.get(n.writes, n.writes)
        self.leaves, self.computed = key(self.leaves), key(self.computed)
        self.shapes, self.dtypes, self.grad, self.ranges = key(self.shapes), key(self.dtypes), key(self.grad), key(self.ranges)
        self.strides, self.saved_by_torch = key(self.strides), key(self.saved_by_torch)  # torch's layout goes with the name
        self.views = {new[k]: [new[v] for v in vs] for k, vs in self.views.items()}
        self.used = {new[k] for k in self.used}

    def _count(self, size: int, loc: tuple[str | int, ...], raw: RawNode | None) -> None:
        def fail(msg: str) -> SpecError:
            return _err(raw, msg) if raw is not None else SpecError(msg, loc=loc)

        if size > self.limits.max_tensor_elements:
            raise fail(f"a tensor of {size} elements is over the limit of {self.limits.max_tensor_elements}")
        self.total += size
        if self.total > self.limits.max_total_elements:
            raise fail(f"the graph holds more than {self.limits.max_total_elements} elements in all")

    def add(self, raw: RawNode) -> Node:
        """Check one node whose inputs are all known, and record it (one pass over its inputs: a 1M-node spec
        is compiled twice, by the API and by the worker)."""
        if len(self.nodes) >= self.limits.max_nodes:
            raise _err(raw, f"more than {self.limits.max_nodes} nodes: over the limit")
        shapes, dtypes = self.shapes, self.dtypes
        if raw.name in shapes:
            raise _err(raw, f"name '{raw.name}' is defined twice")
        inputs = raw.inputs
        in_shapes: list[tuple[int, ...]] = []
        in_dtypes: list[str] = []
        names: list[str] = []
        for i in inputs:
            if isinstance(i, str):
                s = shapes.get(i)
                if s is None:
                    raise _err(raw, f"unknown input '{i}'")
                in_shapes.append(s)
                in_dtypes.append(dtypes[i])
                names.append(i)
            else:
                in_shapes.append(())
                in_dtypes.append("scalar")
        op = raw.op if isinstance(raw.op, Op) else get_op(raw.op)
        if op is None:
            raise _err(raw, f"unknown op '{raw.op}'")
        lo, hi = op.arity
        n = len(inputs)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            raise _err(raw, f"{raw.op} takes {want} tensor inputs, got {n}")
        if not op.scalars and len(names) != n and (bad := [  # (a left-out optional slot holds its number)
                (k, i) for k, i in enumerate(inputs)
                if not isinstance(i, str) and op.optional.get(op.tensors[min(k, len(op.tensors) - 1)]) != i]):
            k, i = bad[0]
            slot = op.tensors[min(k, len(op.tensors) - 1)]
            raise _err(raw, f"{raw.op}: '{slot}' (input {k}) must be a tensor, got the number {i:g}")
        try:
            args = op.default_args if not raw.args and op.default_args is not None else op.Args.model_validate(raw.args)
        except ValidationError as e:
            raise _err(raw, f"{raw.op}: {argument_error(e.errors()[0])}") from None
        diff_flags = op.differentiable or (True,) * n
        for slot, i in zip(op.tensors, inputs, strict=False) if op.grad_refused else ():
            if slot in op.grad_refused and isinstance(i, str) and self.grad[i] and self.grad_enabled:
                raise _err(raw, f"{raw.op} is not differentiable with respect to '{slot}', and '{i}' requires grad "
                                "(torch raises this): make it without requires_grad, or pass its .detach()")
        if op.same_dtype and len({d for d in in_dtypes if d != "scalar"}) > 1:
            shown = ", ".join(f"{i}: {d}" for i, d in zip(inputs, in_dtypes, strict=False))
            raise _err(raw, f"{raw.op} needs its tensors in one dtype (torch does not promote here), got {shown}: "
                            "cast with .float() or .double()")
        if ("int64" in in_dtypes or "bool" in in_dtypes) and not op.any_dtype:
            has_float = "float32" in in_dtypes or "float64" in in_dtypes
            for i, d, diff in zip(inputs, in_dtypes, diff_flags, strict=False):
                if d == "int64" and diff:
                    raise _err(raw, f"{raw.op}: input '{i}' is int64; this op needs floating point tensors: cast with .float()")
                if d == "bool" and diff and not has_float:
                    raise _err(raw, f"{raw.op}: input '{i}' is a bool tensor; cast it first (.float())")
        try:
            shape = tuple(op.shape(in_shapes, args))
            dtype = op.result_dtype(tiered(in_dtypes, in_shapes) if op.scalars and op.pointwise else in_dtypes, inputs, args,
                                    self.default_dtype)
            if op.checks_ranges:
                op.check_ranges([self.ranges.get(i) if isinstance(i, str) else (i, i) for i in inputs], in_shapes, args)
            if op.checks_values:
                op.check_values([getattr(self.leaves.get(i), "value", None) if isinstance(i, str) else i for i in inputs],
                                in_shapes, args)
        except (ShapeError, ValueError) as e:
            shown = ", ".join(f"{i}: {list(s)}" if isinstance(i, str) else f"{i}" for i, s in zip(inputs, in_shapes, strict=False))
            raise _err(raw, f"{e} (inputs {shown})") from None
        self._count(math.prod(shape), (), raw)
        if op.warns and (warning := op.warning(in_shapes, args)):
            self.notes.append(f"{f'line {raw.line}' if raw.line else f'node {raw.name!r}'}: {warning}")
        rg = False
        if dtype in ("float32", "float64") and self.grad_enabled:
            grad = self.grad
            for i, diff in zip(inputs, diff_flags, strict=False):
                if diff and isinstance(i, str) and grad[i]:
                    rg = True
                    break
        shapes[raw.name], dtypes[raw.name], self.grad[raw.name] = shape, dtype, rg
        if op.gives_ranges:
            r = op.value_range([self.ranges.get(i) if isinstance(i, str) else (i, i) for i in inputs], args)
            literal = getattr(self.leaves.get(inputs[0]), "value", None) if op.view and len(inputs) == 1 and \
                isinstance(inputs[0], str) and inputs[0] in self.ranges else None  # (a write drops the range)
            if literal is not None and np.size(literal) and 0 < math.prod(shape) <= 1 << 16:  # a view of a tensor
                try:  # written out (`idx[0]` of triu_indices): its own values' bounds, not the whole tensor's
                    with np.errstate(all="ignore"):
                        r = value_range(np.asarray(op.forward([np.asarray(literal)], args))) or r
                except Exception:  # noqa: BLE001  (the whole tensor's bounds stand)
                    pass
            if r is not None:
                self.ranges[raw.name] = r
        self.used.update(names)
        if names and views_input(op, inputs, args) and not self.copies(op, inputs, shape):
            self.views.setdefault(names[0], []).append(raw.name)
        if names and (raw.op in LAYOUT_MAKERS or op.lays_out or self.strides and (
                names[0] in self.strides or op.pointwise and not self.strides.keys().isdisjoint(names))):
            self._strides(raw.name, op, inputs, args, shape)
        node = Node(raw.name, op, list(inputs), args, shape, dtype, rg, raw.expr, raw.line)
        self.nodes.append(node)
        return node

    def copies(self, op: Op, inputs: list[Input], shape: tuple[int, ...]) -> bool:
        """reshape / flatten of a tensor torch cannot view as that shape (`c[:, 1:].flatten()`): torch copies it, and
        an in-place change of the result changes nothing else."""
        x = inputs[0] if inputs else None
        return (op.name in ("reshape", "flatten") and isinstance(x, str) and x in self.strides
                and strides.viewed(self.shapes[x], self.strides[x], shape) is None)

    def _strides(self, name: str, op: Op, inputs: list[Input], args: Any, shape: tuple[int, ...]) -> None:
        """Record the node's torch strides when torch's tensor is not contiguous: views of strided tensors, transposes
        and expands, clones and flips (empty_like's layout), and pointwise ops of strided inputs (TensorIterator
        keeps their order); other ops make new contiguous tensors."""
        new: tuple[int, ...] | None = None
        if op.pointwise:
            if op.name == "pow" and not isinstance(inputs[0], str):
                return  # `2 ** x`: torch's pow(Scalar, Tensor) is contiguous
            ops = [(self.shapes[i], self.strides.get(i) or strides.contiguous(self.shapes[i])) for i in inputs
                   if isinstance(i, str)]
            if all(sh == shape and st == ops[0][1] for sh, st in ops) and strides.memory_order(shape, ops[0][1]):
                new = ops[0][1]  # TensorIterator's fast setup: one dense layout throughout
            else:
                new = strides.iterated(shape, ops)
        elif isinstance(inputs[0], str):
            new = self._view_strides(op, inputs, args, shape)
        if new is not None and not strides.is_contiguous(shape, new):
            self.strides[name] = new

    def _view_strides(self, op: Op, inputs: list[Input], args: Any, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The strides of a view op's result, of a clone or flip (like its input); None: a new contiguous tensor."""
        x = inputs[0]
        assert isinstance(x, str)
        old = self.shapes[x]
        s = self.strides.get(x) or strides.contiguous(old)
        name = op.name
        if name in ("transpose", "t"):
            a, b = (0, 1) if name == "t" else (args.dim0, args.dim1)
            return strides.transposed(s, a, b) if len(old) > 1 else s
        if name == "permute":
            return strides.permuted(s, args.dims)
        if name == "expand":
            return strides.expanded(old, s, shape)
        if name == "detach":
            return s
        if name == "unsqueeze":
            return strides.unsqueezed(old, s, args.dim)
        if name in ("clone", "flip", "sort"):  # empty_like's layout; x.contiguous() of a strided x is row-major
            return None if name == "clone" and args.memory_format == "contiguous" else strides.like(old, s)
        if name == "getitem":
            if len(inputs) > 1 or any(isinstance(i, list) for i in args.index):  # advanced indexing: a new tensor
                return None
            return strides.indexed(old, s, tuple(args.index))
        if name in ("chunk", "split", "unbind"):  # a piece along dim: a view
            d = args.dim % len(old)
            if name == "unbind":
                return strides.indexed(old, s, (slice(None),) * d + (args.index,))
            sizes = op.sizes(old[d], args)  # type: ignore[attr-defined]
            k = args.index % len(sizes)
            start = sum(sizes[:k])
            return strides.indexed(old, s, (slice(None),) * d + (slice(start, start + sizes[k]),))
        if name in ("reshape", "view", "flatten", "squeeze"):
            return strides.viewed(old, s, shape)  # torch views when numpy can
        tensors = [i for i in inputs if isinstance(i, str)]  # the op's own rule (linalg.inv: column-major), else row-major
        return op.out_strides([self.shapes[i] for i in tensors],
                              [self.strides.get(i) or strides.contiguous(self.shapes[i]) for i in tensors], args)

    def finish(self, output: str | None, grad_output: Any, no_ops_loc: tuple[str | int, ...] = (), **graph_fields: Any) -> Graph:
        """Pick the output (default: the last node) and shape its gradient; the Graph."""
        if not self.nodes and not output:
            raise SpecError("the graph has no operations", loc=no_ops_loc)
        out = output or self.nodes[-1].name
        if out not in self.shapes:
            raise SpecError(f"output '{out}' is not a node or input", loc=("output",))
        if not self.grad[out]:
            raise SpecError(f"output '{out}' does not depend on any input that requires grad", loc=("output",))
        go = None
        if isinstance(grad_output, LeafGradient):  # its value is drawn when the graph is materialized
            if self.shapes[grad_output.name] != self.shapes[out]:
                raise SpecError(f"grad_output '{grad_output.name}' of shape {list(self.shapes[grad_output.name])} does not "
                                f"fit output '{out}' of shape {list(self.shapes[out])}", loc=("grad_output",))
            graph_fields["grad_output_leaf"] = grad_output.name
            go = np.zeros(self.shapes[out], dtype=self.dtypes[out])
        elif grad_output is not None:
            try:
                fill = 1.0 if isinstance(grad_output, str) and grad_output == "ones" else grad_output
                go = np.broadcast_to(np.asarray(fill, dtype=self.dtypes[out]), self.shapes[out]).copy()
            except (ValueError, TypeError):
                raise SpecError(
                    f"grad_output does not fit output '{out}' of shape {list(self.shapes[out])}", loc=("grad_output",)
                ) from None
        elif math.prod(self.shapes[out]) == 1 and self.shapes[out]:  # torch's backward() takes any one-element tensor
            go = np.ones(self.shapes[out], dtype=self.dtypes[out])
        elif self.shapes[out] != ():
            raise SpecError(
                f"output '{out}' has shape {list(self.shapes[out])}, not a scalar: give 'grad_output' "
                "(like tensor.backward(gradient)) or reduce it with sum/mean",
                loc=("output",),
            )
        return Graph(leaves=self.leaves, nodes=self.nodes, output=out, grad_output=go, **graph_fields)


def build_graph(
    leaves: dict[str, Leaf],
    raws: list[RawNode],
    output: str | None,
    grad_output: Any,
    limits: Limits,
    **graph_fields: Any,
) -> Graph:
    """Check every node (in any order: sorted topologically first) and pick the output and its gradient."""
    if len(raws) > limits.max_nodes:
        raise SpecError(f"{len(raws)} nodes exceed the limit of {limits.max_nodes}")
    builder = GraphBuilder(limits, leaves)
    for raw in topo_order(raws, set(leaves)):
        builder.add(raw)
    return builder.finish(output, grad_output, no_ops_loc=() if raws else ("program",), **graph_fields)


def tiered(dtypes: list[str], shapes: list[tuple[int, ...]]) -> list[str]:
    """torch's promotion tiers for arithmetic: beside tensors with dims, a 0-d tensor takes part only when its category
    is higher (a float64 0-d `scale * x` of a float32 x is float32, as torch gives; an int64 x times it, float64);
    among 0-d tensors alone, as any tensors. Left out: 'scalar', as a Python number that decides nothing."""
    dims = [KIND[d] for d, s in zip(dtypes, shapes, strict=False) if d != "scalar" and s != ()]
    if not dims or len(dims) == len([d for d in dtypes if d != "scalar"]):
        return dtypes
    top = max(dims)
    # (a bool stays: it decides no dtype beside a number tensor, and ops refuse it by it: pow's exponent)
    return ["scalar" if d not in ("scalar", "bool") and s == () and KIND[d] <= top else d
            for d, s in zip(dtypes, shapes, strict=False)]
