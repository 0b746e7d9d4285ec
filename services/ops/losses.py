"""Losses: cross_entropy and nll_loss over class indices, mse_loss, smooth_l1_loss, huber_loss, binary cross entropy (of probabilities
and of logits), soft_margin_loss, with mean/sum/none reductions."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import expit

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, broadcast, register, unbroadcast
from services.ops.reductions import _log_softmax


class LossArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reduction: Literal["mean", "sum", "none"] = "mean"


def _reduce(v: Array, reduction: str) -> Array:
    if reduction == "none":
        return v
    return np.asarray(v.sum() if reduction == "sum" else v.mean(), dtype=v.dtype)


class ClassArgs(LossArgs):
    ignore_index: int = -100


class CrossEntropyArgs(ClassArgs):
    label_smoothing: float = Field(0.0, ge=0.0, le=1.0)


@register
class CrossEntropy(Op):
    """-log softmax(input)[target] for class-index targets; input (N, C), (C,) or (N, C, d1, ...) with targets
    (N, d1, ...) (segmentation's per-pixel classes, NllLoss2d in torch). With label_smoothing e the
    target is (1 - e) on the class and e / C spread over all classes; targets equal to ignore_index add nothing,
    and the mean is over the others, as torch's. nll_loss is the same on log-probabilities (NllLoss)."""

    name = "cross_entropy"
    tensors = ("input", "target", "weight")
    min_inputs = 2
    Args: type[BaseModel] = CrossEntropyArgs
    functions = ("F.cross_entropy",)
    differentiable = (True, False, False)
    grad_refused = ("weight",)

    def shape(self, shapes: list[Shape], a: LossArgs) -> Shape:
        x, t = shapes[:2]
        if len(shapes) == 3 and (not x or shapes[2] != (x[0 if len(x) == 1 else 1],)):
            raise ShapeError(f"{self.name}: weight must hold one value per class, shape [{x[0 if len(x) == 1 else 1] if x else 0}], "
                             f"got {list(shapes[2])}")
        if not x:
            raise ShapeError(f"{self.name}: input must have 1 or more dimensions (classes), got a 0-d tensor")
        want = (x[0], *x[2:]) if len(x) >= 2 else ()
        if t == want:
            return () if a.reduction != "none" else want
        raise ShapeError(f"{self.name}: input {list(x)} needs class-index target of shape {list(want)}, got {list(t)}"
                         + (" (input (N, C, d1, ...) takes targets (N, d1, ...): classes are dim 1)" if len(x) > 2 else ""))

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[1] != "int64":
            raise ShapeError(f"{self.name}: target must be int64 class indices, got {dtypes[1]} (give that input \"dtype\": \"int64\")")
        if len(dtypes) == 3 and dtypes[2] != dtypes[0]:
            raise ShapeError(f"{self.name}: weight must be {dtypes[0]} like the input, got {dtypes[2]}")
        return dtypes[0]

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: ClassArgs) -> None:
        classes = shapes[0][0 if len(shapes[0]) == 1 else 1] if shapes[0] else 0
        r = ranges[1]
        ignored = a.ignore_index  # may be the smallest or largest target (-100: padding)
        lo, hi = (min(0, ignored), max(classes - 1, ignored)) if r is not None and ignored in r else (0, classes - 1)
        if r is not None and (r[0] < lo or r[1] > hi):
            raise ShapeError(f"{self.name}: target class indices in [{r[0]:g}, {r[1]:g}] are out of range for "
                             f"{classes} classes (valid: 0 to {classes - 1})")

    def torch(self, t: Any, xs: list[Any], a: CrossEntropyArgs) -> Any:
        return t.nn.functional.cross_entropy(xs[0], xs[1], weight=xs[2] if len(xs) == 3 else None, reduction=a.reduction,
                                             label_smoothing=a.label_smoothing, ignore_index=a.ignore_index)

    def log_probs(self, x: Array) -> Array:
        """The input as log-probabilities over its classes (dim 1)."""
        return _log_softmax(x, 1)

    def smoothing(self, a: ClassArgs) -> float:
        return a.label_smoothing  # type: ignore[attr-defined, no-any-return]

    def _rows(self, xs: list[Array], a: ClassArgs) -> tuple[Array, Array, Array, Array]:
        """Input as rows (N, C) (classes last, one row per target), targets with the ignored ones at class 0, which
        rows count, and the class weights (ones without `weight`)."""
        x, t = xs[:2]
        x2, t2 = (x, t) if x.ndim == 2 else (x[None], t[None]) if x.ndim == 1 else (_class_last(x), t.reshape(-1))
        keep = t2 != a.ignore_index
        if keep.any() and (t2[keep].min() < 0 or t2[keep].max() >= x2.shape[1]):
            raise ValueError(f"{self.name}: target values must be in [0, {x2.shape[1]})")
        w = xs[2] if len(xs) == 3 else np.ones(x2.shape[1], x2.dtype)
        return x2, np.where(keep, t2, 0), keep, w

    def _total(self, keep: Array, wt: Array) -> Array:
        """The mean's divisor: the kept targets' class weights summed (their count without weights), as torch's."""
        return np.where(keep, wt, np.zeros((), wt.dtype)).sum()

    def forward(self, xs: list[Array], a: ClassArgs) -> Array:
        """Per target (1 - e) w[t] (-logp[t]) + e / C sum_c w[c] (-logp[c]), torch's label smoothing with class weights."""
        x2, t2, keep, w = self._rows(xs, a)
        logp = self.log_probs(x2)
        wt = w[t2]
        nll = -wt * logp[np.arange(len(t2)), t2]
        if self.smoothing(a):
            e = np.asarray(self.smoothing(a), x2.dtype)
            nll = (1 - e) * nll - e * (logp * w).sum(axis=1) / np.asarray(x2.shape[1], x2.dtype)
        nll = np.where(keep, nll, np.zeros((), x2.dtype))
        if xs[0].ndim == 1:
            return np.asarray(nll[0] / self._total(keep, wt) if a.reduction == "mean" else nll[0], dtype=x2.dtype)
        if a.reduction == "mean":  # every target ignored, or their class weights summing to 0: NaN, as torch's
            total = self._total(keep, wt)
            return np.asarray(np.nan if total == 0 else nll.sum() / total, dtype=x2.dtype)
        return _reduce(nll.reshape(xs[1].shape), a.reduction)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ClassArgs) -> list[Array | None]:
        x2, t2, keep, w = self._rows(xs, a)
        e = np.asarray(self.smoothing(a), x2.dtype)
        C = x2.shape[1]
        wt = w[t2]
        # d/dx_c of (1 - e) w_t (-logp_t) + e/C sum_c' w_c' (-logp_c'): ((1 - e) w_t + e/C sum w) p_c - e/C w_c - [c = t] (1 - e) w_t
        d = self.probs_grad(x2) * ((1 - e) * wt + e / C * w.sum())[:, None]
        if self.smoothing(a):
            d -= e / C * w
        d[np.arange(len(t2)), t2] -= (1 - e) * wt
        d[~keep] = 0
        if a.reduction == "none" and xs[0].ndim >= 2:
            d *= g.reshape(-1)[:, None]
        else:  # every target ignored: the mean is NaN (0 / 0), its gradient 0, as torch's; kept targets whose class
            # weights sum to 0: NaN, as torch's
            total = self._total(keep, wt)
            if a.reduction == "mean" and keep.any() and total == 0:
                d = np.full_like(d, np.nan)
            else:
                d *= g / (total if a.reduction == "mean" and total != 0 else 1)
        x = xs[0]
        if x.ndim > 2:  # rows back to (N, C, d1, ...)
            d = np.moveaxis(d.reshape(x.shape[0], *x.shape[2:], x.shape[1]), -1, 1)
        return [d if x.ndim >= 2 else d[0], None] + ([None] if len(xs) == 3 else [])

    def probs_grad(self, x: Array) -> Array:
        """d loss / d input before the target's -1: softmax(input) (nll_loss: nothing)."""
        return np.exp(_log_softmax(x, 1))


