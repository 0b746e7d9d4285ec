"""Reductions over all elements or some dims: sum, mean, max, min, amax, amin, prod, norm, argmax, argmin,
softmax, log_softmax."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, norm_dim, register, sgn
from services.ops.comparison import no_bool


class ReduceArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int | list[int] | None = None
    keepdim: bool = False


def _axes(dim: int | list[int] | None, ndim: int) -> tuple[int, ...]:
    """Axes reduced over; None and [] both mean every dim, as in torch."""
    if dim is None or dim == []:
        return tuple(range(ndim))
    dims = [dim] if isinstance(dim, int) else dim
    axes = tuple(sorted({norm_dim(d, ndim) for d in dims}))
    if len(axes) != len(dims):
        raise ValueError(f"dim {dim} repeats an axis")
    return axes if ndim else ()


def _reduced_shape(shape: Shape, a: ReduceArgs) -> Shape:
    axes = _axes(a.dim, len(shape))
    if a.keepdim:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _expand(g: Array, shape: Shape, a: ReduceArgs) -> Array:
    """Broadcast a reduced gradient back over the reduced axes."""
    axes = _axes(a.dim, len(shape))
    if not a.keepdim:
        g = np.expand_dims(g, axes) if axes else g
    return np.broadcast_to(g, shape)


class Reduce(Op):
    Args = ReduceArgs
    positional = ("dim", "keepdim")

    def shape(self, shapes: list[Shape], a: ReduceArgs) -> Shape:
        return _reduced_shape(shapes[0], a)

    def torch(self, t: Any, xs: list[Any], a: ReduceArgs) -> Any:
        fn = getattr(t, self.name)
        return fn(xs[0]) if a.dim is None and not a.keepdim else fn(xs[0], dim=a.dim, keepdim=a.keepdim)


@register
class Sum(Reduce):
    """Sums; of int64 or bool tensors an int64 count, as in torch (`(x > 0).sum()`)."""

    name = "sum"
    functions = ("torch.sum",)
    methods = ("sum",)
    any_dtype = True

    def dtype(self, dtypes: list[str]) -> str:
        return dtypes[0] if dtypes[0].startswith("float") else "int64"

    def forward(self, xs: list[Array], a: ReduceArgs) -> Array:
        x = xs[0]
        return np.asarray(x.sum(axis=_axes(a.dim, x.ndim), keepdims=a.keepdim), dtype=x.dtype if x.dtype.kind == "f" else np.int64)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ReduceArgs) -> list[Array | None]:
        return [np.array(_expand(g, xs[0].shape, a))]


@register
class Mean(Reduce):
    name = "mean"
    functions = ("torch.mean",)
    methods = ("mean",)

    def forward(self, xs: list[Array], a: ReduceArgs) -> Array:
        x = xs[0]
        return np.asarray(x.mean(axis=_axes(a.dim, x.ndim), keepdims=a.keepdim), dtype=x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ReduceArgs) -> list[Array | None]:
        x = xs[0]
        count = int(np.prod([x.shape[i] for i in _axes(a.dim, x.ndim)]))
        return [(_expand(g, x.shape, a) / np.asarray(count, g.dtype)).astype(g.dtype)]


class ExtremeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int | None = None
    keepdim: bool = False


class Extreme(Reduce):
    """max/min. Over all elements the grad is shared evenly among ties (torch's MaxBackward1);
    over a dim it goes to the first extreme element (the index torch returns). Returns values only."""

    Args = ExtremeArgs
    any_dtype = True  # `int(edge_index.max()) + 1`: of int64 an int64, no gradient
    pick: Any = None
    arg: Any = None

    def shape(self, shapes: list[Shape], a: ExtremeArgs) -> Shape:
        if 0 in shapes[0]:
            raise ShapeError(f"{self.name}() of an empty tensor")
        if a.keepdim and a.dim is None:
            raise ShapeError(f"{self.name}(): keepdim needs a dim; over all elements it returns one value")
        return _reduced_shape(shapes[0], ReduceArgs(dim=a.dim, keepdim=a.keepdim))

    def torch(self, t: Any, xs: list[Any], a: ExtremeArgs) -> Any:
        fn = getattr(t, self.name)
        return fn(xs[0]) if a.dim is None else fn(xs[0], dim=a.dim, keepdim=a.keepdim).values

    def forward(self, xs: list[Array], a: ExtremeArgs) -> Array:
        x = xs[0]
        axis = None if a.dim is None else norm_dim(a.dim, x.ndim)
        if x.ndim == 0:
            return x.copy()
        return np.asarray(type(self).pick(x, axis=axis, keepdims=a.keepdim), dtype=x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ExtremeArgs) -> list[Array | None]:
        x = xs[0]
        if a.dim is None or x.ndim == 0:  # torch's evenly_distribute_backward: a NaN result's gradient goes to the NaNs
            mask = np.isnan(x) if np.isnan(out) else x == out  # (zeros elsewhere, even where g is NaN: a masked fill)
            return [np.where(mask, g / mask.sum(), np.zeros((), g.dtype)).astype(x.dtype)]
        axis = norm_dim(a.dim, x.ndim)
        idx = np.expand_dims(type(self).arg(x, axis=axis), axis)
        gk = g if a.keepdim else np.expand_dims(g, axis)
        dx = np.zeros_like(x)
        np.put_along_axis(dx, idx, gk, axis=axis)
        return [dx]


@register
class Max(Extreme):
    name = "max"
    functions = ("torch.max",)
    methods = ("max",)
    pick = np.max
    arg = np.argmax


@register
class Min(Extreme):
    name = "min"
    functions = ("torch.min",)
    methods = ("min",)
    pick = np.min
    arg = np.argmin


@register
class Amax(Reduce):
    """amax/amin over dims (all by default): the gradient is shared evenly among ties (AmaxBackward0)."""

    name = "amax"
    functions = ("torch.amax",)
    methods = ("amax",)
    any_dtype = True
    pick: Any = np.max

    def shape(self, shapes: list[Shape], a: ReduceArgs) -> Shape:
        if 0 in shapes[0]:
            raise ShapeError(f"{self.name}() of an empty tensor")
        return _reduced_shape(shapes[0], a)

    def torch(self, t: Any, xs: list[Any], a: ReduceArgs) -> Any:
        return getattr(t, self.name)(xs[0], dim=() if a.dim is None else a.dim, keepdim=a.keepdim)

    def forward(self, xs: list[Array], a: ReduceArgs) -> Array:
        x = xs[0]
        return np.asarray(type(self).pick(x, axis=_axes(a.dim, x.ndim), keepdims=a.keepdim), dtype=x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ReduceArgs) -> list[Array | None]:
        x = xs[0]
        mask = x == _expand(out, x.shape, a)
        count = mask.sum(axis=_axes(a.dim, x.ndim), keepdims=True)
        return [(mask * (_expand(g, x.shape, a) / count)).astype(x.dtype)]


@register
class Amin(Amax):
    name = "amin"
    functions = ("torch.amin",)
    methods = ("amin",)
    pick = np.min


class ProdArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int | None = None
    keepdim: bool = False


def _exclusive_products(x: Array, axis: int) -> Array:
    """Each element's product of the others along the axis (exact where some are zero, unlike prod / x)."""
    if x.shape[axis] == 0:
        return np.zeros_like(x)
    ones = np.ones_like(np.take(x, [0], axis=axis))
    left = np.concatenate([ones, np.cumprod(x, axis=axis)], axis=axis)
    right = np.flip(np.concatenate([ones, np.cumprod(np.flip(x, axis), axis=axis)], axis=axis), axis)
    n = x.shape[axis]
    return np.take(left, range(n), axis=axis) * np.take(right, range(1, n + 1), axis=axis)


@register
class Prod(Reduce):
    """The product over all elements or one dim (ProdBackward0): each element's gradient is the product of the
    others, zeros included."""

    name = "prod"
    Args = ProdArgs
    functions = ("torch.prod",)
    methods = ("prod",)

    def torch(self, t: Any, xs: list[Any], a: ProdArgs) -> Any:
        return t.prod(xs[0]) if a.dim is None else t.prod(xs[0], dim=a.dim, keepdim=a.keepdim)

    def shape(self, shapes: list[Shape], a: ProdArgs) -> Shape:
        if a.dim is None and a.keepdim:
            raise ShapeError("prod(): keepdim needs a dim")
        return _reduced_shape(shapes[0], ReduceArgs(dim=a.dim, keepdim=a.keepdim))

    def forward(self, xs: list[Array], a: ProdArgs) -> Array:
        x = xs[0]
        axis = None if a.dim is None else norm_dim(a.dim, max(x.ndim, 1))
        return np.asarray(np.prod(x, axis=axis if x.ndim else None, keepdims=a.keepdim), dtype=x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ProdArgs) -> list[Array | None]:
        x = xs[0]
        if x.ndim == 0:
            return [np.asarray(g, dtype=x.dtype)]
        # torch's prod_backward: result / input when no element is 0 (NaN spreads as there), else the products of
        # the others (exact at the zeros)
        zeros = bool((x == 0).any())
        if a.dim is None:
            with np.errstate(divide="ignore", invalid="ignore"):
                others = _exclusive_products(x.reshape(-1), 0).reshape(x.shape) if zeros else out / x
            return [(others * g).astype(x.dtype)]
        axis = norm_dim(a.dim, x.ndim)
        gk = g if a.keepdim else np.expand_dims(g, axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            others = _exclusive_products(x, axis) if zeros else (out if a.keepdim else np.expand_dims(out, axis)) / x
        return [(others * gk).astype(x.dtype)]


class NormArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p: float | Literal["fro"] = 2
    dim: int | list[int] | None = None
    keepdim: bool = False

    @model_validator(mode="after")
    def _positive(self) -> NormArgs:
        if self.p != "fro" and not (self.p > 0 or self.p == -math.inf):
            raise ValueError(f"p must be positive, inf or -inf (a vector norm), got {self.p}")
        return self


@register
class Norm(Op):
    """x.norm(p) / torch.linalg.vector_norm(x, ord) over all elements or dims (LinalgVectorNormBackward0): p 2
    (Frobenius), 1, any p > 0, inf (max |x|) or -inf (min |x|). The gradient of the 2-norm at 0 is 0, as torch's; at
    +-inf it is shared evenly by the elements that reach the norm."""

    name = "norm"
    Args = NormArgs
    positional = ("p", "dim", "keepdim")
    functions = ("torch.norm",)
    methods = ("norm",)

    def shape(self, shapes: list[Shape], a: NormArgs) -> Shape:
        return _reduced_shape(shapes[0], ReduceArgs(dim=a.dim, keepdim=a.keepdim))

    def torch(self, t: Any, xs: list[Any], a: NormArgs) -> Any:
        return t.linalg.vector_norm(xs[0], ord=2 if a.p == "fro" else a.p, dim=a.dim, keepdim=a.keepdim)

    def forward(self, xs: list[Array], a: NormArgs) -> Array:
        x = xs[0]
        axes = _axes(a.dim, x.ndim)
        ax = np.abs(x.astype(np.float64))
        if a.p == 1:
            v = ax.sum(axis=axes, keepdims=a.keepdim)
        elif a.p in (2, "fro"):
            v = np.sqrt((ax * ax).sum(axis=axes, keepdims=a.keepdim))
        elif math.isinf(a.p):  # type: ignore[arg-type]
            v = (ax.max if a.p > 0 else ax.min)(axis=axes, keepdims=a.keepdim)  # type: ignore[operator]
        else:
            v = (ax ** a.p).sum(axis=axes, keepdims=a.keepdim) ** (1 / a.p)  # type: ignore[operator]
        return np.asarray(v, dtype=x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: NormArgs) -> list[Array | None]:
        x = xs[0]
        r = ReduceArgs(dim=a.dim, keepdim=a.keepdim)
        ge = _expand(g, x.shape, r).astype(np.float64)
        if a.p == 1:
            return [(sgn(x) * ge).astype(x.dtype)]
        n = _expand(out, x.shape, r).astype(np.float64)
        x64 = x.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            if a.p in (2, "fro"):
                d = np.where(n == 0, 0, x64 / n)
            elif math.isinf(a.p):  # type: ignore[arg-type]
                hit = ((np.abs(x64) == n) | np.isnan(x64)).astype(np.float64)  # torch's mask: the extremes and NaNs
                d = sgn(x64) * hit / _expand(hit.sum(axis=_axes(a.dim, x.ndim), keepdims=True), x.shape,
                                                  ReduceArgs(dim=a.dim, keepdim=True))
            else:
                p = float(a.p)  # type: ignore[arg-type]
                d = np.where((n == 0) | (x64 == 0), 0, np.sign(x64) * np.abs(x64) ** (p - 1) / n ** (p - 1))
        return [(d * ge).astype(x.dtype)]


class ArgExtreme(Op):
    """argmax/argmin: the index of the first extreme element (NaN counts as the extreme, as in torch), over all
    elements (flat) or along a dim; int64, so no gradient flows through it (accuracy: `(out.argmax(1) == y)`)."""

    Args = ExtremeArgs
    positional = ("dim", "keepdim")
    differentiable = (False,)
    any_dtype = True
    arg: Any = None

    def shape(self, shapes: list[Shape], a: ExtremeArgs) -> Shape:
        if 0 in shapes[0]:
            raise ShapeError(f"{self.name}() of an empty tensor")
        if a.dim is None:
            return (1,) * len(shapes[0]) if a.keepdim else ()
        return _reduced_shape(shapes[0], ReduceArgs(dim=a.dim, keepdim=a.keepdim))

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[0] == "bool":  # (so is max(dim=...) of a bool tensor here, whose indices are an argmax node)
            raise ShapeError(f"{self.name}(): does not support bool input (torch raises it): cast it with .long() first")
        return "int64"

    def torch(self, t: Any, xs: list[Any], a: ExtremeArgs) -> Any:
        return getattr(t, self.name)(xs[0], dim=a.dim, keepdim=a.keepdim)

    def forward(self, xs: list[Array], a: ExtremeArgs) -> Array:
        x = xs[0]
        if a.dim is None:
            flat = x.reshape(-1)
            i = int(np.argmax(np.isnan(flat))) if np.isnan(flat).any() else int(type(self).arg(flat))
            return np.full((1,) * x.ndim if a.keepdim else (), i, dtype=np.int64)
        axis = norm_dim(a.dim, max(x.ndim, 1))
        if x.ndim == 0:
            return np.zeros((), dtype=np.int64)
        nan = np.isnan(x)
        idx = np.where(nan.any(axis=axis), np.argmax(nan, axis=axis), type(self).arg(np.where(nan, 0, x), axis=axis))
        return (np.expand_dims(idx, axis) if a.keepdim else idx).astype(np.int64)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ExtremeArgs) -> list[Array | None]:
        return [None]




@register
class AtNorm(Norm):
    """The norm as ATen's own composites call it (at::norm: pairwise_distance, triplet_margin_loss), NormBackward1 in
    torch's graph where torch.norm / x.norm record LinalgVectorNormBackward0; the same values."""

    name = "at_norm"
    functions = ()
    methods = ()

    def torch(self, t: Any, xs: list[Any], a: NormArgs) -> Any:
        dim = [] if a.dim is None else [a.dim] if isinstance(a.dim, int) else list(a.dim)
        return t._VF.norm(xs[0], 2.0 if a.p == "fro" else float(a.p), dim, a.keepdim)
@register
class Argmax(ArgExtreme):
    name = "argmax"
    functions = ("torch.argmax",)
    methods = ("argmax",)
    arg = np.argmax


@register
class Argmin(ArgExtreme):
    name = "argmin"
    functions = ("torch.argmin",)
    methods = ("argmin",)
    arg = np.argmin


class DimArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int


def _log_softmax(x: Array, axis: int) -> Array:
    if x.size == 0:
        return x.copy()
    m = x.max(axis=axis, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


class SoftmaxBase(Op):
    Args = DimArgs
    positional = ("dim",)

    def shape(self, shapes: list[Shape], a: DimArgs) -> Shape:
        norm_dim(a.dim, len(shapes[0]))
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: DimArgs) -> Any:
        return getattr(t.nn.functional, self.name)(xs[0], dim=a.dim)


@register
class Softmax(SoftmaxBase):
    name = "softmax"
    functions = ("torch.softmax", "F.softmax")
    methods = ("softmax",)
    out_range = (0.0, 1.0)

    def forward(self, xs: list[Array], a: DimArgs) -> Array:
        return np.exp(_log_softmax(xs[0], norm_dim(a.dim, xs[0].ndim)))

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimArgs) -> list[Array | None]:
        axis = norm_dim(a.dim, out.ndim)
        return [out * (g - (g * out).sum(axis=axis, keepdims=True))]


