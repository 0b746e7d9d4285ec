"""Tensor.unfold(dimension, size, step): sliding windows along a dim as a new last dim (a view), the time-series
idiom (PatchTST's patches, sliding windows of a series); the gradient adds back where windows overlap."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, norm_dim, register


class UnfoldArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dimension: int
    size: int = Field(ge=0)
    step: int = Field(ge=1)


@register
class Unfold(Op):
    """x.unfold(dimension, size, step) (UnfoldBackward0): dim `dimension` becomes the (n - size) // step + 1 window
    starts and a last dim of `size` holds each window, sharing x's memory."""

    name = "unfold"
    view = True
    any_dtype = True
    Args = UnfoldArgs
    positional = ("dimension", "size", "step")
    methods = ("unfold",)

    def shape(self, shapes: list[Shape], a: UnfoldArgs) -> Shape:
        x = shapes[0]
        d = norm_dim(a.dimension, len(x))  # (a 0-d tensor has dims -1 and 0, as torch says)
        if not x:
            if a.size > 1:
                raise ShapeError(f"unfold: maximum size for tensor at dimension 0 is 1 but size is {a.size}")
            return (a.size,)
        if a.size > x[d]:
            raise ShapeError(f"unfold: maximum size for tensor at dimension {d} is {x[d]} but size is {a.size}")
        return (*x[:d], (x[d] - a.size) // a.step + 1, *x[d + 1:], a.size)

    def out_strides(self, shapes: list[Shape], strides: list[tuple[int, ...]], a: UnfoldArgs) -> tuple[int, ...] | None:
        x, s = shapes[0], strides[0]
        if not x:
            return (1,)
        d = norm_dim(a.dimension, len(x))
        return (*s[:d], s[d] * a.step, *s[d + 1:], s[d])

    def torch(self, t: Any, xs: list[Any], a: UnfoldArgs) -> Any:
        return xs[0].unfold(a.dimension, a.size, a.step)

    def windows(self, shape: Shape, a: UnfoldArgs) -> tuple[int, Array]:
        """The dim, and each window's positions along it: (count, size)."""
        d = norm_dim(a.dimension, len(shape))
        count = (shape[d] - a.size) // a.step + 1
        return d, np.arange(count)[:, None] * a.step + np.arange(a.size)[None, :]

    def forward(self, xs: list[Array], a: UnfoldArgs) -> Array:
        x = xs[0]
        if x.ndim == 0:
            return x.reshape(1)[: a.size].copy()
        d, at = self.windows(x.shape, a)
        picked = np.take(x, at, axis=d)  # (..., count, size, ...) with the windows at d, d + 1
        return np.moveaxis(picked, d + 1, -1).copy()

    def backward(self, g: Array, out: Array, xs: list[Array], a: UnfoldArgs) -> list[Array | None]:
        x = xs[0]
        if x.ndim == 0:
            return [g.sum().astype(x.dtype).reshape(())]
        d, at = self.windows(x.shape, a)
        gx = np.zeros(np.moveaxis(x, d, -1).shape, np.float64)
        gm = np.moveaxis(np.moveaxis(g, -1, d + 1), (d, d + 1), (-2, -1))  # (..., count, size)
        np.add.at(gx, (..., at), gm)  # type: ignore[index]
        return [np.moveaxis(gx, -1, d).astype(x.dtype)]
