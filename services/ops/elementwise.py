"""Elementwise ops: arithmetic with torch broadcasting, and pointwise functions."""

from __future__ import annotations

import math
import operator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.special import erf, erfc, expit

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, broadcast, promoted, register, sgn, unbroadcast
from services.ops.comparison import no_bool

FLOATS = frozenset({"float32", "float64"})


class Binary(Op):
    """Two inputs broadcast together; the torch call is Python's operator, as a user writes it. int64 and bool
    tensors take part with torch's promotion (`x * k` with an int64 k is float; they get no gradient)."""

    pointwise = True

    tensors = ("input", "other")
    scalars = True
    any_dtype = True
    pyop: Any = None

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return broadcast(*shapes)

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        if len(dtypes) == 2:  # the common cases first: a float tensor with its like, or with a number (per node, 1M times)
            x, y = dtypes
            if x in FLOATS and (y == x or y == "scalar"):
                return x
            if y in FLOATS and x == "scalar":
                return y
        self.dtype(dtypes)  # the op's own refusals (a bool tensor in sub and pow)
        return promoted(self, dtypes, inputs, default=default)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return type(self).pyop(xs[0], xs[1])


class AlphaArgs(BaseModel):
    """torch.add / torch.sub's `alpha`: the other input's factor (`p.add_(g, alpha=-lr)`)."""

    model_config = ConfigDict(extra="forbid")
    alpha: int | float = 1


@register
class Add(Binary):
    name = "add"
    Args = AlphaArgs
    functions = ("torch.add",)
    methods = ("add",)
    pyop = operator.add

    def torch(self, t: Any, xs: list[Any], a: AlphaArgs) -> Any:
        return type(self).pyop(xs[0], xs[1]) if a.alpha == 1 else getattr(t, self.name)(xs[0], xs[1], alpha=a.alpha)

    def forward(self, xs: list[Array], a: AlphaArgs) -> Array:
        return xs[0] + xs[1] if a.alpha == 1 else xs[0] + xs[1] * np.asarray(a.alpha, xs[1].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: AlphaArgs) -> list[Array | None]:
        return [unbroadcast(g, xs[0].shape), unbroadcast(g if a.alpha == 1 else g * np.asarray(a.alpha, g.dtype), xs[1].shape)]


@register
class Sub(Add):
    name = "sub"
    functions = ("torch.sub",)
    methods = ("sub",)
    pyop = operator.sub

    def dtype(self, dtypes: list[str]) -> str:
        if "bool" in dtypes:
            raise ShapeError("subtraction with a bool tensor is not supported (torch refuses it): cast it with .float()")
        return super().dtype(dtypes)

    def forward(self, xs: list[Array], a: AlphaArgs) -> Array:
        return xs[0] - xs[1] if a.alpha == 1 else xs[0] - xs[1] * np.asarray(a.alpha, xs[1].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: AlphaArgs) -> list[Array | None]:
        return [unbroadcast(g, xs[0].shape), unbroadcast(-g if a.alpha == 1 else -g * np.asarray(a.alpha, g.dtype), xs[1].shape)]


@register
class Mul(Binary):
    name = "mul"
    functions = ("torch.mul",)
    methods = ("mul",)
    pyop = operator.mul

    def forward(self, xs: list[Array], a: Any) -> Array:
        return xs[0] * xs[1]

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, y = xs
        return [unbroadcast(g * y, x.shape), unbroadcast(g * x, y.shape)]


class DivArgs(BaseModel):
    """torch.div's `rounding_mode`: None (true division), 'trunc' (toward zero) or 'floor' (Python's //)."""

    model_config = ConfigDict(extra="forbid")
    rounding_mode: Literal["trunc", "floor"] | None = None