@register
class SafeSoftmax(SoftmaxBase):
    """softmax that gives 0 for a row of -inf only (where softmax gives NaN): torch's _safe_softmax, which its
    attention math runs on the masked scores (SafeSoftmaxBackward0), so a query whose keys are all masked gets 0."""

    name = "safe_softmax"
    out_range = (0.0, 1.0)

    def torch(self, t: Any, xs: list[Any], a: DimArgs) -> Any:
        return t._safe_softmax(xs[0], a.dim)

    def forward(self, xs: list[Array], a: DimArgs) -> Array:
        axis = norm_dim(a.dim, xs[0].ndim)
        masked = np.all(np.isneginf(xs[0]), axis=axis, keepdims=True)
        out = np.exp(_log_softmax(np.where(masked, np.zeros((), xs[0].dtype), xs[0]), axis))
        return np.where(masked, np.zeros((), out.dtype), out)

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimArgs) -> list[Array | None]:
        axis = norm_dim(a.dim, out.ndim)
        return [out * (g - (g * out).sum(axis=axis, keepdims=True))]


@register
class LogSoftmax(SoftmaxBase):
    name = "log_softmax"
    functions = ("torch.log_softmax", "F.log_softmax")
    methods = ("log_softmax",)

    def forward(self, xs: list[Array], a: DimArgs) -> Array:
        return _log_softmax(xs[0], norm_dim(a.dim, xs[0].ndim))

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimArgs) -> list[Array | None]:
        axis = norm_dim(a.dim, out.ndim)
        return [g - np.exp(out) * g.sum(axis=axis, keepdims=True)]


