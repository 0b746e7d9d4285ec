"""Reductions over all elements or some dims: sum, mean, max, min, softmax, log_softmax."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, norm_dim, register


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
    name = "sum"
    functions = ("torch.sum",)
    methods = ("sum",)

    def forward(self, xs: list[Array], a: ReduceArgs) -> Array:
        x = xs[0]
        return np.asarray(x.sum(axis=_axes(a.dim, x.ndim), keepdims=a.keepdim), dtype=x.dtype)

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
        if a.dim is None or x.ndim == 0:
            mask = x == out
            return [(mask * (g / mask.sum())).astype(x.dtype)]
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


class DimArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int


def _log_softmax(x: Array, axis: int) -> Array:
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

    def forward(self, xs: list[Array], a: DimArgs) -> Array:
        return np.exp(_log_softmax(xs[0], norm_dim(a.dim, xs[0].ndim)))

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