@register
class Div(Binary):
    """x / y; with a rounding_mode the quotient rounded as torch rounds it (integer dtypes stay integers), whose
    derivative torch gives as zeros (DivBackward2)."""

    name = "div"
    Args = DivArgs
    functions = ("torch.div", "torch.divide", "torch.true_divide")
    methods = ("div", "divide", "true_divide")
    pyop = operator.truediv

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        if a is None or a.rounding_mode is None:
            return promoted(self, dtypes, inputs, true_division=True, default=default)
        if all(d == "bool" for d in dtypes):  # (bool by a number is int64 in torch)
            raise ShapeError(f"div with rounding_mode='{a.rounding_mode}' of bool tensors is not supported (torch "
                             "refuses it): cast them with .long() or .float()")
        return promoted(self, dtypes, inputs, default=default)

    def torch(self, t: Any, xs: list[Any], a: DivArgs) -> Any:
        if a.rounding_mode is None and "rounding_mode" not in a.model_fields_set:
            return xs[0] / xs[1]
        return t.div(xs[0], xs[1], rounding_mode=a.rounding_mode)  # (given, even None: torch's DivBackward2)

    def forward(self, xs: list[Array], a: DivArgs) -> Array:
        x, y = xs
        if a.rounding_mode is None:
            return x / y
        with np.errstate(all="ignore"):
            if np.result_type(x, y).kind == "f":  # numpy's float floor division is torch's (fmod, then floor)
                return np.floor_divide(x, y) if a.rounding_mode == "floor" else np.trunc(x / y)
            q = np.floor_divide(x, y)  # integers, exactly: trunc is floor moved up where the quotient is negative
            return q if a.rounding_mode == "floor" else q + ((q < 0) & (q * y != x))

    def backward(self, g: Array, out: Array, xs: list[Array], a: DivArgs) -> list[Array | None]:
        x, y = xs
        if a.rounding_mode is not None:
            return [np.zeros(x.shape, g.dtype), np.zeros(y.shape, g.dtype)]
        return [unbroadcast(g / y, x.shape), unbroadcast(-g * x / (y * y), y.shape)]


@register
class Pow(Binary):
    """x ** y with a scalar or tensor exponent; d/dy uses log(x), 0 where x == 0 and y >= 0 (as torch)."""

    name = "pow"
    tensors = ("input", "exponent")
    functions = ("torch.pow",)
    methods = ("pow",)
    pyop = operator.pow

    def dtype(self, dtypes: list[str]) -> str:
        if "bool" in dtypes:
            raise ShapeError("pow with a bool tensor is not differentiable in torch: cast it with .float()")
        return super().dtype(dtypes)

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        out = super().result_dtype(dtypes, inputs, a, default)
        exponent = inputs[1] if len(inputs) > 1 else None
        if out == "int64" and not (type(exponent) is int and exponent >= 0):  # `scales ** 2` (mip-NeRF): as torch
            raise ShapeError("pow of int64 tensors is traced with a non-negative int exponent only (torch refuses negative "
                             "ones at run time): cast with .float()")
        return out

    def forward(self, xs: list[Array], a: Any) -> Array:
        with np.errstate(all="ignore"):
            return np.power(xs[0], xs[1])

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, y = xs
        with np.errstate(all="ignore"):
            gx = np.where(y == 0, 0, g * y * np.power(x, y - 1))
            gy = np.where((x == 0) & (y >= 0), 0, g * out * np.log(x))
        return [unbroadcast(gx.astype(out.dtype), x.shape), unbroadcast(gy.astype(out.dtype), y.shape)]


@register
class Xlogy(Binary):
    """x * log(y), 0 where x == 0 (y NaN aside): F.kl_div's term; d/dx log(y) (where x == 0 too, but 0 where x and y
    are both 0, as torch's), d/dy x / y."""

    name = "xlogy"
    functions = ("torch.xlogy", "torch.special.xlogy")
    methods = ("xlogy",)

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        return promoted(self, dtypes, inputs, true_division=True, default=default)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.xlogy(xs[0], xs[1])

    def forward(self, xs: list[Array], a: Any) -> Array:
        x, y = xs
        with np.errstate(all="ignore"):
            return np.where((x == 0) & ~np.isnan(y), np.zeros((), np.result_type(x, y)), x * np.log(y))

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, y = xs
        with np.errstate(all="ignore"):
            gx, gy = g * np.where((x == 0) & (y == 0), 0, np.log(y)), g * x / y  # torch's: 0 only where both are 0
        return [unbroadcast(gx.astype(out.dtype), x.shape), unbroadcast(gy.astype(out.dtype), y.shape)]


