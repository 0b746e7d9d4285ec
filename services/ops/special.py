"""Special functions of statistics tutorials (a Beta or Gamma log-likelihood, a probit link): lgamma, digamma, erfinv
and logit, each with torch's derivative (digamma, trigamma, sqrt(pi)/2 exp(erfinv^2), 1 / (x (1 - x)))."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.special import digamma, erfinv, gammaln, polygamma

from services.ops.base import Array, register
from services.ops.elementwise import FloatUnary, _unary

_unary("lgamma", gammaln, lambda g, y, x: g * digamma(x), functions=("torch.special.gammaln",))
_unary("digamma", digamma, lambda g, y, x: g * polygamma(1, x), functions=("torch.special.digamma", "torch.special.psi"))
_unary("erfinv", erfinv, lambda g, y, x: g * (math.sqrt(math.pi) / 2) * np.exp(np.square(y)),
       functions=("torch.special.erfinv",))


class LogitArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eps: float | None = None


@register
class Logit(FloatUnary):
    """log(x / (1 - x)), x clamped to [eps, 1 - eps] when eps is given; gradient g / (x (1 - x)), 0 outside that
    range (without eps: NaN outside [0, 1]), as torch's logit_backward."""

    name = "logit"
    Args = LogitArgs
    positional = ("eps",)
    functions = ("torch.logit", "torch.special.logit")
    methods = ("logit",)

    def torch(self, t: Any, xs: list[Any], a: LogitArgs) -> Any:
        return t.logit(xs[0], eps=a.eps)

    def forward(self, xs: list[Array], a: LogitArgs) -> Array:
        x = xs[0] if a.eps is None else np.clip(xs[0], a.eps, 1 - a.eps)
        with np.errstate(all="ignore"):
            return np.log(x / (1 - x)).astype(xs[0].dtype, copy=False)

    def backward(self, g: Array, out: Array, xs: list[Array], a: LogitArgs) -> list[Array | None]:
        x = xs[0]
        with np.errstate(all="ignore"):
            gx = g / (x * (1 - x))
        if a.eps is not None:
            gx = np.where((x < a.eps) | (x > 1 - a.eps), 0, gx)
        else:  # outside [0, 1] torch's backward is NaN, whatever the gradient
            gx = np.where((x < 0) | (x > 1), np.nan, gx)
        return [gx.astype(x.dtype, copy=False)]
