"""Resampling: F.interpolate (nn.Upsample) in nearest and (bi/tri)linear modes, and F.pixel_shuffle.

Interpolation is separable: along each spatial dim the output is a fixed matrix (output size x input size) times the
input, whose rows pick (nearest) or blend two (linear) input elements by torch's source-index rules; the gradient is
the same matrices transposed, applied in reverse order."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, register

LINEAR = {"linear": 1, "bilinear": 2, "trilinear": 3}
"""The linear modes and the number of spatial dims each takes."""


class InterpolateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int | list[int] | None = None
    scale_factor: float | list[float] | None = None
    mode: Literal["nearest", "nearest-exact", "linear", "bilinear", "trilinear"] = "nearest"
    align_corners: bool | None = None
    recompute_scale_factor: bool | None = None
    antialias: Literal[False] = Field(False, description="torch's default; antialias=True (bilinear/bicubic downsampling "
                                                         "with a wider kernel) is not traced")


def _per_dim(v: Any, k: int, what: str) -> list[Any]:
    if not isinstance(v, list):
        return [v] * k
    if len(v) != k:
        raise ShapeError(f"interpolate: {what} {v} should have {k} values, one per spatial dim")
    return v


def _plan(shape: Shape, a: InterpolateArgs) -> list[tuple[int, int, float | None]]:
    """Per spatial dim: (input size, output size, the scale torch uses for source indices or None: in / out)."""
    k = len(shape) - 2
    if k < 1 or k > 3:
        raise ShapeError(f"interpolate: input must be 3-d, 4-d or 5-d (N, C, *spatial), got {list(shape)}")
    if a.mode in LINEAR and LINEAR[a.mode] != k:
        raise ShapeError(f"interpolate: mode '{a.mode}' takes a {LINEAR[a.mode] + 2}-d input, got {len(shape)}-d")
    if a.align_corners is not None and a.mode not in LINEAR:
        raise ShapeError("interpolate: align_corners option can only be set with the interpolating modes: linear | "
                         "bilinear | bicubic | trilinear")
    if (a.size is None) == (a.scale_factor is None):
        raise ShapeError("interpolate: give either size or scale_factor, not both or neither")
    ins = list(shape[2:])
    if a.size is not None:
        outs = [int(s) for s in _per_dim(a.size, k, "size")]
        return [(i, o, None) for i, o in zip(ins, outs, strict=True)]
    factors = [float(f) for f in _per_dim(a.scale_factor, k, "scale_factor")]
    if any(f <= 0 for f in factors):
        raise ShapeError(f"interpolate: scale_factor must be positive, got {a.scale_factor}")
    outs = [math.floor(i * f) for i, f in zip(ins, factors, strict=True)]
    return [(i, o, None if a.recompute_scale_factor else 1.0 / f) for i, o, f in zip(ins, outs, factors, strict=True)]


def _matrix(n_in: int, n_out: int, scale: float | None, a: InterpolateArgs) -> Array:
    """The (n_out, n_in) matrix of one spatial dim, by torch's source indices (upsample kernels in ATen)."""
    m = np.zeros((n_out, n_in))
    dst = np.arange(n_out, dtype=np.float64)
    if a.mode in ("nearest", "nearest-exact"):
        s = n_in / n_out if scale is None else scale
        src = np.floor((dst + 0.5) * s if a.mode == "nearest-exact" else dst * s).astype(np.int64)
        m[np.arange(n_out), np.minimum(src, n_in - 1)] = 1.0
        return m
    if a.align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        s = n_in / n_out if scale is None else scale
        src = np.maximum((dst + 0.5) * s - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    np.add.at(m, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(m, (np.arange(n_out), i1), w1)
    return m


def _apply(x: Array, mats: list[Array], transpose: bool = False) -> Array:
    """Each spatial dim (2, 3, ...) multiplied by its matrix (or its transpose: the gradient), in float64."""
    y = x.astype(np.float64)
    order = list(enumerate(mats))
    for k, m in reversed(order) if transpose else order:
        y = np.moveaxis(np.tensordot(m.T if transpose else m, y, axes=([1], [2 + k])), 0, 2 + k)
    return y


@register
class Interpolate(Op):
    """F.interpolate / nn.Upsample: nearest (torch's floor(i * scale)) or linear blends of the two nearest input
    elements (half-pixel centres, or align_corners), per spatial dim; UpsampleNearest2DBackward0 and the like."""

    name = "interpolate"
    Args = InterpolateArgs
    positional = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
    functions = ("F.interpolate", "F.upsample")

    def shape(self, shapes: list[Shape], a: InterpolateArgs) -> Shape:
        if 0 in shapes[0]:
            raise ShapeError(f"interpolate: non-empty input expected (torch), got sizes {list(shapes[0])}")
        plan = _plan(shapes[0], a)
        if any(o < 1 for _, o, _ in plan):
            raise ShapeError(f"interpolate: output size {[o for _, o, _ in plan]} must be positive")
        return (*shapes[0][:2], *(o for _, o, _ in plan))

    def dtype(self, dtypes: list[str]) -> str:
        if not dtypes[0].startswith("float"):
            raise ShapeError(f"interpolate: input must be a floating point tensor, got {dtypes[0]}")
        return dtypes[0]

    def torch(self, t: Any, xs: list[Any], a: InterpolateArgs) -> Any:
        return t.nn.functional.interpolate(xs[0], **a.model_dump())

    def _mats(self, shape: Shape, a: InterpolateArgs) -> list[Array]:
        return [_matrix(i, o, s, a) for i, o, s in _plan(shape, a)]

    def forward(self, xs: list[Array], a: InterpolateArgs) -> Array:
        return _apply(xs[0], self._mats(xs[0].shape, a)).astype(xs[0].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: InterpolateArgs) -> list[Array | None]:
        return [_apply(g, self._mats(xs[0].shape, a), transpose=True).astype(xs[0].dtype)]


class PixelShuffleArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upscale_factor: int


@register
class PixelShuffle(Op):
    """F.pixel_shuffle (ESPCN's sub-pixel convolution): (*, C*r*r, H, W) -> (*, C, H*r, W*r), a permutation of the
    elements, whose gradient is the inverse permutation (PixelShuffleBackward0)."""

    name = "pixel_shuffle"
    any_dtype = True
    Args = PixelShuffleArgs
    positional = ("upscale_factor",)
    functions = ("F.pixel_shuffle", "torch.pixel_shuffle")

    def shape(self, shapes: list[Shape], a: PixelShuffleArgs) -> Shape:
        x, r = shapes[0], a.upscale_factor
        if 0 in x:
            raise ShapeError(f"pixel_shuffle of an empty tensor {list(x)} is not traced (torch's backward fails there)")
        if len(x) < 3 or r < 1 or x[-3] % (r * r):
            raise ShapeError(f"pixel_shuffle expects its input's 3rd to last dimension to be divisible by the square of "
                             f"upscale_factor {r}, got shape {list(x)}")
        return (*x[:-3], x[-3] // (r * r), x[-2] * r, x[-1] * r)

    def torch(self, t: Any, xs: list[Any], a: PixelShuffleArgs) -> Any:
        return t.nn.functional.pixel_shuffle(xs[0], a.upscale_factor)

    def forward(self, xs: list[Array], a: PixelShuffleArgs) -> Array:
        x, r = xs[0], a.upscale_factor
        *b, c, h, w = x.shape
        y = x.reshape(*b, c // (r * r), r, r, h, w)
        n = len(b)
        y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)
        return np.ascontiguousarray(y).reshape(*b, c // (r * r), h * r, w * r)

    def backward(self, g: Array, out: Array, xs: list[Array], a: PixelShuffleArgs) -> list[Array | None]:
        r = a.upscale_factor
        *b, c, h, w = xs[0].shape
        n = len(b)
        y = g.reshape(*b, c // (r * r), h, r, w, r).transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)
        return [np.ascontiguousarray(y).reshape(xs[0].shape)]