class Unary(Op):
    """One input, same shape out. `fn` names the torch function used for the call."""

    pointwise = True

    fn: str = ""

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return getattr(t, self.fn or self.name)(xs[0])


class FloatUnary(Unary):
    """A pointwise op of floats: a bool tensor (a comparison's result) is refused, as torch refuses it."""

    def dtype(self, dtypes: list[str]) -> str:
        return no_bool(self, dtypes)


INT_REFUSED = frozenset({"frac", "hardsigmoid", "hardswish", "logsigmoid", "mish"})
"""Pointwise functions torch has no int64 kernel for (checked: "frac_cpu" not implemented for 'Long')."""


def _unary(name: str, fwd: Any, bwd: Any, functions: tuple[str, ...] = (), methods: tuple[str, ...] | None = (),
           bounds: tuple[float, float] | None = None, call: str = "", ints: bool = False, keeps_layout: bool = True,
           cuda: str | None = None) -> None:
    """Register a pointwise op from its forward f(x) and backward (g, out, x) -> dx (`bounds`: of every output).
    `methods` None: no tensor method of its name; `call`: the torch function's path when not torch.<name>; `ints`:
    int64 tensors too (`-torch.arange(0, d, 2)`), as torch takes them; `keeps_layout` False: torch's result is
    contiguous whatever the input's strides (F.logsigmoid); `cuda`: how torch's CUDA kernel differs (Op.on_cuda)."""

    class _U(Unary):
        out_range = bounds
        any_dtype = True  # int64 tensors: kept by `ints` ops (abs, neg), else the default float dtype, as torch promotes
        pointwise = keeps_layout

        def dtype(self, dtypes: list[str]) -> str:
            if dtypes[0] == "bool":
                raise ShapeError(f"{name} of a bool tensor is not supported (torch refuses it): cast it first (.float())")
            return super().dtype(dtypes)

        def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
            if dtypes[0] == "int64" and name in INT_REFUSED:
                raise ShapeError(f"{name} of an int64 tensor is not implemented in torch (\"{name}\" not implemented for "
                                 "'Long'): cast it with .float()")
            if dtypes[0] == "int64" and not ints:
                return default  # `deg.sqrt()` of int64 degrees, torch.exp(torch.arange(4)): the default float dtype
            return super().result_dtype(dtypes, inputs, a, default)

        def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
            if call:
                return getattr(t.nn.functional, call[2:])(xs[0]) if call.startswith("F.") else getattr(t, call)(xs[0])
            return getattr(t, name)(xs[0])

        def forward(self, xs: list[Array], a: Any) -> Array:
            x = xs[0]
            with np.errstate(all="ignore"):
                if x.dtype.kind != "f" and not ints:  # (the engine casts to the node's float dtype)
                    return fwd(x.astype(np.float64))
                return fwd(x).astype(x.dtype, copy=False)

        def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
            if xs[0].dtype.kind != "f":
                return [None]  # an int64 input takes no gradient
            with np.errstate(all="ignore"):
                return [bwd(g, out, xs[0]).astype(out.dtype, copy=False)]

        def on_cuda(self, a: Any) -> str | None:
            return cuda

    _U.name = name
    _U.functions = ((call,) if call.startswith("F.") else (f"torch.{name}",)) + functions
    _U.methods = () if methods is None else (name,) + methods
    _U.__name__ = _U.__qualname__ = name.title()
    register(_U)


