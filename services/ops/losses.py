"""Losses: cross_entropy over class indices and mse_loss, with mean/sum/none reductions."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, register
from services.ops.reductions import _log_softmax


class LossArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reduction: Literal["mean", "sum", "none"] = "mean"


def _reduce(v: Array, reduction: str) -> Array:
    if reduction == "none":
        return v
    return np.asarray(v.sum() if reduction == "sum" else v.mean(), dtype=v.dtype)


@register
class CrossEntropy(Op):
    """-log softmax(input)[target] for class-index targets; input (N, C) or (C,)."""

    name = "cross_entropy"
    tensors = ("input", "target")
    Args = LossArgs
    functions = ("F.cross_entropy",)
    differentiable = (True, False)

    def shape(self, shapes: list[Shape], a: LossArgs) -> Shape:
        x, t = shapes
        if len(x) == 2 and t == (x[0],):
            return () if a.reduction != "none" else (x[0],)
        if len(x) == 1 and t == ():
            return ()
        raise ShapeError(f"cross_entropy: input {list(x)} needs class-index target of shape {[x[0]] if len(x) == 2 else []}, got {list(t)}")

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[1] != "int64":
            raise ShapeError(f"cross_entropy: target must be int64 class indices, got {dtypes[1]} (give that input \"dtype\": \"int64\")")
        return dtypes[0]

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: LossArgs) -> None:
        classes = shapes[0][-1] if shapes[0] else 0
        r = ranges[1]
        if r is not None and (r[0] < 0 or r[1] >= classes):
            raise ShapeError(f"cross_entropy: target class indices in [{r[0]:g}, {r[1]:g}] are out of range for "
                             f"{classes} classes (valid: 0 to {classes - 1})")

    def torch(self, t: Any, xs: list[Any], a: LossArgs) -> Any:
        return t.nn.functional.cross_entropy(xs[0], xs[1], reduction=a.reduction)

    def forward(self, xs: list[Array], a: LossArgs) -> Array:
        x, t = xs
        x2, t2 = (x, t) if x.ndim == 2 else (x[None], t[None])
        if t2.size and (t2.min() < 0 or t2.max() >= x2.shape[1]):
            raise ValueError(f"cross_entropy: target values must be in [0, {x2.shape[1]})")
        nll = -_log_softmax(x2, 1)[np.arange(len(t2)), t2]
        return _reduce(nll, a.reduction) if x.ndim == 2 else np.asarray(nll[0])

    def backward(self, g: Array, out: Array, xs: list[Array], a: LossArgs) -> list[Array | None]:
        x, t = xs
        x2, t2 = (x, t) if x.ndim == 2 else (x[None], t[None])
        d = np.exp(_log_softmax(x2, 1))
        d[np.arange(len(t2)), t2] -= 1
        if a.reduction == "none" and x.ndim == 2:
            d *= g[:, None]
        else:
            d *= g / (len(t2) if a.reduction == "mean" and x.ndim == 2 else 1)
        return [d if x.ndim == 2 else d[0], None]


@register
class MseLoss(Op):
    name = "mse_loss"
    tensors = ("input", "target")
    Args = LossArgs
    functions = ("F.mse_loss",)

    def shape(self, shapes: list[Shape], a: LossArgs) -> Shape:
        if shapes[0] != shapes[1]:
            raise ShapeError(f"mse_loss: input {list(shapes[0])} and target {list(shapes[1])} differ in shape")
        return () if a.reduction != "none" else shapes[0]

    def torch(self, t: Any, xs: list[Any], a: LossArgs) -> Any:
        return t.nn.functional.mse_loss(xs[0], xs[1], reduction=a.reduction)

    def forward(self, xs: list[Array], a: LossArgs) -> Array:
        d = xs[0] - xs[1]
        return _reduce(d * d, a.reduction)

    def backward(self, g: Array, out: Array, xs: list[Array], a: LossArgs) -> list[Array | None]:
        d = xs[0] - xs[1]
        scale = (2 / d.size if d.size else 0.0) if a.reduction == "mean" else 2
        gd = (g * d * np.asarray(scale, d.dtype)).astype(d.dtype)
        return [gd, -gd]
