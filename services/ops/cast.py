"""Ops that change how a tensor is seen, not its numbers: dtype casts (x.float(), x.double(), x.to(dtype))
and detach (the same values, cut from the gradient)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.ops.base import Array, Op, Shape, register


class ToArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dtype: Literal["float32", "float64", "int64", "bool"]


@register
class To(Op):
    """A dtype cast (torch's ToCopyBackward0): the gradient is cast back; casts to int64/bool carry none."""

    pointwise = True

    name = "to"
    Args = ToArgs
    any_dtype = True

    def shape(self, shapes: list[Shape], a: ToArgs) -> Shape:
        return shapes[0]

    def dtype_for(self, dtypes: list[str], a: ToArgs) -> str:
        return a.dtype

    def value_range(self, ranges: list[tuple[float, float] | None], a: ToArgs) -> tuple[float, float] | None:
        return ranges[0] if a.dtype.startswith("float") else None  # `(x > 0).float()`: still 0 and 1

    def torch(self, t: Any, xs: list[Any], a: ToArgs) -> Any:
        return xs[0].to(getattr(t, a.dtype))

    def forward(self, xs: list[Array], a: ToArgs) -> Array:
        return xs[0].astype(a.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ToArgs) -> list[Array | None]:
        return [g.astype(xs[0].dtype)] if xs[0].dtype.kind == "f" else [None]


@register
class Detach(Op):
    """x.detach(): the same values with no gradient flowing back."""

    name = "detach"
    view = True  # it shares the tensor's memory
    any_dtype = True
    functions = ("torch.detach",)
    differentiable = (False,)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        return dtypes[0]

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return xs[0].detach()

    def forward(self, xs: list[Array], a: Any) -> Array:
        return np.array(xs[0])

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [None]
