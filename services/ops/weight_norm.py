"""torch._weight_norm(v, g, dim): the weight that nn.utils.weight_norm (and its parametrizations form) recomputes
before each forward, g * v / ||v|| with the norm over every dim but `dim` (WeightNormInterfaceBackward0); dim -1
(weight_norm(dim=None)) takes the norm of the whole tensor, as torch composes it (v * (g / ||v||))."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, register


class WeightNormArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = 0


def _axes(ndim: int, dim: int) -> tuple[int, ...]:
    return tuple(range(ndim)) if dim == -1 else tuple(k for k in range(ndim) if k != dim)


@register
class WeightNorm(Op):
    """The weight of a weight-normalised layer from its direction v and magnitude g."""

    name = "weight_norm"
    tensors = ("v", "g")
    Args = WeightNormArgs

    def dtype(self, dtypes: list[str]) -> str:
        if not dtypes[0].startswith("float") or dtypes[1] != dtypes[0]:
            raise ShapeError(f"weight_norm takes v and g of one floating point dtype, got {dtypes[0]} and {dtypes[1]}")
        return dtypes[0]

    def shape(self, shapes: list[Shape], a: WeightNormArgs) -> Shape:
        v, g = shapes
        if not v:
            raise ShapeError("weight_norm takes v of at least one dim, got a 0-d tensor")
        if a.dim != -1 and 0 in v:  # (torch's kernel divides by zero there: the process dies)
            raise ShapeError(f"weight_norm of an empty v (shape {list(v)}) is not traced")
        if a.dim == -1:
            if g not in ((), (1,) * len(v)):
                raise ShapeError(f"weight_norm: g must be a single number for dim=None, got shape {list(g)}")
            return v
        if not 0 <= a.dim < len(v):
            raise ShapeError(f"weight_norm: dim {a.dim} is out of range for v of shape {list(v)}")
        want = tuple(n if k == a.dim else 1 for k, n in enumerate(v))
        if g != want:
            raise ShapeError(f"weight_norm: g must have shape {list(want)} for v of shape {list(v)}, got {list(g)}")
        return v

    def torch(self, t: Any, xs: list[Any], a: WeightNormArgs) -> Any:
        return t._weight_norm(xs[0], xs[1], a.dim)

    def on_cuda(self, a: WeightNormArgs) -> str | None:
        if a.dim == -1:
            return None  # (composed of norm, div and mul there, as on the CPU)
        return ("weight_norm: torch's fused CUDA kernel (dim 0 or the last) gives float64 weights about 1e-8 relative "
                "off its CPU kernel's (measured on an H200), over float64's tolerance: in float64 the engines may "
                "disagree there by that much")

    def forward(self, xs: list[Array], a: WeightNormArgs) -> Array:
        v, g = xs
        n = np.sqrt((v.astype(np.float64) ** 2).sum(axis=_axes(v.ndim, a.dim), keepdims=True))
        return (v * (g / n)).astype(v.dtype)

    def backward(self, gw: Array, out: Array, xs: list[Array], a: WeightNormArgs) -> list[Array | None]:
        v, g = (x.astype(np.float64) for x in xs)
        axes = _axes(v.ndim, a.dim)
        n = np.sqrt((v ** 2).sum(axis=axes, keepdims=True))
        dot = (gw * v).sum(axis=axes, keepdims=True)
        gg = (dot / n).reshape(xs[1].shape)
        gv = g.reshape(n.shape) / n * (gw - v * dot / n**2)
        return [gv.astype(xs[0].dtype), gg.astype(xs[1].dtype)]
