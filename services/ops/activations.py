"""More activations as torch's kernels compute them: selu and celu (elu's scaled forms: at x = 0 the left branch's
slope, as torch's elu_backward), hardshrink, softshrink and threshold (gradient 0 at the cut, which is excluded)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Shape, register
from services.ops.elementwise import FloatUnary, ScaledElu

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@register
class Selu(ScaledElu):
    name = "selu"
    functions = ("F.selu", "torch.selu")

    def coefficients(self, a: Any) -> tuple[float, float, float]:
        return SELU_ALPHA, SELU_SCALE, 1.0

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.selu(xs[0])


class CeluArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alpha: float = 1.0


@register
class Celu(ScaledElu):
    name = "celu"
    Args = CeluArgs
    positional = ("alpha",)
    functions = ("F.celu", "torch.celu")

    def coefficients(self, a: CeluArgs) -> tuple[float, float, float]:
        return a.alpha, 1.0, 1.0 / a.alpha

    def shape(self, shapes: list[Shape], a: CeluArgs) -> Shape:
        if a.alpha == 0:
            raise ShapeError("celu: ZeroDivisionError (alpha must not be 0)")
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: CeluArgs) -> Any:
        return t.celu(xs[0], alpha=a.alpha)


class LambdArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lambd: float = Field(0.5, ge=0)


@register
class Hardshrink(FloatUnary):
    """x where |x| > lambd, else 0."""

    name = "hardshrink"
    Args = LambdArgs
    positional = ("lambd",)
    functions = ("F.hardshrink", "torch.hardshrink")

    def torch(self, t: Any, xs: list[Any], a: LambdArgs) -> Any:
        return t.nn.functional.hardshrink(xs[0], a.lambd)

    def forward(self, xs: list[Array], a: LambdArgs) -> Array:
        x = xs[0]
        return np.where((x >= -a.lambd) & (x <= a.lambd), 0, x).astype(x.dtype, copy=False)

    def backward(self, g: Array, out: Array, xs: list[Array], a: LambdArgs) -> list[Array | None]:
        x = xs[0]
        return [np.where((x >= -a.lambd) & (x <= a.lambd), 0, g).astype(g.dtype, copy=False)]


@register
class Softshrink(Hardshrink):
    """x - lambd above lambd, x + lambd below -lambd, else 0."""

    name = "softshrink"
    functions = ("F.softshrink",)

    def torch(self, t: Any, xs: list[Any], a: LambdArgs) -> Any:
        return t.nn.functional.softshrink(xs[0], a.lambd)

    def forward(self, xs: list[Array], a: LambdArgs) -> Array:
        x = xs[0]
        lam = np.asarray(a.lambd, x.dtype)
        return np.where(x > lam, x - lam, np.where(x < -lam, x + lam, x * 0)).astype(x.dtype, copy=False)  # (NaN stays)


class ThresholdArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float
    value: float


@register
class Threshold(FloatUnary):
    """value where x <= threshold, else x (NaN stays NaN, and keeps its gradient, as torch's kernel)."""

    name = "threshold"
    Args = ThresholdArgs
    positional = ("threshold", "value")
    functions = ("F.threshold", "torch.threshold")

    def torch(self, t: Any, xs: list[Any], a: ThresholdArgs) -> Any:
        return t.nn.functional.threshold(xs[0], a.threshold, a.value)

    def forward(self, xs: list[Array], a: ThresholdArgs) -> Array:
        x = xs[0]
        return np.where(x <= a.threshold, np.asarray(a.value, x.dtype), x).astype(x.dtype, copy=False)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ThresholdArgs) -> list[Array | None]:
        return [np.where(xs[0] <= a.threshold, 0, g).astype(g.dtype, copy=False)]