_unary("neg", np.negative, lambda g, y, x: -g, functions=("torch.negative",), methods=("negative",), ints=True)
_unary("abs", np.abs, lambda g, y, x: g * sgn(x), ints=True)  # torch's sgn: 0 at NaN, so is the gradient
_unary("exp", np.exp, lambda g, y, x: g * y)
_unary("log", np.log, lambda g, y, x: g / x)
_unary("sqrt", np.sqrt, lambda g, y, x: g / (2 * y))
_unary("rsqrt", lambda x: 1 / np.sqrt(x), lambda g, y, x: -0.5 * g * y * y * y)  # RMSNorm: x * torch.rsqrt(ms + eps)
_unary("square", np.square, lambda g, y, x: 2 * g * x, ints=True)  # torch records it as pow(x, 2): PowBackward0
_unary("sin", np.sin, lambda g, y, x: g * np.cos(x))
_unary("cos", np.cos, lambda g, y, x: -g * np.sin(x))
_unary("tanh", np.tanh, lambda g, y, x: g * (1 - y * y), functions=("F.tanh",))
# expit, not 0.5 * (1 + tanh(x / 2)): that rounds to 0 for large negative x, where torch keeps exp(x).
_unary("sigmoid", expit, lambda g, y, x: g * y * (1 - y), functions=("F.sigmoid",), bounds=(0.0, 1.0))
# relu passes the gradient where not x <= 0 (torch's threshold_backward): a NaN input passes it too
_unary("relu", lambda x: np.maximum(x, 0), lambda g, y, x: np.where(x <= 0, 0, g), functions=("F.relu",), ints=True)
# More pointwise functions, each with torch's derivative (0 for the step functions, as torch's).
_unary("tan", np.tan, lambda g, y, x: g * (1 + y * y))
_unary("asin", np.arcsin, lambda g, y, x: g / np.sqrt(1 - x * x), functions=("torch.arcsin",), methods=("arcsin",))
_unary("acos", np.arccos, lambda g, y, x: -g / np.sqrt(1 - x * x), functions=("torch.arccos",), methods=("arccos",))
_unary("atan", np.arctan, lambda g, y, x: g / (1 + x * x), functions=("torch.arctan",), methods=("arctan",))
_unary("sinh", np.sinh, lambda g, y, x: g * np.cosh(x))
_unary("cosh", np.cosh, lambda g, y, x: g * np.sinh(x))
_unary("asinh", np.arcsinh, lambda g, y, x: g / np.sqrt(x * x + 1), functions=("torch.arcsinh",), methods=("arcsinh",))
_unary("atanh", np.arctanh, lambda g, y, x: g / (1 - x * x), functions=("torch.arctanh",), methods=("arctanh",))
_unary("erf", erf, lambda g, y, x: g * (2 / math.sqrt(math.pi)) * np.exp(-x * x), functions=("torch.special.erf",))
_unary("erfc", erfc, lambda g, y, x: -g * (2 / math.sqrt(math.pi)) * np.exp(-x * x), functions=("torch.special.erfc",))
_unary("log1p", np.log1p, lambda g, y, x: g / (1 + x), functions=("torch.special.log1p",))
_unary("expm1", np.expm1, lambda g, y, x: g * (y + 1), functions=("torch.special.expm1",))
_unary("log2", np.log2, lambda g, y, x: g / (x * math.log(2)))
_unary("log10", np.log10, lambda g, y, x: g / (x * math.log(10)))
_unary("exp2", np.exp2, lambda g, y, x: g * y * math.log(2), functions=("torch.special.exp2",))
_unary("reciprocal", np.reciprocal, lambda g, y, x: -g * y * y)
# sinc(x) = sin(pi x) / (pi x), 1 at 0; torch's derivative (pi x cos(pi x) - sin(pi x)) / (pi x^2), 0 at 0
_unary("sinc", np.sinc, lambda g, y, x: g * np.where(x == 0, 0.0, (np.pi * x * np.cos(np.pi * x) - np.sin(np.pi * x))
                                                     / (np.pi * x * x)), functions=("torch.special.sinc",))
