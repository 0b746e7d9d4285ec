"""Normalisation ops: batch_norm (training and eval mode), layer_norm, rms_norm, group_norm, instance_norm.

The three norms share one pair of helpers: normalise over some axes with the biased variance, and
the matching backward, gx = invstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, register, same_float


def normalize(x: Array, axes: tuple[int, ...], eps: float) -> tuple[Array, Array]:
    """(x - mean) * invstd over `axes` with the biased variance, computed in float64; returns (xhat, invstd),
    invstd keeping the reduced axes. Empty reductions give NaN statistics over an empty output, as in torch."""
    x64 = x.astype(np.float64)
    count = math.prod(x.shape[i] for i in axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x64.sum(axis=axes, keepdims=True) / count
        centered = x64 - mean
        var = (centered * centered).sum(axis=axes, keepdims=True) / count
        invstd = 1.0 / np.sqrt(var + eps)
    return centered * invstd, invstd


def normalize_backward(gxhat: Array, xhat: Array, invstd: Array, axes: tuple[int, ...]) -> Array:
    """Gradient through xhat = (x - mean) * invstd (biased variance) given the gradient on xhat, in float64."""
    count = math.prod(xhat.shape[i] for i in axes)
    if count == 0:
        return np.zeros_like(xhat)
    mean_g = gxhat.sum(axis=axes, keepdims=True) / count
    mean_gx = (gxhat * xhat).sum(axis=axes, keepdims=True) / count
    return invstd * (gxhat - mean_g - xhat * mean_gx)


def affine(xhat: Array, xs: list[Array], view: Shape) -> Array:
    """xhat * weight + bias for the weight and bias present in xs[1:], each reshaped to `view`."""
    out = xhat
    if len(xs) > 1:
        out = out * xs[1].astype(np.float64).reshape(view)
    if len(xs) > 2:
        out = out + xs[2].astype(np.float64).reshape(view)
    return out


def affine_backward(g: Array, xhat: Array, xs: list[Array], view: Shape, axes: tuple[int, ...]) -> tuple[Array, list[Array]]:
    """The gradient on xhat, and those of the weight and bias present in xs[1:] (summed over `axes`)."""
    g64 = g.astype(np.float64)
    gxhat = g64 * xs[1].astype(np.float64).reshape(view) if len(xs) > 1 else g64
    params: list[Array] = []
    if len(xs) > 1:
        params.append((g64 * xhat).sum(axis=axes).reshape(xs[1].shape).astype(xs[1].dtype))
    if len(xs) > 2:
        params.append(g64.sum(axis=axes).reshape(xs[2].shape).astype(xs[2].dtype))
    return gxhat, params


def per_channel(name: str, slots: tuple[str, ...], shapes: list[Shape], channels: int) -> None:
    """A norm's weight, bias (and running statistics): one value per channel, or ShapeError."""
    for slot, s in zip(slots, shapes, strict=False):
        if s != (channels,):
            raise ShapeError(f"{name}: {slot} shape {list(s)} should be [{channels}] (one value per channel)")


# ---- batch_norm ---------------------------------------------------------------------------------


def batch_shape_check(name: str, x: Shape) -> None:
    """torch's rules for a training-mode batch norm input (N, C, *)."""
    if len(x) < 2:
        raise ShapeError(f"{name}: input must be (N, C, *) with at least 2 dims, got {list(x)}")
    if math.prod(x) == 0:
        raise ShapeError(f"{name}: empty input {list(x)} is not supported (torch skips normalisation for it)")
    if math.prod(x) // x[1] == 1:
        raise ShapeError(f"{name}: expected more than 1 value per channel when training, got input size {list(x)}")


def batch_axes(ndim: int) -> tuple[int, ...]:
    """Every axis but the channel axis 1."""
    return (0, *range(2, ndim))


class BatchNormArgs(BaseModel):
    """F.batch_norm's arguments in training mode; momentum only moves running buffers."""

    model_config = ConfigDict(extra="forbid")
    momentum: float = 0.1
    eps: float = Field(1e-5, gt=0)