def _class_last(x: Array) -> Array:
    """(N, C, d1, ...) as rows (N * d1 * ..., C): one row per target, in the targets' order."""
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


@register
class NllLoss(CrossEntropy):
    """-input[target] for log-probabilities (N, C) or (C,) and class-index targets (F.nll_loss), ignore_index
    included: cross_entropy without the log_softmax."""

    name = "nll_loss"
    Args = ClassArgs
    functions = ("F.nll_loss",)

    def torch(self, t: Any, xs: list[Any], a: ClassArgs) -> Any:
        return t.nn.functional.nll_loss(xs[0], xs[1], weight=xs[2] if len(xs) == 3 else None, reduction=a.reduction,
                                        ignore_index=a.ignore_index)

    def log_probs(self, x: Array) -> Array:
        return x

    def smoothing(self, a: ClassArgs) -> float:
        return 0.0

    def probs_grad(self, x: Array) -> Array:
        return np.zeros_like(x)


class ProbsArgs(LossArgs):
    label_smoothing: float = Field(0.0, ge=0.0, le=1.0)
    ignore_index: int = -100
    """Only torch's default: indices to ignore mean nothing for probabilities (torch refuses another)."""


@register
class CrossEntropyProbs(Op):
    """F.cross_entropy with class probabilities as the target (input's shape and dtype: mixup's soft labels, a
    teacher's softmax): -sum_c w_c t_c log softmax(input)_c per sample, t smoothed to t (1 - e) + e / C; the mean is
    over the samples (N * d1 * ...), whatever the weights, as torch's. torch composes it of other ops, so the target
    and the weights get gradients too, and a float64 target promotes the loss. A program's F.cross_entropy and
    nn.CrossEntropyLoss take this op when the target is a float tensor."""

    name = "cross_entropy_probs"
    tensors = ("input", "target", "weight")
    min_inputs = 2
    Args = ProbsArgs

    def shape(self, shapes: list[Shape], a: ProbsArgs) -> Shape:
        if a.ignore_index != -100:
            raise ShapeError("cross_entropy: ignore_index is not supported for floating point target (torch raises this)")
        x, t = shapes[:2]
        if not x:
            raise ShapeError(f"{self.name}: input must have 1 or more dimensions (classes), got a 0-d tensor")
        classes = x[0 if len(x) == 1 else 1]
        if t != x:
            raise ShapeError(f"cross_entropy: a float target holds class probabilities and must have the input's shape "
                             f"{list(x)}, got {list(t)} (class indices are int64: .long())")
        if len(shapes) == 3 and shapes[2] != (classes,):
            raise ShapeError(f"cross_entropy: weight must hold one value per class, shape [{classes}], got {list(shapes[2])}")
        return () if a.reduction != "none" or len(x) == 1 else (x[0], *x[2:])

    def dtype(self, dtypes: list[str]) -> str:
        if not all(d.startswith("float") for d in dtypes):
            raise ShapeError(f"cross_entropy: input, probability target and weight must be float tensors, got {dtypes}")
        return Op.dtype(self, dtypes)  # torch promotes: a float64 target gives a float64 loss

    def torch(self, t: Any, xs: list[Any], a: ProbsArgs) -> Any:
        return t.nn.functional.cross_entropy(xs[0], xs[1], weight=xs[2] if len(xs) == 3 else None, reduction=a.reduction,
                                             label_smoothing=a.label_smoothing)

    def _parts(self, xs: list[Array], a: ProbsArgs) -> tuple[Array, Array, Array, int]:
        """log-probabilities, the smoothed target times the class weights, the weights shaped to broadcast (1 without
        `weight`), and the classes' axis."""
        x, t = xs[:2]
        axis = 0 if x.ndim == 1 else 1
        classes = x.shape[axis]
        view = [1] * x.ndim
        view[axis] = classes
        w = xs[2].reshape(view) if len(xs) == 3 else np.ones((), x.dtype)
        return _log_softmax(x, axis), self._smoothed(xs, a, axis) * w, w, axis

    @staticmethod
    def _smoothed(xs: list[Array], a: ProbsArgs, axis: int) -> Array:
        """The target with label smoothing e: t (1 - e) + e / C."""
        x, t = xs[:2]
        if not a.label_smoothing:
            return t
        e = np.asarray(a.label_smoothing, x.dtype)
        return t * (1 - e) + e / np.asarray(x.shape[axis], x.dtype)

    def _count(self, x: Array) -> int:
        """The mean's divisor: the samples (elements over classes)."""
        return x.size // (x.shape[0 if x.ndim == 1 else 1] or 1) if x.size else 0

    def forward(self, xs: list[Array], a: ProbsArgs) -> Array:
        logp, tw, _, axis = self._parts(xs, a)
        loss = -(logp * tw).sum(axis=axis)
        if a.reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.asarray(loss.sum() / np.asarray(self._count(xs[0]), loss.dtype), dtype=loss.dtype)
        return _reduce(loss, a.reduction)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ProbsArgs) -> list[Array | None]:
        x = xs[0]
        logp, tw, w, axis = self._parts(xs, a)
        up = np.expand_dims(g, axis) if a.reduction == "none" and x.ndim > 1 else g
        if a.reduction == "mean":
            up = up / np.asarray(self._count(x) or 1, x.dtype)
        gx = (np.exp(logp) * tw.sum(axis=axis, keepdims=True) - tw) * up
        e = np.asarray(a.label_smoothing, x.dtype)
        gt = -(1 - e) * logp * w * up
        grads: list[Array | None] = [gx.astype(x.dtype), np.broadcast_to(gt, x.shape).astype(xs[1].dtype)]
        if len(xs) == 3:  # d/dw_c of -sum w_c t_c logp_c: the smoothed targets' log-probabilities, summed over samples
            ts = self._smoothed(xs, a, axis)
            axes = tuple(i for i in range(x.ndim) if i != axis)
            grads.append(np.asarray((-(ts * logp) * up).sum(axis=axes)).reshape(xs[2].shape).astype(xs[2].dtype))
        return grads


