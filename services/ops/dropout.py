"""dropout as torch's CPU kernel computes it in training mode: input * noise, where the noise
(bernoulli(1 - p) / (1 - p)) is drawn from torch's generator before the trace and given to every engine
as data, so the reference engine sees the same mask without drawing it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, register


class DropoutArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p: float = Field(0.5, ge=0.0, le=1.0)


@register
class Dropout(Op):
    """Inputs (input, mask); torch's grad_fn is MulBackward0, as F.dropout gives on the CPU."""

    pointwise = True

    name = "dropout"
    tensors = ("input", "mask")
    Args = DropoutArgs
    differentiable = (True, False)

    def shape(self, shapes: list[Shape], a: DropoutArgs) -> Shape:
        if shapes[0] != shapes[1]:
            raise ShapeError(f"dropout: mask shape {list(shapes[1])} differs from the input's {list(shapes[0])}")
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: DropoutArgs) -> Any:
        return xs[0] * xs[1]

    def forward(self, xs: list[Array], a: DropoutArgs) -> Array:
        return xs[0] * xs[1]

    def backward(self, g: Array, out: Array, xs: list[Array], a: DropoutArgs) -> list[Array | None]:
        return [g * xs[1], None]
