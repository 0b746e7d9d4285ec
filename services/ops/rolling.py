"""torch.roll: elements shifted along dims, wrapping around (flat when no dims); the gradient rolls back."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, norm_dim, register


class RollArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shifts: int | list[int]
    dims: int | list[int] | None = None


def _pairs(a: RollArgs, ndim: int) -> tuple[list[int], list[int] | None]:
    shifts = [a.shifts] if isinstance(a.shifts, int) else list(a.shifts)
    if not shifts:
        raise ShapeError("roll: `shifts` required")
    if a.dims is None:
        if len(shifts) != 1:
            raise ShapeError(f"roll: shifts {a.shifts} need dims, one per shift")
        return shifts, None
    dims = [a.dims] if isinstance(a.dims, int) else list(a.dims)
    if ndim == 0 and dims:  # (norm_dim takes dims -1 and 0 of a 0-d tensor; torch's roll does not)
        raise ShapeError(f"roll: Dimension specified as {dims[0]} but tensor has no dimensions")
    if len(dims) != len(shifts):
        raise ShapeError(f"roll: shifts and dimensions must align. shifts: {len(shifts)}, dims: {len(dims)}")
    return shifts, [norm_dim(d, ndim) for d in dims]


@register
class Roll(Op):
    """torch.roll(x, shifts, dims) (RollBackward0)."""

    name = "roll"
    any_dtype = True
    Args = RollArgs
    positional = ("shifts", "dims")
    functions = ("torch.roll",)
    methods = ("roll",)

    def shape(self, shapes: list[Shape], a: RollArgs) -> Shape:
        _pairs(a, len(shapes[0]))
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: RollArgs) -> Any:
        return t.roll(xs[0], a.shifts, a.dims) if a.dims is not None else t.roll(xs[0], a.shifts)

    def _roll(self, x: Array, a: RollArgs, sign: int) -> Array:
        shifts, dims = _pairs(a, x.ndim)
        if dims is None:
            return np.roll(x.reshape(-1), sign * shifts[0]).reshape(x.shape)
        return np.roll(x, [sign * s for s in shifts], axis=dims)

    def forward(self, xs: list[Array], a: RollArgs) -> Array:
        return self._roll(xs[0], a, 1)

    def backward(self, g: Array, out: Array, xs: list[Array], a: RollArgs) -> list[Array | None]:
        return [self._roll(g, a, -1)]