# ---- var, std, logsumexp -----------------------------------------------------------------------


class VarArgs(BaseModel):
    """torch.var/std's arguments: `correction` (default 1), or the legacy `unbiased` flag (True: 1, False: 0)."""

    model_config = ConfigDict(extra="forbid")
    dim: int | list[int] | None = None
    unbiased: bool | None = None
    correction: float | None = None
    keepdim: bool = False

    @model_validator(mode="before")
    @classmethod
    def _bool_dim_is_unbiased(cls, data: Any) -> Any:
        """torch.var(x, True): a bool where dim goes is the legacy `unbiased` flag (pydantic would read it as 1)."""
        if isinstance(data, dict) and isinstance(data.get("dim"), bool):
            if data.get("unbiased") is not None:
                raise ValueError("dim is a bool and unbiased is given too")
            data = {k: v for k, v in data.items() if k != "dim"} | {"unbiased": data["dim"]}
        return data

    @property
    def dof_correction(self) -> float:
        """The correction subtracted from the count: `correction`, else 1 unless unbiased=False."""
        if self.correction is not None:
            return self.correction
        return 0.0 if self.unbiased is False else 1.0


def _var_backward(g: Array, x: Array, a: VarArgs) -> Array:
    """torch's var_backward: over all elements (dim None, or a 0-d input) a count minus correction
    <= 0 gives grad * (NaN where x == mean, else inf); over dims, 2 / (count - correction) as it comes."""
    c = a.dof_correction
    if x.size == 0:
        return np.zeros_like(x)
    if a.dim is None or x.ndim == 0:
        dof = x.size - c
        if dof <= 0:
            return g * np.where(x == x.mean(), np.nan, np.inf).astype(x.dtype)
        return (np.asarray(2.0 / dof, x.dtype) * g * (x - x.mean())).astype(x.dtype)
    axes = _axes(a.dim, x.ndim)
    count = int(np.prod([x.shape[i] for i in axes]))
    with np.errstate(divide="ignore"):
        scale = np.float64(2.0) / np.float64(count - c)
    gx = _expand(g, x.shape, ReduceArgs(dim=a.dim, keepdim=a.keepdim))
    return (np.asarray(scale, x.dtype) * gx * (x - x.mean(axis=axes, keepdims=True))).astype(x.dtype)


