"""dropout as torch's CPU kernel computes it in training mode: input * noise, where the noise
(bernoulli(1 - p) / (1 - p)) is drawn from torch's generator before the trace and given to every engine
as data, so the reference engine sees the same mask without drawing it."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, broadcast, register


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


@register
class Bernoulli(Op):
    """torch.bernoulli(p): 1 where u < p, for u drawn as torch.rand(p.shape) at that point of the stream (torch's CPU
    kernel draws one uniform per element, in the output's order, and compares: the same numbers). Inputs (p, u);
    torch's derivative is zero (BernoulliBackward0)."""

    pointwise = True

    name = "bernoulli"
    tensors = ("input", "uniform")
    differentiable = (True, False)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        if shapes[0] != shapes[1]:
            raise ShapeError(f"bernoulli: the draws {list(shapes[1])} must have the shape of p {list(shapes[0])}")
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        if not dtypes[0].startswith("float"):
            raise ShapeError(f"bernoulli: p must be a floating point tensor of probabilities, got {dtypes[0]}")
        return dtypes[0]

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return _bernoulli(t).apply(xs[0], [xs[1]])  # (the draws go in a list: no edge of the graph)

    def forward(self, xs: list[Array], a: Any) -> Array:
        p, u = xs
        return (u < p).astype(p.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [np.zeros(xs[0].shape, g.dtype), None]


@cache
def _bernoulli(t: Any) -> Any:
    """torch.bernoulli on draws made before the trace: the values of (u < p), a zero gradient for p, and the grad_fn
    name torch prints for torch.bernoulli (BernoulliBackward0)."""

    class BernoulliDraw(t.autograd.Function):
        @staticmethod
        def forward(ctx: Any, p: Any, box: list[Any]) -> Any:
            return (box[0] < p).to(p.dtype)

        @staticmethod
        def backward(ctx: Any, g: Any) -> tuple[Any, None]:
            return t.zeros_like(g), None

    BernoulliDraw._backward_cls.__name__ = "BernoulliBackward0"
    return BernoulliDraw


@register
class MultinomialReplacement(Op):
    """torch.multinomial(p, n, replacement=True) with n > 1, as torch's CPU kernel computes it: per row, the
    cumulative sum of p in p's dtype (a float loop), divided by its total, its last entry set to 1; per sample, a
    uniform double u (drawn as torch.rand(..., dtype=torch.float64) at that point of the stream: the same draws) and a
    binary search for the first entry >= u. Inputs (p, u); integer indices, no gradient. Both engines search alike
    (it is a draw, not arithmetic to check): torch's own cumsum accumulates in double, its multinomial in p's dtype."""

    name = "multinomial_replacement"
    tensors = ("input", "uniform")
    differentiable = (False, False)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        p, u = shapes
        if len(p) not in (1, 2) or len(u) != len(p) or len(p) == 2 and u[0] != p[0]:
            raise ShapeError(f"multinomial: draws {list(u)} do not fit probabilities {list(p)}")
        return u

    def dtype(self, dtypes: list[str]) -> str:
        if not dtypes[0].startswith("float"):
            raise ShapeError(f"multinomial: prob_dist must be a floating point tensor, got {dtypes[0]}")
        return "int64"

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        p, u = xs
        out = self.forward([p.detach().cpu().numpy(), u.detach().cpu().numpy()], a)
        return t.from_numpy(out).to(p.device)

    def forward(self, xs: list[Array], a: Any) -> Array:
        p, u = xs
        rows, draws = p.reshape(-1, p.shape[-1]), u.reshape(-1, u.shape[-1])
        out = np.empty(draws.shape, dtype=np.int64)
        for i in range(rows.shape[0]):
            cum = np.add.accumulate(rows[i], dtype=p.dtype)  # (sequential, in p's dtype, as the kernel's loop)
            cum = cum / cum[-1]
            cum[-1] = 1
            out[i] = np.searchsorted(cum.astype(np.float64), draws[i], side="left")
        return out.reshape(u.shape)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [None, None]


@register
class NormalTensors(Op):
    """torch.normal(mean, std) with std a tensor (a Bayesian layer's weights, an exploration noise): torch's CPU code
    fills the output with normal_(0, 1), then mul_(std).add_(mean), so the values are `noise * std + mean` for noise
    drawn as torch.randn(shape) at that point of the stream. Inputs (mean, std, noise), mean a tensor or a number;
    torch's derivative is zero for both (NormalBackward3; NormalBackward2 for a number mean)."""

    name = "normal_tensors"
    tensors = ("mean", "std", "noise")
    scalars = True
    differentiable = (True, True, False)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        out = broadcast(shapes[0], shapes[1])
        if shapes[2] != out:
            raise ShapeError(f"normal: the draws {list(shapes[2])} must have the output's shape {list(out)}")
        return out

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        mean, std, noise = xs
        overload = 3 if t.is_tensor(mean) and t.is_tensor(std) else 2 if t.is_tensor(std) else 1
        return _normal(t, overload).apply(mean, std, [noise])

    def forward(self, xs: list[Array], a: Any) -> Array:
        mean, std, noise = xs
        out = noise * np.asarray(std, noise.dtype)
        return (out + np.asarray(mean, noise.dtype)).astype(noise.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [None if np.ndim(x) == 0 and not isinstance(x, np.ndarray) else np.zeros(np.shape(x), g.dtype)
                for x in xs[:2]] + [None]


@cache
def _normal(t: Any, overload: int) -> Any:
    """torch.normal of tensors on noise drawn before the trace: noise * std + mean, a zero gradient for the tensors,
    and the grad_fn name torch prints (NormalBackward3 for two tensors, 2 for a number mean, 1 for a number std)."""

    class NormalDraw(t.autograd.Function):
        @staticmethod
        def forward(ctx: Any, mean: Any, std: Any, box: list[Any]) -> Any:
            ctx.tensors = (t.is_tensor(mean), t.is_tensor(std))
            return box[0] * std + mean

        @staticmethod
        def backward(ctx: Any, g: Any) -> tuple[Any, Any, None]:
            return (*(t.zeros_like(g) if is_tensor else None for is_tensor in ctx.tensors), None)  # type: ignore[return-value]

    NormalDraw._backward_cls.__name__ = f"NormalBackward{overload}"
    return NormalDraw