@register
class BatchNorm(Op):
    """Training-mode batch norm over (N, *) per channel, with batch statistics (biased variance), as
    nn.BatchNorm1d/2d/3d compute in training; `momentum` only moves running buffers (see batch_norm_running)."""

    name = "batch_norm"
    tensors = ("input", "weight", "bias")
    min_inputs = 1
    Args = BatchNormArgs

    def shape(self, shapes: list[Shape], a: BatchNormArgs) -> Shape:
        x = shapes[0]
        batch_shape_check(self.name, x)
        per_channel("batch_norm", self.tensors[1:], shapes[1:], x[1])
        return x

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: BatchNormArgs) -> Any:
        w = xs[1] if len(xs) > 1 else None
        b = xs[2] if len(xs) > 2 else None
        return t.nn.functional.batch_norm(xs[0], None, None, w, b, training=True, momentum=a.momentum, eps=a.eps)

    def forward(self, xs: list[Array], a: BatchNormArgs) -> Array:
        x = xs[0]
        xhat, _ = normalize(x, batch_axes(x.ndim), a.eps)
        view = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        return affine(xhat, xs, view).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: BatchNormArgs) -> list[Array | None]:
        x = xs[0]
        axes = batch_axes(x.ndim)
        xhat, invstd = normalize(x, axes, a.eps)
        view = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        gxhat, params = affine_backward(g, xhat, xs, view, axes)
        return [normalize_backward(gxhat, xhat, invstd, axes).astype(x.dtype), *params]


class BatchNormRunningArgs(BaseModel):
    """Which buffer to return, and the momentum of its update."""

    model_config = ConfigDict(extra="forbid")
    stat: Literal["mean", "var"]
    momentum: float = 0.1


@register
class BatchNormRunning(Op):
    """The running_mean or running_var buffer a BatchNorm holds after a training step on the input:
    (1 - momentum) * previous + momentum * batch statistic (the unbiased variance). `previous` is the buffer the
    module's last call left (its second input), or a fresh module's (mean 0, var 1). Buffers carry no gradient."""

    name = "batch_norm_running"
    Args = BatchNormRunningArgs
    tensors = ("input", "previous")
    min_inputs = 1
    differentiable = (False, False)

    def shape(self, shapes: list[Shape], a: BatchNormRunningArgs) -> Shape:
        batch_shape_check(self.name, shapes[0])
        if len(shapes) > 1 and shapes[1] != (shapes[0][1],):
            raise ShapeError(f"{self.name}: the previous buffer has shape {list(shapes[1])}, not [{shapes[0][1]}]")
        return (shapes[0][1],)

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: BatchNormRunningArgs) -> Any:
        x = xs[0].detach()
        with t.no_grad():
            mean = t.zeros(x.shape[1], dtype=x.dtype, device=x.device)
            var = t.ones(x.shape[1], dtype=x.dtype, device=x.device)
            if len(xs) > 1:  # the buffer the last call left: only the asked one matters
                (mean if a.stat == "mean" else var).copy_(xs[1].detach())
            t.nn.functional.batch_norm(x, mean, var, training=True, momentum=a.momentum)
        return mean if a.stat == "mean" else var

    def forward(self, xs: list[Array], a: BatchNormRunningArgs) -> Array:
        x = xs[0]
        axes = batch_axes(x.ndim)
        count = math.prod(x.shape[i] for i in axes)
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=axes)
        previous = xs[1].astype(np.float64) if len(xs) > 1 else 0.0 if a.stat == "mean" else 1.0
        if a.stat == "mean":
            return ((1 - a.momentum) * previous + a.momentum * mean).astype(x.dtype)
        centered = x64 - mean.reshape((1, -1) + (1,) * (x.ndim - 2))
        unbiased = (centered * centered).sum(axis=axes) / (count - 1)
        return ((1 - a.momentum) * previous + a.momentum * unbiased).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: BatchNormRunningArgs) -> list[Array | None]:
        return [None] * len(xs)


class BatchNormEvalArgs(BaseModel):
    """F.batch_norm's arguments in eval mode (training=False)."""

    model_config = ConfigDict(extra="forbid")
    eps: float = Field(1e-5, gt=0)