class VarBase(Reduce):
    """Variance (or its square root) over `dim`: sum((x - mean)^2) / max(0, count - correction);
    inf, or NaN for 0/0, where that count is <= 0, as torch (which warns)."""

    Args = VarArgs
    positional = ("dim", "unbiased", "keepdim")

    def shape(self, shapes: list[Shape], a: VarArgs) -> Shape:
        if a.unbiased is not None and a.correction is not None:
            raise ShapeError(f"{self.name}: give either unbiased or correction, not both")
        if a.correction is not None and np.isnan(a.correction):
            raise ShapeError(f"{self.name}: correction is NaN")
        if a.dim == [] and shapes[0]:
            raise ShapeError(f"{self.name}: dim=[] is not supported: torch reduces every dim but its backward divides "
                             "by a count of 1 (giving inf); give dim=None to reduce every dim")
        return _reduced_shape(shapes[0], ReduceArgs(dim=a.dim, keepdim=a.keepdim))

    def dtype(self, dtypes: list[str]) -> str:
        return no_bool(self, dtypes)

    def torch(self, t: Any, xs: list[Any], a: VarArgs) -> Any:
        return getattr(t, self.name)(xs[0], dim=a.dim, correction=a.dof_correction, keepdim=a.keepdim)

    def variance(self, x: Array, a: VarArgs) -> Array:
        """The (corrected) variance over a.dim; NaN over no elements."""
        axes = _axes(a.dim, x.ndim)
        count = int(np.prod([x.shape[i] for i in axes]))
        if count == 0:  # torch: NaN over nothing, whatever the correction
            return np.full(_reduced_shape(x.shape, ReduceArgs(dim=a.dim, keepdim=a.keepdim)), np.nan, x.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = x - x.mean(axis=axes, keepdims=True)
            ss = (d * d).sum(axis=axes, keepdims=a.keepdim)
            return np.asarray(ss / np.asarray(max(0.0, count - a.dof_correction), x.dtype), dtype=x.dtype)


@register
class Var(VarBase):
    """torch.var (VarBackward0)."""

    name = "var"
    functions = ("torch.var",)
    methods = ("var",)

    def forward(self, xs: list[Array], a: VarArgs) -> Array:
        return self.variance(xs[0], a)

    def backward(self, g: Array, out: Array, xs: list[Array], a: VarArgs) -> list[Array | None]:
        with np.errstate(invalid="ignore"):
            return [_var_backward(g, xs[0], a)]


@register
class Std(VarBase):
    """torch.std: sqrt of var; its backward is torch's std_backward (StdBackward0)."""

    name = "std"
    functions = ("torch.std",)
    methods = ("std",)

    def forward(self, xs: list[Array], a: VarArgs) -> Array:
        return np.sqrt(self.variance(xs[0], a))

    def backward(self, g: Array, out: Array, xs: list[Array], a: VarArgs) -> list[Array | None]:
        # torch's std_backward: grad / (2 std), 0 where std == 0, then var's backward.
        with np.errstate(divide="ignore", invalid="ignore"):
            g_var = np.where(out == 0, np.zeros((), g.dtype), g / (2 * out)).astype(g.dtype)
            return [_var_backward(g_var, xs[0], a)]


class LogsumexpArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int | list[int]
    keepdim: bool = False


@register
class Logsumexp(Op):
    """log(sum(exp(x))) over `dim`, computed as max + log(sum(exp(x - max))) so large inputs do not
    overflow (an infinite max is replaced by 0, as torch); d/dx = exp(x - out)."""

    name = "logsumexp"
    Args = LogsumexpArgs
    positional = ("dim", "keepdim")
    functions = ("torch.logsumexp",)
    methods = ("logsumexp",)

    def shape(self, shapes: list[Shape], a: LogsumexpArgs) -> Shape:
        if a.dim == [] and shapes[0] and not a.keepdim:
            raise ShapeError("logsumexp: dim=[] fails in torch unless keepdim=True; give the dims to reduce")
        return _reduced_shape(shapes[0], ReduceArgs(dim=a.dim, keepdim=a.keepdim))

    def dtype(self, dtypes: list[str]) -> str:
        return no_bool(self, dtypes)

    def torch(self, t: Any, xs: list[Any], a: LogsumexpArgs) -> Any:
        return t.logsumexp(xs[0], a.dim, keepdim=a.keepdim)

    def forward(self, xs: list[Array], a: LogsumexpArgs) -> Array:
        x = xs[0]
        axes = _axes(a.dim, x.ndim)
        m = x.max(axis=axes, keepdims=True, initial=-np.inf) if x.ndim else x
        m = np.where(np.isinf(m), np.zeros((), x.dtype), m)
        with np.errstate(divide="ignore"):
            out = np.log(np.exp(x - m).sum(axis=axes, keepdims=True)) + m
        return np.asarray(out if a.keepdim else out.reshape(_reduced_shape(x.shape, ReduceArgs(dim=a.dim))), dtype=x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: LogsumexpArgs) -> list[Array | None]:
        x = xs[0]
        r = ReduceArgs(dim=a.dim, keepdim=a.keepdim)
        with np.errstate(invalid="ignore"):
            return [(_expand(g, x.shape, r) * np.exp(x - _expand(out, x.shape, r))).astype(x.dtype)]
