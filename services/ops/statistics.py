"""Statistics that give two tensors or pick an element: torch.var_mean / std_mean ((var or std, mean), one node
each) and torch.median (the lower median; over a dim, its values and indices, the index torch's CPU kernel picks
among equal values: the ((n - 1) // 2)-th in (value, index) order); torch.nansum (NaNs as zeros)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, norm_dim, register
from services.ops.reductions import Reduce, ReduceArgs, VarArgs, VarBase, _axes, _expand, _reduced_shape, _var_backward


class VarMeanArgs(VarArgs):
    part: Literal["spread", "mean"] = "spread"
    """'spread': the variance (std_mean: the standard deviation), 'mean': the mean."""


@register
class VarMean(VarBase):
    """torch.var_mean(x, dim, correction, keepdim): (var, mean) (VarMeanBackward0); each part's gradient is var's or
    mean's."""

    name = "var_mean"
    Args = VarMeanArgs

    def torch(self, t: Any, xs: list[Any], a: VarMeanArgs) -> Any:  # type: ignore[override]
        out = getattr(t, self.name)(xs[0], dim=a.dim, correction=a.dof_correction, keepdim=a.keepdim)
        return out[0 if a.part == "spread" else 1]

    def spread(self, x: Array, a: VarMeanArgs) -> Array:
        return self.variance(x, a)

    def forward(self, xs: list[Array], a: VarMeanArgs) -> Array:  # type: ignore[override]
        x = xs[0]
        if a.part == "mean":
            return np.asarray(x.mean(axis=_axes(a.dim, x.ndim), keepdims=a.keepdim), dtype=x.dtype)
        return self.spread(x, a)

    def backward(self, g: Array, out: Array, xs: list[Array], a: VarMeanArgs) -> list[Array | None]:  # type: ignore[override]
        x = xs[0]
        if a.part == "mean":
            count = int(np.prod([x.shape[i] for i in _axes(a.dim, x.ndim)]))
            return [(_expand(g, x.shape, ReduceArgs(dim=a.dim, keepdim=a.keepdim)) / np.asarray(max(count, 1), x.dtype)).astype(x.dtype)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return [self.spread_backward(g, out, x, a)]

    def spread_backward(self, g: Array, out: Array, x: Array, a: VarMeanArgs) -> Array:
        return _var_backward(g, x, a)


@register
class StdMean(VarMean):
    """torch.std_mean: (std, mean) (StdMeanBackward0); the std's gradient is torch's std_backward."""

    name = "std_mean"

    def spread(self, x: Array, a: VarMeanArgs) -> Array:
        return np.sqrt(self.variance(x, a))

    def spread_backward(self, g: Array, out: Array, x: Array, a: VarMeanArgs) -> Array:
        g_var = np.where(out == 0, np.zeros((), g.dtype), g / (2 * out)).astype(g.dtype)
        return _var_backward(g_var, x, a)


class MedianArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int | None = None
    keepdim: bool = False
    part: Literal["values", "indices"] = "values"


@register
class Median(Op):
    """torch.median(x): the lower median of all elements, its gradient shared evenly among the elements equal to it
    (MedianBackward0); torch.median(x, dim): values and indices along dim (MedianBackward1), NaN (the first) where a
    row has one."""

    name = "median"
    Args = MedianArgs
    positional = ("dim", "keepdim")
    functions = ("torch.median",)
    methods = ("median",)
    any_dtype = True
    differentiable = (True,)

    def shape(self, shapes: list[Shape], a: MedianArgs) -> Shape:
        x = shapes[0]
        if a.dim is None:
            return ()
        d = norm_dim(a.dim, len(x))
        if x and x[d] == 0:
            raise ShapeError(f"median(): Expected reduction dim {d} to have non-zero size.")
        return _reduced_shape(x, ReduceArgs(dim=a.dim, keepdim=a.keepdim)) if x else ()

    def dtype_for(self, dtypes: list[str], a: MedianArgs) -> str:
        return "int64" if a.part == "indices" else dtypes[0]

    def torch(self, t: Any, xs: list[Any], a: MedianArgs) -> Any:
        if a.dim is None:
            return t.median(xs[0])
        return t.median(xs[0], dim=a.dim, keepdim=a.keepdim)[0 if a.part == "values" else 1]

    def on_cuda(self, a: MedianArgs) -> str | None:
        if a.dim is None:
            return None
        return ("median: along a dim, torch's CUDA kernel picks among equal values otherwise than its CPU kernel, "
                "whose pick the reference engine follows, so with ties the indices and the gradient may differ")

    def index(self, x: Array, a: MedianArgs) -> Array:
        """Along dim (keepdim): the median's index, or the first NaN's."""
        axis = norm_dim(a.dim or 0, x.ndim)
        n = x.shape[axis]
        order = np.argsort(x, axis=axis, kind="stable")  # (value, index) order; NaNs last
        idx = np.take(order, [(n - 1) // 2], axis=axis)
        if x.dtype.kind == "f":
            nan = np.isnan(x)
            idx = np.where(nan.any(axis=axis, keepdims=True), np.argmax(nan, axis=axis, keepdims=True), idx)
        return idx

    def forward(self, xs: list[Array], a: MedianArgs) -> Array:
        x = xs[0]
        if a.dim is None or x.ndim == 0:
            if a.part == "indices":  # (a 0-d tensor's, along dim 0)
                return np.zeros((), np.int64)
            flat = x.ravel()
            if flat.dtype.kind == "f" and (np.isnan(flat).any() or not flat.size):  # (NaN of nothing, as torch)
                return np.asarray(np.nan, dtype=x.dtype)
            return np.asarray(np.sort(flat, kind="stable")[(flat.size - 1) // 2], dtype=x.dtype)
        idx = self.index(x, a)
        out = idx if a.part == "indices" else np.take_along_axis(x, idx, axis=norm_dim(a.dim, x.ndim))
        return out if a.keepdim else np.squeeze(out, axis=norm_dim(a.dim, x.ndim))

    def backward(self, g: Array, out: Array, xs: list[Array], a: MedianArgs) -> list[Array | None]:
        x = xs[0]
        if a.part == "indices" or x.dtype.kind != "f":
            return [None]
        if a.dim is None or x.ndim == 0:
            mask = np.isnan(x) if np.isnan(out) else x == out
            with np.errstate(divide="ignore", invalid="ignore"):
                return [np.where(mask, g / np.asarray(mask.sum(), g.dtype), 0).astype(x.dtype)]
        axis = norm_dim(a.dim, x.ndim)
        gx = np.zeros_like(x)
        np.put_along_axis(gx, self.index(x, a), g if a.keepdim else np.expand_dims(g, axis), axis=axis)
        return [gx]


@register
class Nansum(Reduce):
    """torch.nansum(x, dim, keepdim) (NansumBackward0): the sum with NaNs counted as zero; their gradient is zero
    (imputation code; torch.nanmean divides it by the count of the others)."""

    name = "nansum"
    functions = ("torch.nansum",)
    methods = ("nansum",)
    any_dtype = True

    def dtype(self, dtypes: list[str]) -> str:
        return dtypes[0] if dtypes[0].startswith("float") else "int64"  # (of ints and bools: a count, as torch's sum)

    def forward(self, xs: list[Array], a: ReduceArgs) -> Array:
        x = xs[0]
        if x.dtype.kind != "f":
            return np.asarray(x.sum(axis=_axes(a.dim, x.ndim), keepdims=True, dtype=np.int64)).reshape(_reduced_shape(x.shape, a))
        out = np.nansum(x.astype(np.float64), axis=_axes(a.dim, x.ndim), keepdims=True)
        return out.astype(x.dtype).reshape(_reduced_shape(x.shape, a))

    def backward(self, g: Array, out: Array, xs: list[Array], a: ReduceArgs) -> list[Array | None]:
        x = xs[0]
        if x.dtype.kind != "f":
            return [None]
        return [np.where(np.isnan(x), np.zeros((), x.dtype), _expand(g, x.shape, a)).astype(x.dtype)]