@register
class BatchNormEval(Op):
    """Eval-mode batch norm (`model.eval()`, F.batch_norm(..., training=False)): each channel normalised with the
    running statistics, (x - running_mean) / sqrt(running_var + eps) * weight + bias, an affine map per channel;
    the statistics carry no gradient."""

    name = "batch_norm_eval"
    grad_refused = ("running_mean", "running_var")
    tensors = ("input", "running_mean", "running_var", "weight", "bias")
    min_inputs = 3
    differentiable = (True, False, False, True, True)
    Args = BatchNormEvalArgs

    def shape(self, shapes: list[Shape], a: BatchNormEvalArgs) -> Shape:
        x = shapes[0]
        if len(x) < 2:
            raise ShapeError(f"{self.name}: input must be (N, C, *) with at least 2 dims, got {list(x)}")
        per_channel("batch_norm", self.tensors[1:], shapes[1:], x[1])
        return x

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: BatchNormEvalArgs) -> Any:
        w = xs[3] if len(xs) > 3 else None
        b = xs[4] if len(xs) > 4 else None
        return t.nn.functional.batch_norm(xs[0], xs[1], xs[2], w, b, training=False, eps=a.eps)

    def _scaled(self, xs: list[Array], a: BatchNormEvalArgs) -> tuple[Array, Array, Shape]:
        """xhat = (x - mean) * invstd in float64, invstd, and the per-channel view shape."""
        x = xs[0]
        view = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        invstd = 1.0 / np.sqrt(xs[2].astype(np.float64) + a.eps)
        return (x.astype(np.float64) - xs[1].astype(np.float64).reshape(view)) * invstd.reshape(view), invstd, view

    def forward(self, xs: list[Array], a: BatchNormEvalArgs) -> Array:
        xhat, _, view = self._scaled(xs, a)
        return affine(xhat, [xs[0], *xs[3:]], view).astype(xs[0].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: BatchNormEvalArgs) -> list[Array | None]:
        xhat, invstd, view = self._scaled(xs, a)
        gxhat, params = affine_backward(g, xhat, [xs[0], *xs[3:]], view, batch_axes(xs[0].ndim))
        return [(gxhat * invstd.reshape(view)).astype(xs[0].dtype), None, None, *params]


# ---- layer_norm and group_norm ------------------------------------------------------------------


class LayerNormArgs(BaseModel):
    """F.layer_norm's arguments; normalized_shape may also be an int, as nn.LayerNorm takes it."""

    model_config = ConfigDict(extra="forbid")
    normalized_shape: int | list[int]
    eps: float = Field(1e-5, gt=0)


def normalized(a: LayerNormArgs) -> Shape:
    """normalized_shape as a tuple; an int n means (n,), as nn.LayerNorm takes it."""
    return (a.normalized_shape,) if isinstance(a.normalized_shape, int) else tuple(a.normalized_shape)


@register
class LayerNorm(Op):
    """Normalise over the trailing dims given by normalized_shape (biased variance), then weight and bias
    shaped normalized_shape, elementwise."""

    name = "layer_norm"
    tensors = ("input", "weight", "bias")
    min_inputs = 1
    Args = LayerNormArgs
    signature = ("input", "normalized_shape", "weight", "bias", "eps")
    functions = ("F.layer_norm",)

    def shape(self, shapes: list[Shape], a: LayerNormArgs) -> Shape:
        x, ns = shapes[0], normalized(a)
        if not ns:
            raise ShapeError("layer_norm: normalized_shape must have at least one element, got []")
        if len(x) < len(ns) or x[len(x) - len(ns):] != ns:
            raise ShapeError(f"layer_norm: normalized_shape={list(ns)} needs input of shape [*, {', '.join(map(str, ns))}], got {list(x)}")
        for slot, s in zip(self.tensors[1:], shapes[1:], strict=False):
            if s != ns:
                raise ShapeError(f"layer_norm: {slot} shape {list(s)} should be normalized_shape {list(ns)}")
        return x

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: LayerNormArgs) -> Any:
        w = xs[1] if len(xs) > 1 else None
        b = xs[2] if len(xs) > 2 else None
        return t.nn.functional.layer_norm(xs[0], normalized(a), w, b, eps=a.eps)

    def forward(self, xs: list[Array], a: LayerNormArgs) -> Array:
        x, k = xs[0], len(normalized(a))
        xhat, _ = normalize(x, tuple(range(x.ndim - k, x.ndim)), a.eps)
        return affine(xhat, xs, normalized(a)).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: LayerNormArgs) -> list[Array | None]:
        x, k = xs[0], len(normalized(a))
        axes = tuple(range(x.ndim - k, x.ndim))
        xhat, invstd = normalize(x, axes, a.eps)
        gxhat, params = affine_backward(g, xhat, xs, normalized(a), tuple(range(x.ndim - k)))
        return [normalize_backward(gxhat, xhat, invstd, axes).astype(x.dtype), *params]


