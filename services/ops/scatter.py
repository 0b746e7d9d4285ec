"""Writes by index: torch.scatter (a tensor's or a number's elements put at index, the one-hot idiom
`zeros.scatter_(1, labels.unsqueeze(1), 1.0)`), scatter_add (summed there) and index_add (whole slices summed at
index along a dim). The gradient of the input is the output's, less what was overwritten; of the source, the output
gradient read back at index (a gather)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, norm_dim, register
from services.ops.indexing import DimArgs, _check_index, _gather_grid, _values_in


def _check(op: str, shapes: list[Shape], src_is_tensor: bool, d: int) -> None:
    """torch's scatter rules: index has input's number of dims, src (a tensor) index's shape, index no larger than
    input off `dim`."""
    x, idx = shapes[0], shapes[1]
    src = shapes[2] if src_is_tensor else None
    if len(idx) != len(x) or (src is not None and len(src) != len(x)):
        raise ShapeError(f"{op}: index {list(idx)} and src must have as many dims as input {list(x)}")
    for i, m in enumerate(idx):
        if i != d and m > x[i]:
            raise ShapeError(f"{op}: index {list(idx)} is larger than input {list(x)} at dim {i} (only dim {d} may differ)")
    if src is not None and src != idx:  # torch runs it, but its backward returns src a gradient of index's shape and fails
        raise ShapeError(f"{op}: src {list(src)} and index {list(idx)} differ in shape: torch's backward fails there "
                         "(its gradient of src has index's shape); slice src to index's shape")


class Scatter(Op):
    """Shared by scatter and scatter_add: out = input with src[idx-shaped part] written (added) at index along dim."""

    tensors = ("input", "index", "src")
    differentiable = (True, False, True)
    Args = DimArgs
    signature = ("input", "dim", "index", "src")
    scalars = True
    any_dtype = True  # HF's top_k_top_p_filtering: `remove.scatter(1, sorted_indices, remove)` of a bool mask
    add = False

    def shape(self, shapes: list[Shape], a: DimArgs) -> Shape:
        if not shapes[0]:
            raise ShapeError(f"{self.name}: a 0-d input is not traced")
        # a number as src has shape (), as a 0-d tensor would (which torch refuses: not told apart here)
        _check(self.name, shapes, len(shapes) > 2 and shapes[2] != (), norm_dim(a.dim, len(shapes[0])))
        return shapes[0]

    def on_cuda(self, a: DimArgs) -> str | None:
        if self.add:
            return None
        return (f"{self.name}: where index repeats a position, torch leaves undefined which src value lands there "
                "(CUDA's threads race); the reference engine takes the last, as the CPU does, so such a position "
                "and its gradient may differ")

    def dtype(self, dtypes: list[str]) -> str:
        if "scalar" in dtypes[:2]:
            raise ShapeError(f"{self.name}: input and index are tensors")
        if dtypes[1] != "int64":
            raise ShapeError(f"{self.name}: index must be an int64 tensor, got {dtypes[1]}")
        if len(dtypes) > 2 and dtypes[2] != "scalar" and dtypes[2] != dtypes[0]:
            raise ShapeError(f"{self.name}: Expected self.dtype to be equal to src.dtype ({dtypes[0]} and {dtypes[2]})")
        if self.add and len(dtypes) > 2 and dtypes[2] == "scalar":
            raise ShapeError(f"{self.name}: src is a tensor (scatter_add adds a tensor's elements)")
        return dtypes[0]

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: DimArgs) -> None:
        _check_index(self.name, ranges[1], shapes[0][norm_dim(a.dim, len(shapes[0]))])

    def torch(self, t: Any, xs: list[Any], a: DimArgs) -> Any:
        if self.add:
            return t.scatter_add(xs[0], a.dim, xs[1], xs[2])
        return t.scatter(xs[0], a.dim, xs[1], xs[2])

    def _where(self, x: Array, idx: Array, a: DimArgs) -> tuple[Array, ...]:
        d = norm_dim(a.dim, x.ndim)
        _values_in(self.name, idx, x.shape[d])
        return _gather_grid(idx, d)

    def forward(self, xs: list[Array], a: DimArgs) -> Array:
        x, idx = xs[0], xs[1]
        out = x.copy()
        if idx.size:
            grid = self._where(x, idx, a)
            src = xs[2] if xs[2].ndim == 0 else xs[2][tuple(slice(0, n) for n in idx.shape)]
            if self.add:
                np.add.at(out, grid, np.broadcast_to(src, idx.shape))
            else:
                out[grid] = src  # repeated indices: the last write stays, as torch's CPU loop leaves it
        return out

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimArgs) -> list[Array | None]:
        x, idx, src = xs
        gx = g.copy()
        gsrc = None if src.ndim == 0 and not self.add else np.zeros(src.shape, dtype=g.dtype)
        if idx.size:
            grid = self._where(x, idx, a)
            if not self.add:
                gx[grid] = 0
            if gsrc is not None:
                gsrc[tuple(slice(0, n) for n in idx.shape)] = g[grid]
        return [gx, None, gsrc]


@register
class ScatterOp(Scatter):
    """torch.scatter(input, dim, index, src or value) (ScatterBackward0 / ScatterBackward1)."""

    name = "scatter"
    functions = ("torch.scatter",)
    methods = ("scatter",)


@register
class ScatterAdd(Scatter):
    """torch.scatter_add(input, dim, index, src) (ScatterAddBackward0)."""

    name = "scatter_add"
    functions = ("torch.scatter_add",)
    methods = ("scatter_add",)
    add = True


class ScatterReduceArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int
    reduce: Literal["sum", "mean", "amax", "amin"]
    include_self: bool = True


@register
class ScatterReduce(Op):
    """torch.scatter_reduce(input, dim, index, src, reduce, include_self=True): GraphSAGE's mean aggregation, a
    global max pool. The gradient is torch's scatter_reduce_backward: amax/amin share it among the elements equal to
    the result (input's included, whether include_self or not, as torch counts them), mean divides by the count."""

    name = "scatter_reduce"
    tensors = ("input", "index", "src")
    differentiable = (True, False, True)
    Args = ScatterReduceArgs
    signature = ("input", "dim", "index", "src", "reduce")
    functions = ("torch.scatter_reduce",)
    methods = ("scatter_reduce",)

    def shape(self, shapes: list[Shape], a: ScatterReduceArgs) -> Shape:
        if not shapes[0]:
            raise ShapeError("scatter_reduce: a 0-d input is not traced")
        _check(self.name, shapes, True, norm_dim(a.dim, len(shapes[0])))
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[1] != "int64":
            raise ShapeError(f"scatter_reduce: index must be an int64 tensor, got {dtypes[1]}")
        if dtypes[2] != dtypes[0]:
            raise ShapeError(f"scatter_reduce: Expected self.dtype to be equal to src.dtype ({dtypes[0]} and {dtypes[2]})")
        return dtypes[0]

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: ScatterReduceArgs) -> None:
        _check_index(self.name, ranges[1], shapes[0][norm_dim(a.dim, len(shapes[0]))])

    def torch(self, t: Any, xs: list[Any], a: ScatterReduceArgs) -> Any:
        return t.scatter_reduce(xs[0], a.dim, xs[1], xs[2], a.reduce, include_self=a.include_self)

    def _parts(self, xs: list[Array], a: ScatterReduceArgs) -> tuple[tuple[Array, ...], Array, Array]:
        x, idx, src = xs
        d = norm_dim(a.dim, x.ndim)
        _values_in(self.name, idx, x.shape[d])
        hit = np.zeros(x.shape, dtype=bool)
        grid = _gather_grid(idx, d)
        hit[grid] = True
        return grid, src[tuple(slice(0, n) for n in idx.shape)], hit

    def forward(self, xs: list[Array], a: ScatterReduceArgs) -> Array:
        x = xs[0]
        if not xs[1].size:
            return x.copy()
        grid, s, hit = self._parts(xs, a)
        if a.reduce in ("sum", "mean"):
            out = np.where(hit, 0, x).astype(x.dtype) if not a.include_self else x.copy()
            np.add.at(out, grid, s)
            if a.reduce == "sum":
                return out
            count = np.full(x.shape, 1 if a.include_self else 0, dtype=np.int64)
            np.add.at(count, grid, 1)
            return np.where(hit, out / np.maximum(count, 1).astype(x.dtype), x).astype(x.dtype)
        pick = np.maximum if a.reduce == "amax" else np.minimum
        out = x.copy()
        if not a.include_self:  # (float tensors: the op takes no int64, whose means torch floor-divides)
            out[hit] = -np.inf if a.reduce == "amax" else np.inf
        pick.at(out, grid, s)
        return out

    def backward(self, g: Array, out: Array, xs: list[Array], a: ScatterReduceArgs) -> list[Array | None]:
        x, idx, src = xs
        gsrc = np.zeros(src.shape, dtype=g.dtype)
        if not idx.size:
            return [g.copy(), None, gsrc]
        grid, s, hit = self._parts(xs, a)
        part = tuple(slice(0, n) for n in idx.shape)
        with np.errstate(all="ignore"):
            if a.reduce == "sum":
                gx, gsrc[part] = g.copy(), g[grid]
            elif a.reduce == "mean":
                n = np.full(x.shape, 1 if a.include_self else 0, dtype=g.dtype)
                np.add.at(n, grid, 1)
                n[n == 0] = 1
                gx, gsrc[part] = g / n, g[grid] / n[grid]
            else:
                self_is = (x == out).astype(g.dtype)
                src_is = (s == out[grid]).astype(g.dtype)
                share = self_is.copy()
                np.add.at(share, grid, src_is)
                spread = g / share
                gx, gsrc[part] = self_is * spread, src_is * spread[grid]
        if not a.include_self:
            gx = np.where(hit, 0, gx).astype(g.dtype)
        return [gx.astype(g.dtype), None, gsrc]

class IndexAddArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int
    alpha: float = 1.0


@register
class IndexAdd(Op):
    """torch.index_add(input, dim, index, source, alpha=1): source's slices along dim added at index (IndexAddBackward0);
    the gradient of source is alpha times the output gradient's slices at index."""

    name = "index_add"
    tensors = ("input", "index", "source")
    differentiable = (True, False, True)
    Args = IndexAddArgs
    signature = ("input", "dim", "index", "source")
    functions = ("torch.index_add",)
    methods = ("index_add",)

    def shape(self, shapes: list[Shape], a: IndexAddArgs) -> Shape:
        x, idx, src = shapes
        if not x:
            raise ShapeError("index_add: a 0-d input is not traced")
        d = norm_dim(a.dim, len(x))
        if len(idx) != 1 or len(src) != len(x) or src[d] != idx[0] or any(src[i] != x[i] for i in range(len(x)) if i != d):
            raise ShapeError(f"index_add: index must be 1-d and source {list(src)} the input's shape {list(x)} with "
                             f"index's length along dim {a.dim}")
        return x

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[1] != "int64" or dtypes[0] != dtypes[2]:
            raise ShapeError(f"index_add: an int64 index and input and source of one dtype, got {dtypes}")
        return dtypes[0]

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: IndexAddArgs) -> None:
        _check_index(self.name, ranges[1], shapes[0][norm_dim(a.dim, len(shapes[0]))])

    def torch(self, t: Any, xs: list[Any], a: IndexAddArgs) -> Any:
        return t.index_add(xs[0], a.dim, xs[1], xs[2], alpha=a.alpha)

    def forward(self, xs: list[Array], a: IndexAddArgs) -> Array:
        x, idx, src = xs
        d = norm_dim(a.dim, x.ndim)
        _values_in(self.name, idx, x.shape[d])
        out = np.moveaxis(x.copy(), d, 0)
        np.add.at(out, idx, np.moveaxis(src, d, 0) * np.asarray(a.alpha, x.dtype))
        return np.moveaxis(out, 0, d)

    def backward(self, g: Array, out: Array, xs: list[Array], a: IndexAddArgs) -> list[Array | None]:
        d = norm_dim(a.dim, g.ndim)
        return [g.copy(), None, (np.take(g, xs[1], axis=d) * np.asarray(a.alpha, g.dtype)).astype(g.dtype)]


class FillDiagonalArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fill_value: float
    wrap: bool = False


@register
class FillDiagonal(Op):
    """`sim.fill_diagonal_(-1e9)` (SimCLR's mask of each sample against itself): x with its main diagonal (i, i, ...)
    set, every dim of one size, or a 2-D matrix taller than wide (`wrap`: the diagonal starts again below it, every
    cols + 1 rows, as numpy's fill_diagonal). torch writes into x (CopySlices); here a copy, as setitem's. The gradient
    passes except on the diagonal."""

    name = "fill_diagonal"
    Args = FillDiagonalArgs
    positional = ("fill_value", "wrap")
    methods = ("fill_diagonal",)  # (torch has only the in-place method; TensorMethods refuses the other)
    any_dtype = True
    hides_clone = True

    def shape(self, shapes: list[Shape], a: FillDiagonalArgs) -> Shape:
        x = shapes[0]
        if len(x) < 2:
            raise ShapeError(f"fill_diagonal_: dimensions must larger than 1, got a {len(x)}-d tensor")
        if len(x) > 2 and len(set(x)) != 1:
            raise ShapeError(f"fill_diagonal_: all dimensions of input must be of equal length, got {list(x)}")
        return x

    def torch(self, t: Any, xs: list[Any], a: FillDiagonalArgs) -> Any:
        y = xs[0].clone()  # torch writes into x itself; its old value is a node of its own here
        return y.fill_diagonal_(a.fill_value, wrap=a.wrap)

    def forward(self, xs: list[Array], a: FillDiagonalArgs) -> Array:
        y = np.array(xs[0], copy=True)
        np.fill_diagonal(y, np.asarray(a.fill_value).astype(y.dtype), wrap=a.wrap)
        return y

    def backward(self, g: Array, out: Array, xs: list[Array], a: FillDiagonalArgs) -> list[Array | None]:
        gx = np.array(g, copy=True)
        np.fill_diagonal(gx, 0, wrap=a.wrap)
        return [gx]
