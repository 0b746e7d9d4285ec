"""torch functions that rearrange tensors through other ops, as torch records them: torch.tile (repeat),
torch.broadcast_to (expand), torch.hstack / vstack (cat, 1-d rows unsqueezed), torch.meshgrid (a view and an expand per
output), repeat_interleave with an int (unsqueeze, expand, a contiguous view), torch.diag (diag_embed or diagonal) and
torch.linalg.norm / vector_norm (the norm op)."""

from __future__ import annotations

import ast
import math
from typing import Any

from services.compiler import composites
from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.values import T, Value
from services.errors import ShapeError
from services.ops.base import norm_dim

FUNCTIONS = {"torch.tile", "torch.broadcast_to", "torch.hstack", "torch.vstack", "torch.row_stack", "torch.meshgrid",
             "torch.repeat_interleave", "torch.diag", "torch.linalg.norm", "torch.linalg.vector_norm", "F.max_pool1d",
             "F.avg_pool1d", "F.adaptive_avg_pool1d", "F.adaptive_max_pool1d"}
"""The functions this module traces."""
METHODS = {"tile", "broadcast_to", "repeat_interleave", "diag"}
"""Tensor methods of the same names."""


class Arranging(ExpressionCompiler):
    """arrange(path, node): the call as the ops torch records (ProgramCompiler calls it for FUNCTIONS and METHODS)."""

    def params(self, node: ast.Call, names: tuple[str, ...], receiver: T | None, what: str) -> dict[str, Any]:
        """The call's arguments by torch's parameter names (the receiver, if any, is the first)."""
        args = [*([receiver] if receiver is not None else []), *node.args]
        if len(args) > len(names):
            raise self.err(node, f"{what} takes ({', '.join(names)})")
        given = dict(zip(names, args, strict=False))
        for k in node.keywords:
            if k.arg not in names or k.arg in given:
                raise self.err(node, f"{what} takes ({', '.join(names)})")
            given[k.arg] = k.value
        return given

    def arrange(self, fn: str, node: ast.Call, receiver: T | None = None) -> Value:
        """torch.<fn>(...) or x.<fn>(...)."""
        if fn in ("hstack", "vstack", "row_stack"):
            return self.stack_along(fn, node)
        if fn == "meshgrid":
            return self.meshgrid(node)
        if fn in ("norm", "vector_norm"):
            return self.linalg_norm(fn, node)
        if fn.endswith("pool1d"):
            return self.pool1d(fn, node)
        if fn == "tile" and receiver is not None and len(node.args) > 1 and not node.keywords:  # x.tile(2, 1, 1)
            dims = [self.const(a) for a in node.args]
            return self.emit("repeat", [receiver], {"sizes": [1] * (len(self.shape(receiver)) - len(dims)) + dims}, node)
        sig = {"tile": ("input", "dims"), "broadcast_to": ("input", "size"),
               "repeat_interleave": ("input", "repeats", "dim", "output_size"), "diag": ("input", "diagonal")}[fn]
        given = self.params(node, sig, receiver, fn)
        x = given["input"] if isinstance(given.get("input"), T) else self.tensor(given["input"])
        shape = self.shape(x)
        if fn == "tile":
            dims = self.const(given["dims"])
            dims = [dims] if isinstance(dims, int) else list(dims)
            return self.emit("repeat", [x], {"sizes": [1] * (len(shape) - len(dims)) + dims}, node)
        if fn == "broadcast_to":
            size = self.const(given["size"])
            return self.emit("expand", [x], {"size": [size] if isinstance(size, int) else list(size)}, node)
        if fn == "diag":
            k = self.const(given["diagonal"]) if "diagonal" in given else 0
            if len(shape) == 1:
                return self.emit("diag_embed", [x], {"offset": k}, node)
            if len(shape) == 2:
                return self.emit("diagonal", [x], {"offset": k}, node)
            raise self.err(node, f"diag: expected a 1-d or 2-d tensor, got shape {list(shape)}")
        return self.repeat_interleave(x, given, node)

    def repeat_interleave(self, x: T, given: dict[str, Any], node: ast.Call, name: str | None = None) -> T:
        """x.repeat_interleave(r, dim): each element r times in a row, as torch makes it (UnsqueezeBackward0,
        ExpandBackward0, CloneBackward0, ViewBackward0); no dim: of the flattened tensor. `name`: the result's (a
        step inside another call); by default the call's."""
        r = self.const(given["repeats"]) if "repeats" in given else None
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            raise self.err(node, "repeat_interleave: repeats is an int here (a tensor of repeats gives a shape that "
                                 f"depends on its values), got {_kind(r)}")
        dim = self.const(given["dim"]) if given.get("dim") is not None else None
        if dim is None:
            x = self.emit("reshape", [x], {"shape": [-1]}, node, name=self.temp())
            dim = 0
        shape = list(self.shape(x))
        try:
            d = norm_dim(dim, len(shape))
        except ShapeError as e:
            raise self.err(node, f"repeat_interleave: {e}") from None
        u = self.emit("unsqueeze", [x], {"dim": d + 1}, node, name=self.temp())
        e = self.emit("expand", [u], {"size": [*shape[: d + 1], r, *shape[d + 1 :]]}, node, name=self.temp())
        return self.emit("view", [e], {"shape": [*shape[:d], shape[d] * r, *shape[d + 1 :]], "contiguous": True}, node, name=name)

    def stack_along(self, fn: str, node: ast.Call) -> T:
        """hstack: cat along dim 1 (dim 0 for 1-d tensors); vstack: 1-d tensors as rows, then cat along dim 0."""
        if len(node.args) != 1 or node.keywords:
            raise self.err(node, f"torch.{fn} takes a list of tensors")
        items = self.expr(node.args[0])
        if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, T) for v in items):
            raise self.err(node, f"torch.{fn} takes a list of tensors")
        if fn == "hstack":
            return self.emit("cat", list(items), {"dim": 0 if len(self.shape(items[0])) == 1 else 1}, node)
        rows = [self.emit("unsqueeze", [v], {"dim": 0}, node, name=self.temp()) if len(self.shape(v)) == 1 else v for v in items]
        return self.emit("cat", rows, {"dim": 0}, node)

    def meshgrid(self, node: ast.Call) -> tuple[T, ...]:
        """torch.meshgrid(a, b, ..., indexing='ij' | 'xy'): each 1-d input viewed along its axis and expanded to the
        grid (ViewBackward0, ExpandBackward0); 'xy' swaps the first two axes. Named by a tuple assignment's targets."""
        indexing = next((self.const(k.value) for k in node.keywords if k.arg == "indexing"), "ij")
        if indexing not in ("ij", "xy") or any(k.arg != "indexing" for k in node.keywords):
            raise self.err(node, "torch.meshgrid takes tensors and indexing='ij' or 'xy'")
        vals = [self.expr(a) for a in node.args]
        ts = vals[0] if len(vals) == 1 and isinstance(vals[0], (list, tuple)) else vals
        if not ts or not all(isinstance(v, T) and len(self.shape(v)) <= 1 for v in ts):
            raise self.err(node, "torch.meshgrid takes 0-d or 1-d tensors")
        sizes = [math.prod(self.shape(v)) for v in ts]
        axes = list(range(len(ts)))
        if indexing == "xy" and len(ts) > 1:
            axes[0], axes[1] = 1, 0
        grid = [0] * len(ts)
        for k, ax in enumerate(axes):
            grid[ax] = sizes[k]
        names = self.piece_names(node, len(ts))
        outs = []
        for k, (v, ax) in enumerate(zip(ts, axes, strict=True)):
            view = [1] * len(ts)
            view[ax] = -1
            r = self.emit("reshape", [v], {"shape": view}, node, name=self.temp())
            outs.append(self.emit("expand", [r], {"size": grid}, node, name=names[k]))
        return tuple(outs)

    def pool1d(self, fn: str, node: ast.Call) -> T:
        """F.max_pool1d(x, kernel_size, stride=None, padding=0), F.avg_pool1d, F.adaptive_avg_pool1d(x, output_size),
        F.adaptive_max_pool1d (a text CNN's max over time): the 2-d pool between an unsqueeze and a squeeze, as torch runs them."""
        names = ("input", "output_size") if fn.startswith("adaptive") else ("input", "kernel_size", "stride", "padding") + (
            ("dilation", "ceil_mode") if fn == "max_pool1d" else ("ceil_mode", "count_include_pad"))
        given = self.params(node, names, None, f"F.{fn}")
        x = self.tensor(given["input"])
        if len(self.shape(x)) not in (2, 3):
            raise self.err(node, f"{fn} needs input (N, C, L) or (C, L), got {list(self.shape(x))}")
        vals = {k: self.const(v) for k, v in given.items() if k != "input" and v is not None}
        if vals.pop("dilation", 1) not in (1, [1], (1,)):
            raise self.err(node, f"F.{fn}: dilation other than 1 is not traced")
        options = {k: bool(vals.pop(k)) for k in ("ceil_mode", "count_include_pad") if k in vals}
        options = {k: v for k, v in options.items() if v != (k == "count_include_pad")}  # (the defaults: left out)
        one = {k: v[0] if isinstance(v, (list, tuple)) and len(v) == 1 else v for k, v in vals.items()}
        size = one.get("output_size", one.get("kernel_size"))
        if not isinstance(size, int) or any(not isinstance(v, int) for v in one.values() if v is not None):
            raise self.err(node, f"F.{fn} takes int sizes here, got {vals}")
        op = fn.replace("1d", "2d")

        def add(o: str, inputs: list[Any], args: dict[str, Any], last: bool) -> str:
            return self.emit(o, inputs, args, node, name=None if last else self.temp()).name

        return T(composites.pool1d(add, x.name, op, size, one.get("stride"), one.get("padding", 0), options))

    def linalg_norm(self, fn: str, node: ast.Call) -> T:
        """torch.linalg.vector_norm(x, ord=2, dim, keepdim) and torch.linalg.norm(x, ord=None, dim, keepdim) of vectors
        (or the Frobenius norm, ord None): the norm op."""
        given = self.params(node, ("input", "ord", "dim", "keepdim"), None, f"torch.linalg.{fn}")
        x = self.tensor(given["input"])
        ord_ = self.const(given["ord"]) if given.get("ord") is not None else None
        dim = self.const(given["dim"]) if given.get("dim") is not None else None
        keepdim = bool(self.const(given["keepdim"])) if "keepdim" in given else False
        matrix = fn == "norm" and ord_ is not None and (isinstance(dim, (list, tuple)) or dim is None and len(self.shape(x)) == 2)
        if matrix and ord_ != "fro":
            raise self.err(node, f"torch.linalg.norm with ord={ord_!r} over a matrix (a matrix norm) is not traced: "
                                 "ord=None or 'fro', or torch.linalg.vector_norm")
        p = 2 if ord_ in (None, "fro") else ord_
        return self.emit("norm", [x], {"p": p, "dim": list(dim) if isinstance(dim, tuple) else dim, "keepdim": keepdim}, node)