class RMSNormArgs(BaseModel):
    """F.rms_norm's arguments; eps None is the dtype's machine epsilon, as torch takes it."""

    model_config = ConfigDict(extra="forbid")
    normalized_shape: int | list[int]
    eps: float | None = Field(None, gt=0)


@register
class RMSNorm(LayerNorm):
    """x * rsqrt(mean(x**2) + eps) over the trailing dims given by normalized_shape, times weight (no centring, no
    bias), as nn.RMSNorm and F.rms_norm. torch runs it on the CPU as separate ops (pow, mean, add, rsqrt, mul and the
    weight's mul): the node's grad_fn is the last MulBackward0, with the others torch-internal behind it."""

    name = "rms_norm"
    tensors = ("input", "weight")
    Args = RMSNormArgs  # type: ignore[assignment]
    signature = ("input", "normalized_shape", "weight", "eps")
    functions = ("F.rms_norm", "torch.rms_norm")

    def shape(self, shapes: list[Shape], a: RMSNormArgs) -> Shape:  # type: ignore[override]
        if isinstance(a.normalized_shape, int):  # (nn.RMSNorm(6) gives a list)
            raise ShapeError("rms_norm(): argument 'normalized_shape' must be a tuple of ints, not int (torch raises this)")
        return super().shape(shapes, a)  # type: ignore[arg-type]

    def torch(self, t: Any, xs: list[Any], a: RMSNormArgs) -> Any:  # type: ignore[override]
        return t.nn.functional.rms_norm(xs[0], normalized(a), xs[1] if len(xs) > 1 else None, eps=a.eps)

    def _scaled(self, x: Array, a: RMSNormArgs) -> tuple[Array, Array, tuple[int, ...]]:
        """(x * r, r, axes) in float64, r = rsqrt(mean(x**2) + eps) keeping the reduced axes."""
        axes = tuple(range(x.ndim - len(normalized(a)), x.ndim))
        eps = float(np.finfo(x.dtype).eps) if a.eps is None else a.eps
        x64 = x.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = 1.0 / np.sqrt((x64 * x64).mean(axis=axes, keepdims=True) + eps)
        return x64 * r, r, axes

    def forward(self, xs: list[Array], a: RMSNormArgs) -> Array:  # type: ignore[override]
        xhat, _, _ = self._scaled(xs[0], a)
        return affine(xhat, xs, normalized(a)).astype(xs[0].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: RMSNormArgs) -> list[Array | None]:  # type: ignore[override]
        x = xs[0]
        xhat, r, axes = self._scaled(x, a)
        gxhat, params = affine_backward(g, xhat, xs, normalized(a), tuple(range(x.ndim - len(axes))))
        # d(x r)/dx = r - x r^3 x^T / n: the gradient on xhat minus its projection on xhat, times r
        gx = r * (gxhat - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))
        return [gx.astype(x.dtype), *params]


class GroupNormArgs(BaseModel):
    """F.group_norm's arguments."""

    model_config = ConfigDict(extra="forbid")
    num_groups: int
    eps: float = Field(1e-5, gt=0)