_unary("sign", sgn, lambda g, y, x: np.zeros_like(g), ints=True)  # sign(NaN) is 0 in torch
_unary("floor", np.floor, lambda g, y, x: np.zeros_like(g), ints=True)
_unary("ceil", np.ceil, lambda g, y, x: np.zeros_like(g), ints=True)
_unary("round", np.round, lambda g, y, x: np.zeros_like(g), ints=True)  # half to even, as torch
_unary("trunc", np.trunc, lambda g, y, x: np.zeros_like(g), functions=("torch.fix",), methods=("fix",), ints=True)
_unary("frac", lambda x: x - np.trunc(x), lambda g, y, x: g)
# torch multiplies by the constant in the tensor's dtype (self * M_PI_180): Deg2RadBackward0, Rad2DegBackward0
_unary("deg2rad", lambda x: x * np.asarray(math.pi / 180, x.dtype if x.dtype.kind == "f" else np.float64),
       lambda g, y, x: g * np.asarray(math.pi / 180, g.dtype))
_unary("rad2deg", lambda x: x * np.asarray(180 / math.pi, x.dtype if x.dtype.kind == "f" else np.float64),
       lambda g, y, x: g * np.asarray(180 / math.pi, g.dtype))
_unary("logsigmoid", lambda x: -np.logaddexp(0, -x), lambda g, y, x: g * expit(-x), methods=None, call="F.logsigmoid",
       keeps_layout=False)
_unary("softsign", lambda x: x / (1 + np.abs(x)), lambda g, y, x: g / np.square(1 + np.abs(x)), methods=None, call="F.softsign")
_unary("mish", lambda x: x * np.tanh(np.logaddexp(0, x)),
       lambda g, y, x: g * (np.tanh(np.logaddexp(0, x)) + x * expit(x) * (1 - np.square(np.tanh(np.logaddexp(0, x))))),
       methods=None, call="F.mish")
_SIXTH_ON_CUDA = ("{}: torch's CUDA kernel multiplies by one sixth rounded to float32 (1.0f / 6.0f), in float64 "
                  "too: there its values differ from the CPU's and the reference engine's by ~3e-8 relative")
_unary("hardsigmoid", lambda x: np.clip(x + 3, 0, 6) / 6,  # torch's backward: one sixth as a float32 (1.0f / 6.0f)
       lambda g, y, x: np.where((x > -3) & (x < 3), g * float(np.float32(1) / np.float32(6)), 0),
       methods=None, call="F.hardsigmoid", cuda=_SIXTH_ON_CUDA.format("hardsigmoid"))
_unary("hardswish", lambda x: x * np.clip(x + 3, 0, 6) / 6,
       lambda g, y, x: np.where(x <= -3, 0, np.where(x < 3, g * (2 * x + 3) / 6, g)), methods=None, call="F.hardswish",
       cuda=_SIXTH_ON_CUDA.format("hardswish"))


class LeakyReluArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    negative_slope: float = 0.01


@register
class LeakyRelu(Unary):
    name = "leaky_relu"
    Args = LeakyReluArgs
    positional = ("negative_slope",)
    functions = ("F.leaky_relu",)

    def torch(self, t: Any, xs: list[Any], a: LeakyReluArgs) -> Any:
        return t.nn.functional.leaky_relu(xs[0], a.negative_slope)

    def forward(self, xs: list[Array], a: LeakyReluArgs) -> Array:
        x = xs[0]
        return np.where(x > 0, x, x * np.asarray(a.negative_slope, x.dtype))

    def backward(self, g: Array, out: Array, xs: list[Array], a: LeakyReluArgs) -> list[Array | None]:
        return [np.where(xs[0] > 0, g, g * np.asarray(a.negative_slope, g.dtype))]


class GeluArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approximate: Literal["none", "tanh"] = "none"


_K = math.sqrt(2 / math.pi)


@register
class Gelu(Unary):
    """x * Phi(x), exactly with erf, or with torch's tanh approximation."""

    name = "gelu"
    Args = GeluArgs
    functions = ("F.gelu",)

    def torch(self, t: Any, xs: list[Any], a: GeluArgs) -> Any:
        return t.nn.functional.gelu(xs[0], approximate=a.approximate)

    def forward(self, xs: list[Array], a: GeluArgs) -> Array:
        x = xs[0]
        if a.approximate == "tanh":
            return (0.5 * x * (1 + np.tanh(_K * (x + 0.044715 * x**3)))).astype(x.dtype)
        return (0.5 * x * (1 + erf(x / math.sqrt(2)))).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: GeluArgs) -> list[Array | None]:
        x = xs[0]
        if a.approximate == "tanh":
            th = np.tanh(_K * (x + 0.044715 * x**3))
            d = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * _K * (1 + 3 * 0.044715 * x * x)
        else:
            d = 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return [(g * d).astype(x.dtype)]


class SoftplusArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    beta: float = 1.0
    threshold: float = 20.0


@register
class Softplus(Unary):
    """log(1 + exp(beta x)) / beta, linear above `threshold` as torch does."""

    name = "softplus"
    Args = SoftplusArgs
    positional = ("beta", "threshold")
    functions = ("F.softplus",)

    def torch(self, t: Any, xs: list[Any], a: SoftplusArgs) -> Any:
        return t.nn.functional.softplus(xs[0], beta=a.beta, threshold=a.threshold)

    def forward(self, xs: list[Array], a: SoftplusArgs) -> Array:
        x = xs[0]
        bx = x * a.beta
        with np.errstate(over="ignore"):
            return np.where(bx > a.threshold, x, np.log1p(np.exp(bx)) / a.beta).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: SoftplusArgs) -> list[Array | None]:
        x = xs[0]
        bx = x * a.beta
        return [np.where(bx > a.threshold, g, g * expit(bx)).astype(x.dtype)]


@register
class Silu(FloatUnary):
    """x * sigmoid(x); d/dx = s * (1 + x * (1 - s)), as torch's SiluBackward0."""

    name = "silu"
    functions = ("F.silu",)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.nn.functional.silu(xs[0])

    def forward(self, xs: list[Array], a: Any) -> Array:
        x = xs[0]
        return (x * expit(x)).astype(x.dtype, copy=False)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x = xs[0]
        s = expit(x)
        return [(g * s * (1 + x * (1 - s))).astype(x.dtype, copy=False)]


class GluArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = -1


