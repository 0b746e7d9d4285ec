"""More pointwise functions of two or three tensors, broadcast as torch broadcasts: remainder (Python's %, the
divisor's sign), fmod (the dividend's sign), floor_divide of integers (//), atan2, hypot, copysign, lerp, addcmul and
addcdiv, each with torch's derivative."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, broadcast, promoted, register, unbroadcast
from services.ops.elementwise import Binary


def _floats(op: Op, dtypes: list[str]) -> None:
    if any(d in ("int64", "bool") for d in dtypes):
        raise ShapeError(f"{op.name}: this op needs floating point tensors here, got {dtypes}: cast with .float()")


class Modulo(Binary):
    """x - round(x / y) * y for a rounding (computed exactly, ints too, by numpy's `exact`); d/dx 1, d/dy -round(x / y)."""

    rounding: Any = None
    exact: Any = None

    def forward(self, xs: list[Array], a: Any) -> Array:
        with np.errstate(all="ignore"):
            return type(self).exact(xs[0], xs[1])

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, y = xs
        with np.errstate(all="ignore"):
            return [unbroadcast(g, x.shape), unbroadcast((-g * type(self).rounding(x / y)).astype(g.dtype), y.shape)]


@register
class Remainder(Modulo):
    """x % y (torch.remainder): floor rounding, the divisor's sign."""

    name = "remainder"
    functions = ("torch.remainder",)
    methods = ("remainder",)
    pyop = operator.mod
    rounding, exact = np.floor, np.mod


@register
class Fmod(Modulo):
    """torch.fmod(x, y): trunc rounding, the dividend's sign."""

    name = "fmod"
    functions = ("torch.fmod",)
    methods = ("fmod",)
    rounding, exact = np.trunc, np.fmod

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.fmod(xs[0], xs[1])


@register
class FloorDivide(Binary):
    """a // b of integer tensors (index arithmetic); torch's floor division of floats has no derivative."""

    name = "floor_divide"
    functions = ("torch.floor_divide",)
    methods = ("floor_divide",)
    pyop = operator.floordiv

    def dtype(self, dtypes: list[str]) -> str:
        if any(d.startswith("float") for d in dtypes):
            raise ShapeError("floor division of float tensors is not traced: torch's backward fails there (derivative "
                             "for floor_divide is not implemented); write torch.floor(a / b)")
        return "int64"

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        if any(isinstance(i, float) and not i.is_integer() for i in inputs):
            raise ShapeError("floor division by a fraction is a float: not traced (no derivative in torch)")
        return self.dtype(dtypes)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        whole = [int(v) if isinstance(v, float) else v for v in xs]  # a spec's numbers are floats: 3.0 means 3
        return whole[0] // whole[1]

    def forward(self, xs: list[Array], a: Any) -> Array:
        return np.floor_divide(xs[0], xs[1])

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [None, None]


def _binary(name: str, fwd: Any, dx: Any, dy: Any, numbers: bool = True) -> None:
    """Register a float-only binary pointwise op from f(x, y) and its partial derivatives (x, y, out) -> array;
    `numbers`: whether torch takes a Python number as the second input."""

    class _B(Binary):
        scalars = numbers

        def dtype(self, dtypes: list[str]) -> str:
            _floats(self, dtypes)
            return super().dtype(dtypes)

        def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
            return getattr(t, name)(xs[0], xs[1] if isinstance(xs[1], t.Tensor) else t.tensor(xs[1], dtype=xs[0].dtype))

        def forward(self, xs: list[Array], a: Any) -> Array:
            return fwd(xs[0], xs[1])

        def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
            x, y = xs
            with np.errstate(all="ignore"):
                return [unbroadcast((g * dx(x, y, out)).astype(g.dtype), x.shape),
                        unbroadcast((g * dy(x, y, out)).astype(g.dtype), y.shape)]

    _B.name, _B.functions, _B.methods = name, (f"torch.{name}",), (name,)
    _B.__name__ = _B.__qualname__ = name.title()
    register(_B)


# torch's backward gives 0 where x and y are both 0 (not 0/0)
def _over_norm(t: Array, x: Array, y: Array) -> Array:
    """t / (x*x + y*y), 0 where both x and y are 0 (atan2's derivative as torch's backward gives it)."""
    d = x * x + y * y
    return np.where(d == 0, 0, t / np.where(d == 0, 1, d))


_binary("atan2", np.arctan2, lambda x, y, o: _over_norm(y, x, y), lambda x, y, o: _over_norm(-x, x, y), numbers=False)
_binary("hypot", np.hypot, lambda x, y, o: x / o, lambda x, y, o: y / o, numbers=False)
# torch's LogaddexpBackward0: grad / (1 + exp(other - self)), and the same the other way
_binary("logaddexp", np.logaddexp, lambda x, y, o: 1 / (1 + np.exp(y - x)), lambda x, y, o: 1 / (1 + np.exp(x - y)),
        numbers=False)
_binary("copysign", np.copysign, lambda x, y, o: np.where(x == 0, 0, np.sign(x) * np.where(np.signbit(y), -1, 1)),
        lambda x, y, o: np.zeros_like(o))


class ValueArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = 1.0


class Ternary(Op):
    """Three tensors broadcast together, float only."""

    pointwise = True

    tensors = ("input", "tensor1", "tensor2")

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return broadcast(*shapes)

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        _floats(self, [d for d in dtypes if d != "scalar"])
        return promoted(self, dtypes, inputs, default=default)


@register
class Addcmul(Ternary):
    """torch.addcmul(input, t1, t2, value=1): input + value * t1 * t2 (AddcmulBackward0)."""

    name = "addcmul"
    Args = ValueArgs
    functions = ("torch.addcmul",)
    methods = ("addcmul",)

    def torch(self, t: Any, xs: list[Any], a: ValueArgs) -> Any:
        return t.addcmul(*xs, value=a.value)

    def forward(self, xs: list[Array], a: ValueArgs) -> Array:
        x, p, q = xs
        return x + np.asarray(a.value, x.dtype) * p * q

    def backward(self, g: Array, out: Array, xs: list[Array], a: ValueArgs) -> list[Array | None]:
        x, p, q = xs
        v = np.asarray(a.value, g.dtype)
        return [unbroadcast(g, x.shape), unbroadcast(g * v * q, p.shape), unbroadcast(g * v * p, q.shape)]


@register
class Addcdiv(Ternary):
    """torch.addcdiv(input, t1, t2, value=1): input + value * t1 / t2 (AddcdivBackward0, Adam's update)."""

    name = "addcdiv"
    Args = ValueArgs
    functions = ("torch.addcdiv",)
    methods = ("addcdiv",)

    def torch(self, t: Any, xs: list[Any], a: ValueArgs) -> Any:
        return t.addcdiv(*xs, value=a.value)

    def forward(self, xs: list[Array], a: ValueArgs) -> Array:
        x, p, q = xs
        return x + np.asarray(a.value, x.dtype) * p / q

    def backward(self, g: Array, out: Array, xs: list[Array], a: ValueArgs) -> list[Array | None]:
        x, p, q = xs
        v = np.asarray(a.value, g.dtype)
        return [unbroadcast(g, x.shape), unbroadcast(g * v / q, p.shape), unbroadcast(-g * v * p / (q * q), q.shape)]


@register
class Lerp(Ternary):
    """torch.lerp(start, end, weight): start + weight * (end - start), weight a number (LerpBackward0) or a tensor
    (LerpBackward1)."""

    name = "lerp"
    tensors = ("input", "end", "weight")
    scalars = True
    same_dtype = True  # torch: "expected dtype float for `weight` but got dtype double"
    functions = ("torch.lerp",)
    methods = ("lerp",)

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        if "scalar" in dtypes[:2]:
            raise ShapeError("lerp: start and end are tensors (only the weight may be a number)")
        return super().result_dtype(dtypes, inputs, a, default)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.lerp(*xs)

    def forward(self, xs: list[Array], a: Any) -> Array:
        x, e, w = xs
        d = e - x
        return np.where(np.abs(w) < 0.5, x + w * d, e - d * (1 - w))  # torch's two forms, for rounding

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, e, w = xs
        return [unbroadcast(g * (1 - w), x.shape), unbroadcast(g * w, e.shape),
                unbroadcast((g * (e - x)).astype(g.dtype), w.shape)]


@register
class Prelu(Op):
    """x where x > 0, else weight * x, weight one number or one per channel (dim 1; a 1-d input has one channel):
    d/dx 1 or weight, d/dweight the sum of x * g where x <= 0 over all but the channel dim (F.prelu, nn.PReLU)."""

    name = "prelu"
    tensors = ("input", "weight")
    functions = ("F.prelu", "torch.prelu")
    methods = ("prelu",)
    same_dtype = True

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        x, w = shapes
        channels = x[1] if len(x) >= 2 else 1
        if len(w) > 1 or int(np.prod(w)) not in (1, channels):
            raise ShapeError(f"prelu: weight {list(w)} must hold 1 number or one per channel ({channels} for input {list(x)})")
        return x

    def dtype(self, dtypes: list[str]) -> str:
        _floats(self, dtypes)
        return super().dtype(dtypes)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.nn.functional.prelu(xs[0], xs[1])

    @staticmethod
    def _per_channel(x: Array, w: Array) -> Array:
        """The weight shaped to broadcast along x's channel dim."""
        if w.size == 1 or x.ndim < 2:
            return w.reshape(())
        return w.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, xs: list[Array], a: Any) -> Array:
        x, w = xs
        return np.where(x > 0, x, self._per_channel(x, w) * x).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, w = xs
        wb = self._per_channel(x, w)
        gw = np.where(x > 0, 0, x * g)
        gw = gw.sum(axis=tuple(d for d in range(x.ndim) if d != 1)) if w.size != 1 else gw.sum()  # (0 channels too)
        return [np.where(x > 0, g, wb * g).astype(g.dtype), np.asarray(gw, dtype=w.dtype).reshape(w.shape)]