def grouped(x: Array, groups: int) -> Array:
    """x (N, C, *) as (N, groups, C/groups * prod(*)): each group's values on the last axis."""
    return x.reshape(x.shape[0], groups, math.prod(x.shape[1:]) // groups)


@register
class GroupNorm(Op):
    """Normalise each sample over each group of C/num_groups channels and their spatial positions (biased
    variance), then per-channel weight and bias."""

    name = "group_norm"
    tensors = ("input", "weight", "bias")
    min_inputs = 1
    Args = GroupNormArgs
    signature = ("input", "num_groups", "weight", "bias", "eps")
    functions = ("F.group_norm",)

    def shape(self, shapes: list[Shape], a: GroupNormArgs) -> Shape:
        x = shapes[0]
        if len(x) < 2:
            raise ShapeError(f"group_norm: input must be (N, C, *) with at least 2 dims, got {list(x)}")
        if a.num_groups < 1:
            raise ShapeError(f"group_norm: num_groups must be positive, got {a.num_groups}")
        if x[1] % a.num_groups:
            raise ShapeError(f"group_norm: {x[1]} channels are not divisible by num_groups={a.num_groups}")
        if x[0] * x[1] // a.num_groups * math.prod(x[2:]) == 1:  # torch's F.group_norm check
            raise ShapeError(f"group_norm: expected more than 1 value per channel when training, got input size {list(x)}")
        if x[0] and x[1] and math.prod(x[2:]) == 0:
            raise ShapeError(f"group_norm: input {list(x)} has empty groups, not supported (torch gives NaN weight gradients)")
        per_channel("group_norm", self.tensors[1:], shapes[1:], x[1])
        return x

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: GroupNormArgs) -> Any:
        w = xs[1] if len(xs) > 1 else None
        b = xs[2] if len(xs) > 2 else None
        return t.nn.functional.group_norm(xs[0], a.num_groups, w, b, eps=a.eps)

    def forward(self, xs: list[Array], a: GroupNormArgs) -> Array:
        x = xs[0]
        xhat = normalize(grouped(x, a.num_groups), (2,), a.eps)[0].reshape(x.shape)
        return affine(xhat, xs, (1, x.shape[1]) + (1,) * (x.ndim - 2)).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: GroupNormArgs) -> list[Array | None]:
        x = xs[0]
        xhat, invstd = normalize(grouped(x, a.num_groups), (2,), a.eps)
        view = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        gxhat, params = affine_backward(g, xhat.reshape(x.shape), xs, view, batch_axes(x.ndim))
        gx = normalize_backward(grouped(gxhat, a.num_groups), xhat, invstd, (2,))
        return [gx.reshape(x.shape).astype(x.dtype), *params]


class InstanceNormArgs(BaseModel):
    """F.instance_norm's arguments with input statistics (no running buffers); momentum moves none here."""

    model_config = ConfigDict(extra="forbid")
    running_mean: None = Field(None, description="running statistics are not traced: input statistics only")
    running_var: None = None
    eps: float = Field(1e-5, gt=0)
    momentum: float = 0.1
    use_input_stats: Literal[True] = True


@register
class InstanceNorm(GroupNorm):
    """Normalise each sample's channel over its positions (group_norm with a group per channel), as
    nn.InstanceNorm1d/2d/3d compute it with input statistics; torch runs it as a batch norm of (1, N*C, *)
    (ViewBackward0 over NativeBatchNormBackward0)."""

    name = "instance_norm"
    Args = InstanceNormArgs  # type: ignore[assignment]
    tensors = ("input", "weight", "bias")
    signature = ("input", "running_mean", "running_var", "weight", "bias")  # torch's order; the running statistics
    positional = ()  # are arguments that must be None (input statistics): a tensor given there is refused
    functions = ("F.instance_norm",)

    def shape(self, shapes: list[Shape], a: InstanceNormArgs) -> Shape:  # type: ignore[override]
        x = shapes[0]
        if len(x) < 3 or math.prod(x[2:]) <= 1:
            raise ShapeError(f"instance_norm: expected more than 1 spatial element when training, got input size {list(x)} "
                             "(input (N, C, L), (N, C, H, W) or (N, C, D, H, W))")
        return super().shape(shapes, GroupNormArgs(num_groups=x[1], eps=a.eps))

    def torch(self, t: Any, xs: list[Any], a: InstanceNormArgs) -> Any:  # type: ignore[override]
        w = xs[1] if len(xs) > 1 else None
        b = xs[2] if len(xs) > 2 else None
        return t.nn.functional.instance_norm(xs[0], weight=w, bias=b, eps=a.eps)

    def forward(self, xs: list[Array], a: InstanceNormArgs) -> Array:  # type: ignore[override]
        return super().forward(xs, GroupNormArgs(num_groups=xs[0].shape[1], eps=a.eps))

    def backward(self, g: Array, out: Array, xs: list[Array], a: InstanceNormArgs) -> list[Array | None]:  # type: ignore[override]
        return super().backward(g, out, xs, GroupNormArgs(num_groups=xs[0].shape[1], eps=a.eps))