@register
class Glu(Op):
    """The gated linear unit: the input halved along `dim` into a and b, out = a * sigmoid(b) (GluBackward0)."""

    name = "glu"
    Args = GluArgs
    positional = ("dim",)
    functions = ("F.glu",)

    def shape(self, shapes: list[Shape], a: GluArgs) -> Shape:
        x = shapes[0]
        if not x:
            raise ShapeError("glu does not support scalars because halving size must be even")
        d = a.dim % len(x) if -len(x) <= a.dim < len(x) else None
        if d is None:
            raise ShapeError(f"glu: dim {a.dim} is out of range for a tensor of {len(x)} dims")
        if x[d] % 2:
            raise ShapeError(f"glu: halving dimension must be even, but dimension {d} is size {x[d]}")
        return x[:d] + (x[d] // 2,) + x[d + 1:]

    def dtype(self, dtypes: list[str]) -> str:
        if not dtypes[0].startswith("float"):
            raise ShapeError(f"glu: input must be a floating point tensor, got {dtypes[0]}")
        return dtypes[0]

    def torch(self, t: Any, xs: list[Any], a: GluArgs) -> Any:
        return t.nn.functional.glu(xs[0], a.dim)

    def forward(self, xs: list[Array], a: GluArgs) -> Array:
        first, second = np.split(xs[0], 2, axis=a.dim)
        return (first * expit(second)).astype(xs[0].dtype, copy=False)

    def backward(self, g: Array, out: Array, xs: list[Array], a: GluArgs) -> list[Array | None]:
        first, second = np.split(xs[0], 2, axis=a.dim)
        s = expit(second)
        return [np.concatenate([g * s, g * first * s * (1 - s)], axis=a.dim).astype(xs[0].dtype, copy=False)]


class ScaledElu(FloatUnary):
    """scale * (x for x > 0, alpha * (exp(x * input_scale) - 1) otherwise), torch's elu with its coefficients."""

    def coefficients(self, a: Any) -> tuple[float, float, float]:
        """(alpha, scale, input_scale)."""
        raise NotImplementedError

    def forward(self, xs: list[Array], a: Any) -> Array:
        x = xs[0]
        alpha, scale, inner = self.coefficients(a)
        with np.errstate(over="ignore"):
            neg = alpha * scale * np.expm1(np.minimum(x, 0) * inner)
        return np.where(x <= 0, neg, scale * x).astype(x.dtype, copy=False)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x = xs[0]
        alpha, scale, inner = self.coefficients(a)
        neg = g * (alpha * scale * inner) * np.exp(np.minimum(x, 0) * inner)
        return [np.where(x <= 0, neg, g * scale).astype(x.dtype, copy=False)]


class EluArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alpha: float = 1.0


@register
class Elu(ScaledElu):
    """x for x > 0, alpha * (exp(x) - 1) otherwise; at x = 0 torch takes the left branch's slope, alpha."""

    name = "elu"
    Args = EluArgs
    positional = ("alpha",)
    functions = ("F.elu",)

    def coefficients(self, a: EluArgs) -> tuple[float, float, float]:
        return a.alpha, 1.0, 1.0

    def torch(self, t: Any, xs: list[Any], a: EluArgs) -> Any:
        return t.nn.functional.elu(xs[0], alpha=a.alpha)


class NanToNumArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nan: float = 0.0
    posinf: float | None = None
    neginf: float | None = None


@register
class NanToNum(FloatUnary):
    """torch.nan_to_num(x, nan=0.0, posinf=None, neginf=None): NaN and infinities replaced (by default with 0 and the
    dtype's largest and lowest finite numbers); the gradient passes only where x is finite (NanToNumBackward0)."""

    name = "nan_to_num"
    Args = NanToNumArgs
    positional = ("nan", "posinf", "neginf")
    functions = ("torch.nan_to_num",)
    methods = ("nan_to_num",)

    def torch(self, t: Any, xs: list[Any], a: NanToNumArgs) -> Any:
        return t.nan_to_num(xs[0], nan=a.nan, posinf=a.posinf, neginf=a.neginf)

    def forward(self, xs: list[Array], a: NanToNumArgs) -> Array:
        return np.nan_to_num(xs[0], nan=a.nan, posinf=a.posinf, neginf=a.neginf)

    def backward(self, g: Array, out: Array, xs: list[Array], a: NanToNumArgs) -> list[Array | None]:
        with np.errstate(invalid="ignore"):  # torch multiplies: an infinite g at a replaced element gives NaN
            return [g * np.isfinite(xs[0]).astype(g.dtype)]


class HardtanhArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_val: float = -1.0
    max_val: float = 1.0


@register
class Hardtanh(Unary):
    """input clamped to [min_val, max_val]. Unlike clamp, the gradient passes only strictly inside:
    torch's HardtanhBackward0 zeroes it where input <= min_val or input >= max_val."""

    name = "hardtanh"
    Args = HardtanhArgs
    positional = ("min_val", "max_val")
    functions = ("F.hardtanh",)

    def shape(self, shapes: list[Shape], a: HardtanhArgs) -> Shape:
        if a.min_val > a.max_val:
            raise ShapeError(f"hardtanh: min_val {a.min_val:g} cannot be greater than max_val {a.max_val:g}")
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        return no_bool(self, dtypes)

    def torch(self, t: Any, xs: list[Any], a: HardtanhArgs) -> Any:
        return t.nn.functional.hardtanh(xs[0], a.min_val, a.max_val)

    def forward(self, xs: list[Array], a: HardtanhArgs) -> Array:
        x = xs[0]
        return np.minimum(np.maximum(x, np.asarray(a.min_val, x.dtype)), np.asarray(a.max_val, x.dtype))

    def backward(self, g: Array, out: Array, xs: list[Array], a: HardtanhArgs) -> list[Array | None]:
        x = xs[0]
        # at a NaN input torch's vectorised CPU kernel gives 0, its scalar loop over a tensor's tail g (which elements
        # take which depends on the CPU's vector width): ours is the vector path's 0, what most elements get
        inside = (x > np.asarray(a.min_val, x.dtype)) & (x < np.asarray(a.max_val, x.dtype))
        return [np.where(inside, g, np.zeros((), g.dtype))]
