"""Subscripts: x[...] of tensors (one getitem node, torch's indexing rules, masks known at compile time, nanoGPT's
windows `data[i:i + n]`) and of Python containers, module containers, datasets and loaders' batches."""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

from services.compiler.expressions import _UNREAD, ExpressionCompiler, _int_list, _kind
from services.compiler.values import Dataset, Epoch, ModuleInst, T, Value, container_of


class Subscripts(ExpressionCompiler):
    """x[...] in all its forms."""

    def subscript(self, node: ast.Subscript) -> Value:
        base = container_of(self.expr(node.value))
        if isinstance(base, T):
            if isinstance(node.value, ast.Name) and node.value.id.startswith("iter#") and isinstance(node.slice, ast.Constant):
                return self.rows(base, node, only=node.slice.value)[0]  # `for row in t:` row k, as torch's iter(t)
            return self.getitem(base, node)  # gives it: t.unbind(0)[k]
        if isinstance(node.slice, ast.Slice):  # xs[1:], self.heads[:-1], net[:2] (a container of the same modules)
            if not isinstance(base, (list, tuple, str)) and not (isinstance(base, ModuleInst) and base.layer is None):
                raise self.err(node, f"{_kind(base)} cannot be sliced")
            parts = [None if p is None else self.const(p) for p in (node.slice.lower, node.slice.upper, node.slice.step)]
            if not all(p is None or isinstance(p, int) and not isinstance(p, bool) for p in parts) or parts[2] == 0:
                raise self.err(node, "slice bounds must be integers (a step other than 0)")
            if isinstance(base, ModuleInst):
                return ModuleInst(None, None, children=base.children[slice(*parts)], container=base.container,
                                  training=base.training)
            return base[slice(*parts)]
        hidden = isinstance(node.value, ast.Name) and node.value.id.startswith("iter#")
        if isinstance(base, Epoch) and hidden:  # a loop's batch k (`for xb, yb in loader:`)
            k = base.offset + self.const(node.slice)
            base.position = k + 1
            names = list(self.stmt_names) if node is self.stmt_expr else None
            return self.batch(base, k, node, names)  # type: ignore[attr-defined, no-any-return]
        if isinstance(base, Dataset):  # dataset[i]: sample i, a row of each tensor
            k = self.const(node.slice)
            if not isinstance(k, int) or isinstance(k, bool) or not -base.size <= k < base.size:
                raise self.err(node, f"index {k!r} is out of range for a dataset of {base.size} samples")
            names = list(self.stmt_names) if node is self.stmt_expr and len(self.stmt_names) == len(base.tensors) \
                else [self.temp() for _ in base.tensors]  # `x0, y0 = ds[0]`: the statement's names
            return tuple(self.emit("getitem", [t], {"index": [k]}, node, name=n) for t, n in zip(base.tensors, names, strict=True))
        if isinstance(base, dict) or isinstance(base, ModuleInst) and base.container == "ModuleDict":
            # (an nn.Sequential with named children, `seq.add_module("block0", ...)`, is indexed by position)
            keys = list(base) if isinstance(base, dict) else base.keys
            k = self.dict_key(node.slice)
            if hidden and isinstance(k, int):  # a loop over a dict goes over its keys
                return keys[k]
            if k not in keys:
                raise self.err(node, f"key {k!r} is not among {keys[:8]}")
            return base[k] if isinstance(base, dict) else base.children[keys.index(k)]
        if isinstance(base, ModuleInst) and base.layer is None:
            k = self.const(node.slice)
            if not isinstance(k, int) or not -len(base.children) <= k < len(base.children):
                raise self.err(node, f"Sequential index {k!r} out of range ({len(base.children)} layers)")
            return base.children[k]
        if isinstance(base, (tuple, list, str)):
            k = self.const(node.slice)
            if isinstance(k, int) and -len(base) <= k < len(base):
                return base[k]
            if isinstance(k, dict):  # a slice
                return base[slice(*k["slice"])]
            raise self.err(node, f"index {k!r} is out of range for {len(base)} items")
        raise self.err(node, f"{_kind(base)} cannot be indexed")

    def getitem(self, t: T, node: ast.Subscript) -> T:
        """x[...] as one getitem node: ints, slices, None, Ellipsis, int lists and int64 tensors (torch's rules)."""
        index, tensors = self.index_of(node, self.shape(t), read=True)
        out = self.emit("getitem", [t, *tensors], {"index": index}, node)
        if self.windowed is not None and self.windowed in {x.name for x in tensors}:
            self.windows.add(out.name)  # a window is a slice in torch, a view of t: an in-place change of it is refused
        self.windowed = None
        if self.dtype_of(t) == "int64" and any(isinstance(i, list) for i in index) and (
                value := self.folded(out.name)) is not None and value.size:  # type: ignore[attr-defined]
            self.builder.ranges[out.name] = (float(value.min()), float(value.max()))  # targets[valid]: the picked labels
        return out

    window_dim: int | None = None
    """The length of dim 0 of what index_of reads, while a lone slice may be a tensor window (tensor_window)."""
    windowed: str | None = None
    """The index tensor tensor_window made for the read being compiled: its result is a view in torch."""
    windows: set[str] = set()  # noqa: RUF012  (replaced per program: ProgramCompiler.__init__)
    """Reads of windows `data[i:i + n]`: views in torch, whose in-place change gradtrace refuses."""

    def index_of(self, node: ast.Subscript, shape: tuple[int, ...] | None = None, read: bool = False) -> tuple[list[Any], list[T]]:
        """The items of x[...] as getitem and setitem take them, and the index tensors they name. A bool mask made from
        numbers alone (`torch.eye(n, dtype=torch.bool)`, a comparison of literal labels) is its True positions, one
        int list per dim it covers, as torch indexes with it (`shape`: x's, to check the mask against)."""
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        entries: list[tuple[ast.expr, Any]] = [(it, _UNREAD) for it in items]
        one = items[0] if items else None
        # `data[i:i + n]` alone, read (not written), of a 1-d tensor or along dim 0: a window (tensor_window)
        self.window_dim = shape[0] if read and shape and len(items) == 1 else None
        if one is not None and len(items) == 1 and not isinstance(one, ast.Slice) and not (
                isinstance(one, ast.Constant) and one.value is Ellipsis):
            v = self.expr(one)
            # x[e] with e = (0, 1), an edge of a list of tuples: a tuple is one index per dim, as x[0, 1] (a list
            # is an index into dim 0); (row, col) of tensors index two dims
            entries = [(one, e) for e in v] if isinstance(v, tuple) else [(one, v)]
        index: list[Any] = []
        tensors: list[T] = []
        for it, v in entries:
            if isinstance(it, ast.Slice) and (window := self.tensor_window(it)) is not None:
                index.append({"tensor": len(tensors)})  # `data[i:i + block_size]`, i a 0-d tensor: i + arange(n)
                tensors.append(window)
            elif isinstance(it, ast.Slice):
                parts = [None if p is None else self.const(p) for p in (it.lower, it.upper, it.step)]
                if not all(p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
                    raise self.err(it, "slice bounds must be integers")
                index.append({"slice": parts})
            elif isinstance(it, ast.Constant) and it.value is Ellipsis:
                index.append("...")
            else:
                if v is _UNREAD:
                    v = self.expr(it)
                if isinstance(v, T):
                    if self.dtype_of(v) == "bool":
                        index.extend(self.mask_positions(v, index, shape, it))
                        continue
                    index.append({"tensor": len(tensors)})
                    tensors.append(v)
                elif v is None or (isinstance(v, int) and not isinstance(v, bool)):
                    index.append(v)
                elif isinstance(v, (list, tuple)) and _int_list(v):
                    index.append(list(v))
                else:
                    raise self.err(it, f"'{self.src(it)[:60]}' is not an index (int, slice, None, ..., int list or tensor)")
        return index, tensors

    def tensor_window(self, it: ast.Slice) -> T | None:
        """`i:i + n` with i a 0-d int64 tensor (nanoGPT's get_batch: `data[i:i + block_size] for i in ix`, ix drawn):
        torch reads i's value; the window's length n is known, so it is the index tensor i + arange(n), which picks
        the same elements (the start drawn in range: torch.randint(len(data) - block_size, ...)). None otherwise."""
        lo, hi = it.lower, it.upper
        if it.step is not None or not isinstance(hi, ast.BinOp) or not isinstance(hi.op, ast.Add) or not (
                isinstance(lo, ast.Name) or isinstance(lo, ast.BinOp) and isinstance(lo.op, ast.Add) and {
                    type(lo.left), type(lo.right)} == {ast.Name, ast.Constant}):
            return None  # (`i`, `i + 1`: names and numbers, read twice, here and as a slice's bound, with no side effect)
        dump = ast.dump(lo)
        other = hi.right if ast.dump(hi.left) == dump else hi.left if ast.dump(hi.right) == dump else None
        if other is None or not isinstance(start := self.expr(lo), T):
            return None
        name = lo.id if isinstance(lo, ast.Name) else next(e.id for e in (lo.left, lo.right) if isinstance(e, ast.Name))
        offset = 0 if isinstance(lo, ast.Name) else next(e.value for e in (lo.left, lo.right) if isinstance(e, ast.Constant))
        base = self.scope.get(name)
        n = self.const(other)
        if self.shape(start) != () or self.dtype_of(start) != "int64" or not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise self.err(it, "a slice's bounds are ints, or `i:i + n` with i a 0-d int64 tensor and n an int")
        if (size := self.window_dim) is None:
            raise self.err(it, "a slice `i:i + n` with i a tensor is traced alone, as the one index of a read "
                               "(nanoGPT's `data[i:i + block_size]`)")
        known = self.builder.ranges.get(base.name) if isinstance(base, T) and isinstance(offset, int) else None
        if known is None or known[0] + offset < 0 or known[1] + offset + n > size:
            raise self.err(it, f"`{self.src(it)}` with {name} a tensor: gradtrace traces it where {name}'s values are known "
                               f"to keep the slice inside the {size} elements (torch.randint(len(data) - {n}, ...)); "
                               "torch clamps a slice that runs past the end")
        call = ast.copy_location(ast.Call(func=ast.Attribute(value=ast.Name(id="torch", ctx=ast.Load()), attr="arange",
                                                             ctx=ast.Load()), args=[ast.Constant(n)], keywords=[]), it)
        steps = self.create("arange", call, self.temp())  # type: ignore[attr-defined]
        window = self.emit("add", [start, steps], {}, it, name=self.temp())
        self.windowed = window.name
        return window

    def mask_positions(self, mask: T, before: list[Any], shape: tuple[int, ...] | None, node: ast.expr) -> list[list[int]]:
        """x[mask] with a mask known now: its True positions (np.nonzero), one int list per dim it covers."""
        value = self.folded(mask.name) if shape is not None and "..." not in before else None  # type: ignore[attr-defined]
        if value is None or value.ndim == 0:
            raise self.err(node, "boolean mask indexing gives a shape that depends on the data: use torch.where(mask, x, 0), "
                                 "or make the mask from numbers alone (torch.eye(n, dtype=torch.bool), comparisons of "
                                 "literal labels), which gradtrace reads now")
        assert shape is not None
        at = sum(item is not None for item in before)  # the dim the mask starts at
        if tuple(value.shape) != tuple(shape[at:at + value.ndim]):
            raise self.err(node, f"The shape of the mask {list(value.shape)} at index {at} does not match the shape of the "
                                 f"indexed tensor {list(shape)}")
        return [k.tolist() for k in np.nonzero(value)]

