"""torch.cdist: p-norm distances between the rows of two batches of row vectors, as torch computes them: for p = 2
with more than 25 rows (or compute_mode 'use_mm_for_euclid_dist') from norms and one matmul (torch's
_euclidean_dist, whose rounding near zero distance the reference engine follows), else from the differences."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, broadcast, register, unbroadcast


class CdistArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p: float = Field(2.0, ge=0)
    compute_mode: Literal["use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist", "donot_use_mm_for_euclid_dist"] | None = None


def _by_matmul(x1: Array, x2: Array, a: CdistArgs) -> bool:
    """torch's choice: the matmul form for p = 2, when asked or when either side has more than 25 rows."""
    if a.p != 2 or a.compute_mode == "donot_use_mm_for_euclid_dist":
        return False
    return a.compute_mode == "use_mm_for_euclid_dist" or x1.shape[-2] > 25 or x2.shape[-2] > 25


@register
class Cdist(Op):
    """out[..., i, j] = ||x1[..., i, :] - x2[..., j, :]||_p; the gradient of a zero distance is 0, as torch's."""

    name = "cdist"
    tensors = ("x1", "x2")
    Args = CdistArgs
    positional = ("p", "compute_mode")
    functions = ("torch.cdist",)
    same_dtype = True

    def shape(self, shapes: list[Shape], a: CdistArgs) -> Shape:
        x1, x2 = shapes
        for k, s in (("X1", x1), ("X2", x2)):
            if len(s) < 2:
                raise ShapeError(f"cdist only supports at least 2D tensors, {k} got: {len(s)}D")
        if x1[-1] != x2[-1]:
            raise ShapeError(f"cdist: X1 and X2 must have the same number of columns. X1: {x1[-1]} X2: {x2[-1]}")
        return (*broadcast(x1[:-2], x2[:-2]), x1[-2], x2[-2])

    def dtype(self, dtypes: list[str]) -> str:
        if any(not d.startswith("float") for d in dtypes):
            raise ShapeError(f"cdist only supports floating-point dtypes, got {dtypes}: cast with .float()")
        return super().dtype(dtypes)

    def warning(self, shapes: list[Shape], a: CdistArgs) -> str | None:
        if a.p != 2 or a.compute_mode == "donot_use_mm_for_euclid_dist" or (
                a.compute_mode is None and max(shapes[0][-2], shapes[1][-2]) <= 25):
            return None
        return ("torch.cdist with p=2 and more than 25 rows (or compute_mode='use_mm_for_euclid_dist') computes distances "
                "from norms and a matmul: a distance near 0 (a point and itself) comes out as rounding noise of about "
                "sqrt(eps) * |x| (~1e-3 in float32), in torch and in the reference engine, which computes it the same way "
                "but sums in another order: where points coincide the engines may disagree by that much, and so may "
                "what is computed from those distances. compute_mode='donot_use_mm_for_euclid_dist' gives exact distances")

    def torch(self, t: Any, xs: list[Any], a: CdistArgs) -> Any:
        return t.cdist(xs[0], xs[1], p=a.p, compute_mode=a.compute_mode or "use_mm_for_euclid_dist_if_necessary")

    def forward(self, xs: list[Array], a: CdistArgs) -> Array:
        x1, x2 = xs
        if _by_matmul(x1, x2, a):
            return np.sqrt(np.maximum(self._squared(x1, x2), 0)).astype(x1.dtype)
        d = np.abs(x1[..., :, None, :] - x2[..., None, :, :])
        if a.p == 0:
            out = (d != 0).sum(-1)
        elif a.p == 1:
            out = d.sum(-1)
        elif a.p == 2:
            out = np.sqrt((d * d).sum(-1))
        elif math.isinf(a.p):
            out = d.max(-1, initial=0)
        else:
            out = (d ** a.p).sum(-1) ** (1 / a.p)
        return np.asarray(out, dtype=x1.dtype)

    @staticmethod
    def _squared(x1: Array, x2: Array) -> Array:
        """torch's _euclidean_dist before its clamp and sqrt: [-2 x1, |x1|^2, 1] @ [x2, 1, |x2|^2]^T."""
        n1, n2 = (x1 * x1).sum(-1, keepdims=True), (x2 * x2).sum(-1, keepdims=True)
        left = np.concatenate([-2 * x1, n1, np.ones_like(n1)], -1)
        right = np.concatenate([x2, np.ones_like(n2), n2], -1)
        return left @ np.swapaxes(right, -1, -2)

    def backward(self, g: Array, out: Array, xs: list[Array], a: CdistArgs) -> list[Array | None]:
        x1, x2 = xs
        if _by_matmul(x1, x2, a):  # torch's _euclidean_dist_backward
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(out == 0, 0, g / out).astype(g.dtype)
            g1 = x1 * ratio.sum(-1, keepdims=True) - ratio @ x2
            g2 = x2 * ratio.sum(-2)[..., None] - np.swapaxes(ratio, -1, -2) @ x1
        else:
            diff = x1[..., :, None, :] - x2[..., None, :, :]
            dist, gg = out[..., None], g[..., None]
            with np.errstate(divide="ignore", invalid="ignore"):
                if a.p == 0:
                    each = np.zeros_like(diff)
                elif a.p == 1:
                    each = np.sign(diff) * gg
                elif a.p == 2:
                    each = np.where(dist == 0, 0, diff * gg / dist)
                elif math.isinf(a.p):
                    each = np.sign(diff) * (np.abs(diff) == dist) * gg
                else:
                    each = np.sign(diff) * np.abs(diff) ** (a.p - 1) * gg / dist ** (a.p - 1)
                    each = np.where((dist == 0) | ((diff == 0) & (a.p < 1)), 0, each)
            g1, g2 = each.sum(-2), -each.sum(-3)
        return [unbroadcast(g1.astype(x1.dtype), x1.shape), unbroadcast(g2.astype(x2.dtype), x2.shape)]