@register
class MseLoss(Op):
    name = "mse_loss"
    tensors = ("input", "target")
    Args = LossArgs
    functions = ("F.mse_loss",)

    def shape(self, shapes: list[Shape], a: LossArgs) -> Shape:
        out = broadcast(*shapes)  # torch broadcasts (and warns: see warning)
        return () if a.reduction != "none" else out

    def warning(self, shapes: list[Shape], a: LossArgs) -> str | None:
        if shapes[0] == shapes[1]:
            return None
        return (f"{self.name}: target {list(shapes[1])} and input {list(shapes[0])} differ in shape: torch broadcasts them to "
                f"{list(broadcast(*shapes))} (and warns: likely not what was meant)")

    def torch(self, t: Any, xs: list[Any], a: LossArgs) -> Any:
        import warnings

        with warnings.catch_warnings():  # the result's notes say it (see warning)
            warnings.simplefilter("ignore", UserWarning)
            return getattr(t.nn.functional, self.name)(xs[0], xs[1], **a.model_dump())  # reduction (beta, delta)

    def forward(self, xs: list[Array], a: LossArgs) -> Array:
        d = xs[0] - xs[1]
        return _reduce(d * d, a.reduction)

    def backward(self, g: Array, out: Array, xs: list[Array], a: LossArgs) -> list[Array | None]:
        d = xs[0] - xs[1]
        scale = (2 / d.size if d.size else 0.0) if a.reduction == "mean" else 2
        gd = (g * d * np.asarray(scale, d.dtype)).astype(d.dtype)
        return [unbroadcast(gd, xs[0].shape), unbroadcast(-gd, xs[1].shape)]


