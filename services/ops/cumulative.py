"""Running reductions along a dim: cumsum, cumprod, logcumsumexp, cummax and cummin (a pair: values, indices)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.ops.base import Array, Op, Shape, norm_dim, register
from services.ops.reductions import DimArgs


class CumsumArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int
    dtype: Literal["float32", "float64", "int64"] | None = None


@register
class Cumsum(Op):
    """torch.cumsum(x, dim, dtype=None): running sums along dim; the gradient is the running sum of the gradient
    from the end. int64 and bool tensors sum to int64 (position ids: `mask.long().cumsum(1)`), without a gradient;
    `dtype` casts the input first (`mask.cumsum(1, dtype=torch.float32)`), in the same node, as torch's."""

    name = "cumsum"
    any_dtype = True
    Args = CumsumArgs
    positional = ("dim",)
    functions = ("torch.cumsum",)
    methods = ("cumsum",)

    def shape(self, shapes: list[Shape], a: CumsumArgs) -> Shape:
        norm_dim(a.dim, len(shapes[0]))
        return shapes[0]

    def dtype_for(self, dtypes: list[str], a: CumsumArgs) -> str:
        return a.dtype or (dtypes[0] if dtypes[0].startswith("float") else "int64")

    def torch(self, t: Any, xs: list[Any], a: CumsumArgs) -> Any:
        return t.cumsum(xs[0], dim=a.dim, dtype=getattr(t, a.dtype) if a.dtype else None)

    def forward(self, xs: list[Array], a: CumsumArgs) -> Array:
        x = xs[0]
        dtype = np.dtype(a.dtype) if a.dtype else x.dtype if x.dtype.kind == "f" else np.dtype(np.int64)
        return x.astype(dtype) if x.ndim == 0 else np.cumsum(x, axis=norm_dim(a.dim, x.ndim), dtype=dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: CumsumArgs) -> list[Array | None]:
        if xs[0].dtype.kind != "f":
            return [None]
        if g.ndim == 0:
            return [g.astype(xs[0].dtype)]
        d = norm_dim(a.dim, g.ndim)
        return [np.flip(np.cumsum(np.flip(g, d), axis=d, dtype=g.dtype), d).astype(xs[0].dtype)]


@register
class Cumprod(Op):
    """torch.cumprod(x, dim): running products along dim (CumprodBackward0). d out_j / d x_i for i <= j is the
    product of x_0..x_j without x_i, exact where some are zero: a running product before i times one from i + 1 on."""

    name = "cumprod"
    Args = DimArgs
    positional = ("dim",)
    functions = ("torch.cumprod",)
    methods = ("cumprod",)

    def shape(self, shapes: list[Shape], a: DimArgs) -> Shape:
        norm_dim(a.dim, len(shapes[0]))  # a 0-d tensor has dims -1 and 0, as torch says
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: DimArgs) -> Any:
        return t.cumprod(xs[0], dim=a.dim)

    def forward(self, xs: list[Array], a: DimArgs) -> Array:
        x = xs[0]
        return x.copy() if x.ndim == 0 else np.cumprod(x, axis=norm_dim(a.dim, x.ndim), dtype=x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimArgs) -> list[Array | None]:
        x = xs[0]
        if x.ndim == 0:
            return [g.copy()]
        d = norm_dim(a.dim, x.ndim)
        xm, gm = np.moveaxis(x, d, -1).astype(np.float64), np.moveaxis(g, d, -1).astype(np.float64)
        n = xm.shape[-1]
        if n > 1 and not (x == 0).any():  # torch's formula where no element is 0: reversed cumsum of g * out, over x
            w = gm * np.moveaxis(out, d, -1).astype(np.float64)  # (so a NaN spreads to every gradient, as there)
            with np.errstate(divide="ignore", invalid="ignore"):
                gx = np.flip(np.cumsum(np.flip(w, -1), axis=-1), -1) / xm
            return [np.moveaxis(gx, -1, d).astype(x.dtype)]
        before = np.concatenate([np.ones_like(xm[..., :1]), np.cumprod(xm, axis=-1)[..., :-1]], axis=-1)  # x_0..x_{i-1}
        gx = np.zeros_like(xm)
        for i in range(n):  # sum over j >= i of g_j * before_i * x_{i+1}..x_j
            after = np.cumprod(np.concatenate([np.ones_like(xm[..., :1]), xm[..., i + 1 :]], axis=-1), axis=-1)
            gx[..., i] = before[..., i] * (gm[..., i:] * after).sum(axis=-1)
        return [np.moveaxis(gx, -1, d).astype(x.dtype)]