@register
class SoftMarginLoss(Op):
    """F.soft_margin_loss(input, target) (SoftMarginLossBackward0): log(1 + exp(-target * input)), as ATen computes it
    in the input's dtype (an exp that overflows gives inf, and its gradient NaN, as torch's); targets +1 / -1."""

    name = "soft_margin_loss"
    tensors = ("input", "target")
    Args = LossArgs
    functions = ("F.soft_margin_loss",)
    differentiable = (True, False)
    grad_refused = ("target",)

    def shape(self, shapes: list[Shape], a: LossArgs) -> Shape:
        if shapes[0] != shapes[1]:
            raise ShapeError(f"soft_margin_loss: target {list(shapes[1])} must have the input's shape {list(shapes[0])}")
        return () if a.reduction != "none" else shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        if not dtypes[0].startswith("float") or dtypes[1] not in ("float32", "float64", "int64"):
            raise ShapeError(f"soft_margin_loss takes a floating point input and a float or int64 target (+1 / -1), "
                             f"got {', '.join(dtypes)}")
        return dtypes[0]  # (the loss is the input's dtype, as torch's)

    def torch(self, t: Any, xs: list[Any], a: LossArgs) -> Any:
        return t.nn.functional.soft_margin_loss(xs[0], xs[1], reduction=a.reduction)

    def forward(self, xs: list[Array], a: LossArgs) -> Array:
        x, y = xs[0], xs[1].astype(xs[0].dtype)
        with np.errstate(over="ignore"):
            return _reduce(np.log1p(np.exp(-x * y)).astype(x.dtype), a.reduction)

    def backward(self, g: Array, out: Array, xs: list[Array], a: LossArgs) -> list[Array | None]:
        x, y = xs[0], xs[1].astype(xs[0].dtype)
        norm = np.asarray(1.0 / x.size if a.reduction == "mean" and x.size else 1.0, x.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.exp(-y * x)
            return [(y * z * -norm / (z + 1) * g).astype(x.dtype), None]


class VarClampArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eps: float = Field(1e-6, ge=0.0)


@register
class VarClamp(Op):
    """F.gaussian_nll_loss's `var = var.clone(); with torch.no_grad(): var.clamp_(min=eps)` (CloneBackward0): the
    values clamped, the gradient passed as if they were not (the clamp is outside the graph); a negative variance
    fails as torch's check does."""

    name = "var_clamp"
    Args = VarClampArgs

    def shape(self, shapes: list[Shape], a: VarClampArgs) -> Shape:
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        if not dtypes[0].startswith("float"):
            raise ShapeError(f"gaussian_nll_loss: var must be a floating point tensor, got {dtypes[0]}")
        return dtypes[0]

    def check_values(self, values: list[Any], shapes: list[Shape], a: VarClampArgs) -> None:
        if values[0] is not None and bool((np.asarray(values[0]) < 0).any()):
            raise ShapeError("gaussian_nll_loss: var has negative entry/entries")

    def torch(self, t: Any, xs: list[Any], a: VarClampArgs) -> Any:
        if bool((xs[0] < 0).any()):
            raise RuntimeError("gaussian_nll_loss: var has negative entry/entries")
        v = xs[0].clone()
        with t.no_grad():
            v.clamp_(min=a.eps)
        return v

    def forward(self, xs: list[Array], a: VarClampArgs) -> Array:
        return np.maximum(xs[0], np.asarray(a.eps, xs[0].dtype))

    def backward(self, g: Array, out: Array, xs: list[Array], a: VarClampArgs) -> list[Array | None]:
        return [g.astype(xs[0].dtype)]


class SmoothL1Args(LossArgs):
    beta: float = Field(1.0, ge=0.0)


@register
class SmoothL1Loss(MseLoss):
    """F.smooth_l1_loss / nn.SmoothL1Loss (DQN's loss, box regression): 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta
    elsewhere (beta 0: the L1 loss), d = input - target, broadcast as mse_loss."""

    name = "smooth_l1_loss"
    Args = SmoothL1Args
    same_dtype = True  # torch promotes mixed float dtypes forward, and fails backward
    functions = ("F.smooth_l1_loss",)

    def elementwise(self, d: Array, a: Any) -> tuple[Array, Array]:
        """The loss per element and its derivative in d."""
        ad = np.abs(d)
        if a.beta == 0:
            return ad, np.sign(d)
        beta = np.asarray(a.beta, d.dtype)
        inner = ad < beta
        return np.where(inner, 0.5 * d * d / beta, ad - 0.5 * beta), np.where(inner, d / beta, np.sign(d))

    def forward(self, xs: list[Array], a: SmoothL1Args) -> Array:  # type: ignore[override]
        return _reduce(self.elementwise(xs[0] - xs[1], a)[0].astype(xs[0].dtype), a.reduction)

    def backward(self, g: Array, out: Array, xs: list[Array], a: SmoothL1Args) -> list[Array | None]:  # type: ignore[override]
        d = xs[0] - xs[1]
        dd = self.elementwise(d, a)[1]
        gd = (g * dd / ((d.size or 1) if a.reduction == "mean" else 1)).astype(d.dtype)
        return [unbroadcast(gd, xs[0].shape), unbroadcast(-gd, xs[1].shape)]


class HuberArgs(LossArgs):
    delta: float = Field(1.0, gt=0.0)


@register
class HuberLoss(SmoothL1Loss):
    """F.huber_loss / nn.HuberLoss: 0.5 d^2 where |d| <= delta, delta (|d| - 0.5 delta) elsewhere (smooth_l1 times
    delta, with beta = delta)."""

    name = "huber_loss"
    Args = HuberArgs  # type: ignore[assignment]
    functions = ("F.huber_loss",)

    def elementwise(self, d: Array, a: Any) -> tuple[Array, Array]:
        ad, delta = np.abs(d), np.asarray(a.delta, d.dtype)
        inner = ad <= delta
        return np.where(inner, 0.5 * d * d, delta * (ad - 0.5 * delta)), np.where(inner, d, delta * np.sign(d))


class BinaryLoss(Op):
    """Binary cross entropy: input and target of one shape (torch refuses others), each element's loss times `weight`
    (broadcast to the input's shape; no gradient, as torch's)."""

    tensors = ("input", "target", "weight")
    min_inputs = 2
    Args = LossArgs
    differentiable = (True, True, False)
    grad_refused = ("weight",)
    optional = {"weight": 1.0}

    def dtype(self, dtypes: list[str]) -> str:
        """Float tensors; input and target of one dtype (torch's kernel refuses others); a weight of another float
        dtype is multiplied in place into the loss, which keeps its dtype."""
        if not all(d.startswith("float") or d == "scalar" for d in dtypes):
            raise ShapeError(f"{self.name}: input and target must be float tensors, got {' and '.join(dtypes)}: cast with .float()")
        if dtypes[1] != dtypes[0]:
            raise ShapeError(f"{self.name}: found dtype {dtypes[1]} for target but expected {dtypes[0]} (the input's): torch "
                             "refuses this; cast one with .float() or .double()")
        return dtypes[0]

    def shape(self, shapes: list[Shape], a: LossArgs) -> Shape:
        if shapes[0] != shapes[1]:
            raise ShapeError(f"{self.name}: target size {list(shapes[1])} must be the same as input size {list(shapes[0])}")
        for slot, s in zip(self.tensors[2:], shapes[2:], strict=False):
            if len(s) > len(shapes[0]) or any(i not in (1, o) for i, o in zip(s[::-1], shapes[0][::-1], strict=False)):
                raise ShapeError(f"{self.name}: {slot} of shape {list(s)} does not broadcast to the input's {list(shapes[0])}")
        return () if a.reduction != "none" else shapes[0]

    def tensor_args(self, xs: list[Any]) -> dict[str, Any]:
        """The weights given as tensors (a number stands for one left out)."""
        return {k: x for k, x in zip(self.tensors[2:], xs[2:], strict=False) if not isinstance(x, (int, float))}

    def torch(self, t: Any, xs: list[Any], a: LossArgs) -> Any:
        return getattr(t.nn.functional, self.name)(xs[0], xs[1], reduction=a.reduction, **self.tensor_args(xs))

    def scaled(self, g: Array, d: Array, a: LossArgs, w: Array | float = 1.0) -> Array:
        """The elementwise derivative d times the weight and the upstream gradient (spread over the mean's elements)."""
        if a.reduction == "mean":
            g = g / (d.size or 1)
        return (g * d * w).astype(d.dtype)

    def weighted(self, loss: Array, xs: list[Array], a: LossArgs) -> Array:
        """Each element's loss times the weight, reduced."""
        return _reduce((loss * xs[2]).astype(loss.dtype) if len(xs) > 2 else loss, a.reduction)


@register
class BinaryCrossEntropy(BinaryLoss):
    """-(t log x + (1 - t) log(1 - x)) for probabilities x; each log clamped at -100, as torch does."""

    name = "binary_cross_entropy"
    functions = ("F.binary_cross_entropy",)

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: LossArgs) -> None:
        if not math.prod(shapes[0]):
            return
        for k, what, hint in ((0, "input", "give it torch.sigmoid(...) or softmax's output, or use "
                               "binary_cross_entropy_with_logits"), (1, "target", "labels 0 and 1, or probabilities")):
            r = ranges[k]  # torch refuses values outside [0, 1] at run time: refused now where they are known to be,
            if r is not None and not (0 <= r[0] and r[1] <= 1):  # else (clamp(sigmoid(z), eps, 1 - eps), 1 - y, ...)
                raise ShapeError(f"binary_cross_entropy: all elements of {what} should be between 0 and 1 (they are "
                                 f"in [{r[0]:g}, {r[1]:g}]): {hint}")  # torch's run decides, as it does

    @staticmethod
    def _logs(x: Array) -> tuple[Array, Array]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.maximum(np.log(x), -100), np.maximum(np.log1p(-x), -100)

    def forward(self, xs: list[Array], a: LossArgs) -> Array:
        x, t = xs[:2]  # within [0, 1] (torch's engine runs first and fails otherwise; finite differences may step just outside: NaN there)
        log_x, log_1mx = self._logs(x)
        return self.weighted(-(t * log_x + (1 - t) * log_1mx), xs, a)

    def backward(self, g: Array, out: Array, xs: list[Array], a: LossArgs) -> list[Array | None]:
        x, t = xs[:2]
        w = xs[2] if len(xs) > 2 else 1.0
        log_x, log_1mx = self._logs(x)
        dx = (x - t) / np.maximum((1 - x) * x, np.asarray(1e-12, x.dtype))  # torch's EPSILON
        return [self.scaled(g, dx, a, w), self.scaled(g, log_1mx - log_x, a, w), *([None] if len(xs) > 2 else [])]


@register
class BinaryCrossEntropyWithLogits(BinaryLoss):
    """Binary cross entropy of sigmoid(x), computed stably as torch does: (1 - t) x + l softplus(-x), where the
    positive examples' weight l = (pos_weight - 1) t + 1 (1 without pos_weight, broadcast along the last dim)."""

    name = "binary_cross_entropy_with_logits"
    tensors = ("input", "target", "weight", "pos_weight")
    signature = ("input", "target", "weight")
    differentiable = (True, True, False, False)
    grad_refused = ("weight", "pos_weight")
    functions = ("F.binary_cross_entropy_with_logits",)

    def dtype(self, dtypes: list[str]) -> str:
        """The target's: torch computes (1 - target) and multiplies the rest into it in place (float tensors of any
        float dtypes: float64 logits and a float32 target give a float32 loss)."""
        if not all(d.startswith("float") or d == "scalar" for d in dtypes):
            raise ShapeError(f"{self.name}: input and target must be float tensors, got {' and '.join(dtypes)}: cast with .float()")
        return dtypes[1]

    @staticmethod
    def _parts(xs: list[Array]) -> tuple[Array, Array, Array, Array | float]:
        """x, t, softplus(-x) and pos_weight - 1 (0 without it)."""
        x, t = xs[:2]
        softplus = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)
        return x, t, softplus.astype(x.dtype), (xs[3] - 1) if len(xs) > 3 else 0.0

    def forward(self, xs: list[Array], a: LossArgs) -> Array:
        x, t, softplus, pw1 = self._parts(xs)
        return self.weighted((1 - t) * x + (pw1 * t + 1) * softplus, xs, a)

    def backward(self, g: Array, out: Array, xs: list[Array], a: LossArgs) -> list[Array | None]:
        x, t, softplus, pw1 = self._parts(xs)
        w = xs[2] if len(xs) > 2 else 1.0
        dx = (1 - t) - (pw1 * t + 1) * expit(-x).astype(x.dtype)
        return [self.scaled(g, dx, a, w), self.scaled(g, -x + pw1 * softplus, a, w), *[None] * (len(xs) - 2)]