@register
class Logcumsumexp(Op):
    """torch.logcumsumexp(x, dim): log of the running sums of exp(x) (LogcumsumexpBackward0; a Cox model's risk
    sets). Its gradient is torch's formula: exp(x + reverse logcumsumexp(log|g| - out)), positive and negative
    parts of g apart, a zero g standing as the dtype's lowest number, so infinities give torch's NaNs."""

    name = "logcumsumexp"
    Args = DimArgs
    positional = ("dim",)
    functions = ("torch.logcumsumexp",)
    methods = ("logcumsumexp",)

    def shape(self, shapes: list[Shape], a: DimArgs) -> Shape:
        norm_dim(a.dim, len(shapes[0]))
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: DimArgs) -> Any:
        return t.logcumsumexp(xs[0], dim=a.dim)

    def forward(self, xs: list[Array], a: DimArgs) -> Array:
        x = xs[0]
        if x.ndim == 0 or x.size == 0:
            return x.copy()
        with np.errstate(invalid="ignore"):
            return np.logaddexp.accumulate(x.astype(np.float64), axis=norm_dim(a.dim, x.ndim)).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimArgs) -> list[Array | None]:
        x = xs[0]
        if x.ndim == 0 or x.size == 0:
            return [g.astype(x.dtype)]
        d = norm_dim(a.dim, x.ndim)
        lowest = np.finfo(x.dtype).min
        g64, out64, x64 = g.astype(np.float64), out.astype(np.float64), x.astype(np.float64)

        def reverse_lcse(v: Array) -> Array:
            return np.flip(np.logaddexp.accumulate(np.flip(v, d), axis=d), d)

        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_abs = np.log(np.abs(g64))
            parts = [np.exp(reverse_lcse(np.where(sign * g64 > 0, log_abs, lowest) - out64) + x64) for sign in (1, -1)]
            return [(parts[0] - parts[1]).astype(x.dtype)]


class CumExtremeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int
    part: Literal["values", "indices"] = "values"


class CumExtreme(Op):
    """torch.cummax / torch.cummin(x, dim): the running max (min) along dim and where it was last reached (a later
    equal value takes over; a NaN takes over and holds until the next NaN), as torch's CPU kernel; the gradient goes
    to those places (Cummax/CumminBackward0), summed where one place is picked for several positions."""

    Args = CumExtremeArgs
    positional = ("dim",)
    any_dtype = True
    better: Any = None

    def shape(self, shapes: list[Shape], a: CumExtremeArgs) -> Shape:
        norm_dim(a.dim, len(shapes[0]))
        return shapes[0]

    def dtype_for(self, dtypes: list[str], a: CumExtremeArgs) -> str:
        return "int64" if a.part == "indices" else dtypes[0]

    def torch(self, t: Any, xs: list[Any], a: CumExtremeArgs) -> Any:
        return getattr(t, self.name)(xs[0], dim=a.dim)[0 if a.part == "values" else 1]

    def index(self, x: Array, a: CumExtremeArgs) -> Array:
        """Where the running extreme was last reached, at each position along dim."""
        if x.ndim == 0:
            return np.zeros((), np.int64)
        d = norm_dim(a.dim, x.ndim)
        xm = np.moveaxis(x, d, -1)
        idx = np.zeros(xm.shape, np.int64)
        if xm.shape[-1] == 0:
            return np.moveaxis(idx, -1, d)
        best, at = xm[..., 0].copy(), np.zeros(xm.shape[:-1], np.int64)
        nan = np.isnan if x.dtype.kind == "f" else (lambda v: np.zeros(np.shape(v), bool))
        for j in range(xm.shape[-1]):
            v = xm[..., j]
            with np.errstate(invalid="ignore"):
                take = nan(v) | (~nan(best) & self.better(v, best))
            best, at = np.where(take, v, best), np.where(take, j, at)
            idx[..., j] = at
        return np.moveaxis(idx, -1, d)

    def forward(self, xs: list[Array], a: CumExtremeArgs) -> Array:
        x = xs[0]
        idx = self.index(x, a)
        if a.part == "indices":
            return idx
        return x.copy() if x.ndim == 0 else np.take_along_axis(x, idx, axis=norm_dim(a.dim, x.ndim))

    def backward(self, g: Array, out: Array, xs: list[Array], a: CumExtremeArgs) -> list[Array | None]:
        x = xs[0]
        if a.part == "indices" or x.dtype.kind != "f":
            return [None]
        if x.ndim == 0:
            return [g.astype(x.dtype)]
        d = norm_dim(a.dim, x.ndim)
        idx = np.moveaxis(self.index(x, a), d, -1)
        gm = np.moveaxis(g, d, -1).astype(np.float64)
        gx = np.zeros(gm.shape, np.float64)
        rows = np.indices(gm.shape[:-1] + (1,))[:-1]
        np.add.at(gx, (*[r.repeat(gm.shape[-1], -1) for r in rows], idx), gm)
        return [np.moveaxis(gx, -1, d).astype(x.dtype)]


@register
class Cummax(CumExtreme):
    name = "cummax"
    functions = ("torch.cummax",)
    methods = ("cummax",)
    better = staticmethod(np.greater_equal)


@register
class Cummin(CumExtreme):
    name = "cummin"
    functions = ("torch.cummin",)
    methods = ("cummin",)
    better = staticmethod(np.less_equal)
