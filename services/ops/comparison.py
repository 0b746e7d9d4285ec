"""Comparisons and float tests (bool results, no gradient) and the ops that select by them: where, clamp, maximum, minimum,
masked_select."""

from __future__ import annotations

import operator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, broadcast, promoted, register, unbroadcast


def no_bool(op: Op, dtypes: list[str]) -> str:
    """The float promotion of an op's inputs, or ShapeError for a bool tensor (a comparison's result) in
    a slot that needs floats: torch fails there, or returns bool or int64, not the float the graph expects."""
    if "bool" in dtypes:
        raise ShapeError(f"{op.name}: input {dtypes.index('bool')} is a bool tensor (a comparison's result); "
                         "this op needs floating point tensors: select with where(c, x, y) instead")
    return Op.dtype(op, dtypes)


# ---- comparisons -------------------------------------------------------------------------------


def _promote(x: Array, y: Array) -> tuple[Array, Array]:
    """Cast a non-float operand to the other's float dtype, as torch promotes before comparing
    (numpy would compare int64 against float32 in float64)."""
    if x.dtype.kind == "f" and y.dtype.kind != "f":
        return x, y.astype(x.dtype)
    if y.dtype.kind == "f" and x.dtype.kind != "f":
        return x.astype(y.dtype), y
    return x, y


class Compare(Op):
    """input <op> other with broadcasting; either side may be a Python number; a bool result, no gradient.
    The torch call is Python's operator, as a user writes it (`x > 0.5`)."""

    pointwise = True

    tensors = ("input", "other")
    scalars = True
    differentiable = (False, False)
    out_range = (0.0, 1.0)  # False and True
    pyop: Any = None

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return broadcast(*shapes)

    def dtype(self, dtypes: list[str]) -> str:
        if all(d == "scalar" for d in dtypes):
            raise ShapeError(f"{self.name}: both inputs are numbers; at least one must be a tensor")
        return "bool"

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        # An int64 tensor against a non-integer number: torch compares in its default float dtype, where large ints
        # round; refused, as the numbers would depend on that rounding.
        for k in (0, 1):
            number = inputs[k]
            if dtypes[1 - k] == "int64" and isinstance(number, float) and not number.is_integer():
                raise ShapeError(f"{self.name}: comparing an int64 tensor with the non-integer {number:g} "
                                 "is not supported; compare with an integer")
        return self.dtype(dtypes)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return type(self).pyop(xs[0], xs[1])

    def forward(self, xs: list[Array], a: Any) -> Array:
        x, y = _promote(np.asarray(xs[0]), np.asarray(xs[1]))
        return np.asarray(type(self).pyop(x, y), dtype=bool)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [None, None]


def _compare(name: str, pyop: Any, aliases: tuple[str, ...]) -> None:
    """Register one comparison under torch's name, its long alias (torch.greater) and the method names."""

    class _C(Compare):
        pass

    _C.name = name
    _C.pyop = pyop
    _C.functions = tuple(f"torch.{n}" for n in (name, *aliases))
    _C.methods = (name, *aliases)
    _C.__name__ = _C.__qualname__ = name.title()
    register(_C)


_compare("gt", operator.gt, ("greater",))
_compare("lt", operator.lt, ("less",))
_compare("ge", operator.ge, ("greater_equal",))
_compare("le", operator.le, ("less_equal",))
_compare("eq", operator.eq, ())
_compare("ne", operator.ne, ("not_equal",))


# ---- where -------------------------------------------------------------------------------------


@register
class Where(Op):
    """condition ? input : other, all three broadcast; the gradient goes to input where the condition
    holds and to other elsewhere (torch's WhereBackward0)."""

    pointwise = True
    any_dtype = True

    name = "where"
    tensors = ("condition", "input", "other")
    scalars = True
    differentiable = (False, True, True)
    functions = ("torch.where",)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return broadcast(*shapes)

    def dtype(self, dtypes: list[str]) -> str:
        cond, *values = dtypes
        if cond != "bool":
            got = "a number" if cond == "scalar" else f"a {cond} tensor"
            raise ShapeError(f"where: condition must be a bool tensor, got {got}; compare first, e.g. x > 0")
        return promoted(self, values, [v if v == "scalar" else "t" for v in values])

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        """torch's promotion of input and other (`torch.where(mask, tokens, -100)` of int64 labels stays int64, an
        int64 tensor with a float one is float, `torch.where(mask, 1.0, 0.0)` the default float dtype, two bools bool)."""
        self.dtype(dtypes)  # the condition's check
        return promoted(self, dtypes[1:], inputs[1:], default=default)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.where(xs[0], xs[1], xs[2])

    def forward(self, xs: list[Array], a: Any) -> Array:
        return np.where(xs[0], xs[1], xs[2])

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        c, x, y = xs
        zero = np.zeros((), g.dtype)
        return [None, unbroadcast(np.where(c, g, zero), x.shape), unbroadcast(np.where(c, zero, g), y.shape)]


class MaskedFillArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float


@register
class MaskedFill(Op):
    """x.masked_fill(mask, value): value where the bool mask (broadcast to x) holds, x elsewhere; the gradient
    passes where it does not (attention's `wei.masked_fill(tril == 0, float('-inf'))`). Its result is contiguous (not
    pointwise for the strides: torch clones contiguously, then fills)."""

    name = "masked_fill"
    any_dtype = True  # int64 too: `position_ids.masked_fill_(attention_mask == 0, 1)` (no gradient there)
    tensors = ("input", "mask")
    Args = MaskedFillArgs
    positional = ("value",)
    differentiable = (True, False)
    functions = ("torch.masked_fill",)
    methods = ("masked_fill",)

    def shape(self, shapes: list[Shape], a: MaskedFillArgs) -> Shape:
        if broadcast(*shapes) != shapes[0]:
            raise ShapeError(f"masked_fill: the mask {list(shapes[1])} must broadcast to the input's shape {list(shapes[0])}")
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[1] != "bool":
            raise ShapeError(f"masked_fill: the mask must be a bool tensor, got {dtypes[1]}; compare first, e.g. m == 0")
        return dtypes[0]

    def torch(self, t: Any, xs: list[Any], a: MaskedFillArgs) -> Any:
        return xs[0].masked_fill(xs[1], a.value)

    def forward(self, xs: list[Array], a: MaskedFillArgs) -> Array:
        x, m = xs
        return np.where(m, np.asarray(a.value, dtype=x.dtype), x)

    def backward(self, g: Array, out: Array, xs: list[Array], a: MaskedFillArgs) -> list[Array | None]:
        return [np.where(xs[1], np.zeros((), g.dtype), g), None]


# ---- clamp -------------------------------------------------------------------------------------


def _number_bound(v: Any) -> Any:
    """Clamp bounds are numbers; a tensor (a name) gets a message saying so, not pydantic's parse error."""
    if isinstance(v, str):
        raise ValueError(f"'{v}' is not a number: tensor bounds are the clamp_tensors op")
    return v


class ClampArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int | float | None = None
    max: int | float | None = None
    numbers_only = field_validator("min", "max", mode="before")(_number_bound)


@register
class Clamp(Op):
    """min(max(input, min), max) with number bounds (tensor bounds: clamp_tensors). The gradient
    passes where min <= input <= max, bounds included (torch's ClampBackward1). An int64 tensor stays int64
    with int bounds (`target.clamp(max=9)`), and a float bound makes it the default float, as torch promotes."""

    pointwise = True

    name = "clamp"
    Args = ClampArgs
    positional = ("min", "max")
    functions = ("torch.clamp", "torch.clip")
    methods = ("clamp", "clip")
    any_dtype = True

    def shape(self, shapes: list[Shape], a: ClampArgs) -> Shape:
        if a.min is None and a.max is None:
            raise ShapeError("clamp: at least one of 'min' or 'max' must not be None")
        return shapes[0]

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: ClampArgs, default: str = "float32") -> str:
        if dtypes[0] == "int64":
            return "int64" if all(b is None or isinstance(b, int) for b in (a.min, a.max)) else default
        return no_bool(self, dtypes)

    def torch(self, t: Any, xs: list[Any], a: ClampArgs) -> Any:
        return t.clamp(xs[0], min=a.min, max=a.max)

    def forward(self, xs: list[Array], a: ClampArgs) -> Array:
        x = xs[0]
        if x.dtype.kind != "f" and any(isinstance(b, float) for b in (a.min, a.max)):
            x = x.astype(np.float64)  # torch promotes to the default float (the engine casts the result to it)
        if a.min is not None:
            x = np.maximum(x, np.asarray(a.min, x.dtype))
        if a.max is not None:
            x = np.minimum(x, np.asarray(a.max, x.dtype))
        return x

    def backward(self, g: Array, out: Array, xs: list[Array], a: ClampArgs) -> list[Array | None]:
        x = xs[0]
        keep = np.ones(x.shape, dtype=bool)
        if a.min is not None:
            keep &= x >= np.asarray(a.min, x.dtype)
        if a.max is not None:
            keep &= x <= np.asarray(a.max, x.dtype)
        return [np.where(keep, g, np.zeros((), g.dtype))]


class ClampMinArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: float
    numbers_only = field_validator("min", mode="before")(_number_bound)


@register
class ClampMin(Op):
    """max(input, min) for a number `min`; the gradient passes where input >= min (ClampMinBackward0)."""

    pointwise = True

    name = "clamp_min"
    Args = ClampMinArgs
    positional = ("min",)
    functions = ("torch.clamp_min",)
    methods = ("clamp_min",)

    def shape(self, shapes: list[Shape], a: ClampMinArgs) -> Shape:
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        return no_bool(self, dtypes)

    def torch(self, t: Any, xs: list[Any], a: ClampMinArgs) -> Any:
        return t.clamp_min(xs[0], a.min)

    def forward(self, xs: list[Array], a: ClampMinArgs) -> Array:
        return np.maximum(xs[0], np.asarray(a.min, xs[0].dtype))

    def backward(self, g: Array, out: Array, xs: list[Array], a: ClampMinArgs) -> list[Array | None]:
        return [np.where(xs[0] >= np.asarray(a.min, xs[0].dtype), g, np.zeros((), g.dtype))]


class ClampMaxArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max: float
    numbers_only = field_validator("max", mode="before")(_number_bound)


@register
class ClampMax(Op):
    """min(input, max) for a number `max`; the gradient passes where input <= max (ClampMaxBackward0)."""

    pointwise = True

    name = "clamp_max"
    Args = ClampMaxArgs
    positional = ("max",)
    functions = ("torch.clamp_max",)
    methods = ("clamp_max",)

    def shape(self, shapes: list[Shape], a: ClampMaxArgs) -> Shape:
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        return no_bool(self, dtypes)

    def torch(self, t: Any, xs: list[Any], a: ClampMaxArgs) -> Any:
        return t.clamp_max(xs[0], a.max)

    def forward(self, xs: list[Array], a: ClampMaxArgs) -> Array:
        return np.minimum(xs[0], np.asarray(a.max, xs[0].dtype))

    def backward(self, g: Array, out: Array, xs: list[Array], a: ClampMaxArgs) -> list[Array | None]:
        return [np.where(xs[0] <= np.asarray(a.max, xs[0].dtype), g, np.zeros((), g.dtype))]


class ClampTensorsArgs(BaseModel):
    """Which bounds the tensor inputs after the input are, and the torch function called (its grad_fn's name)."""

    model_config = ConfigDict(extra="forbid")
    bounds: Literal["min", "max", "both"]
    fn: Literal["clamp", "clamp_min", "clamp_max"] = "clamp"


@register
class ClampTensors(Op):
    """torch.clamp(x, min=lo, max=hi) with tensor bounds, broadcast (ClampBackward0; torch.clamp_min / clamp_max of a
    tensor: ClampMinBackward1 / ClampMaxBackward1). The input's gradient passes where lo <= x <= hi; a bound gets it
    where x is past it (with both, min only where lo < hi, and max also where hi < lo: max wins, as in torch)."""

    name = "clamp_tensors"
    tensors = ("input", "min", "max")
    min_inputs = 2
    Args = ClampTensorsArgs
    pointwise = True

    def shape(self, shapes: list[Shape], a: ClampTensorsArgs) -> Shape:
        if (len(shapes) == 3) != (a.bounds == "both"):
            raise ShapeError(f"clamp_tensors: bounds '{a.bounds}' takes {3 if a.bounds == 'both' else 2} tensors")
        if a.fn != "clamp" and a.bounds != a.fn[6:]:
            raise ShapeError(f"clamp_tensors: {a.fn} takes bounds '{a.fn[6:]}', not '{a.bounds}'")
        out = broadcast(*shapes)
        if len(shapes) == 3 and not broadcast(shapes[0], shapes[1]) == broadcast(shapes[0], shapes[2]) == out:
            # ClampBackward0 combines its masks in place, the input's with min's and with max's
            raise ShapeError(f"clamp: the input {list(shapes[0])} with min {list(shapes[1])} or with max "
                             f"{list(shapes[2])} broadcasts to less than the result {list(out)}, which torch's backward "
                             "cannot write (it fails there): expand the input to the result's shape")
        return out

    def dtype(self, dtypes: list[str]) -> str:
        return no_bool(self, dtypes)

    def _bounds(self, xs: list[Any], a: ClampTensorsArgs) -> tuple[Any, Any]:
        return (xs[1] if a.bounds != "max" else None), (xs[-1] if a.bounds != "min" else None)

    def torch(self, t: Any, xs: list[Any], a: ClampTensorsArgs) -> Any:
        lo, hi = self._bounds(xs, a)
        if a.fn == "clamp_min":
            return t.clamp_min(xs[0], lo)
        if a.fn == "clamp_max":
            return t.clamp_max(xs[0], hi)
        return t.clamp(xs[0], min=lo, max=hi)

    def forward(self, xs: list[Array], a: ClampTensorsArgs) -> Array:
        lo, hi = self._bounds(xs, a)
        out = xs[0] if lo is None else np.maximum(xs[0], lo)
        return out if hi is None else np.minimum(out, hi)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ClampTensorsArgs) -> list[Array | None]:
        x, (lo, hi) = xs[0], self._bounds(xs, a)
        zero = np.zeros((), g.dtype)
        keep = np.ones(out.shape, dtype=bool)
        grads: list[Array | None] = []
        if lo is not None:
            keep &= x >= lo
            past = (x < lo) & (lo < hi) if hi is not None else x < lo
            grads.append(unbroadcast(np.where(past, g, zero), lo.shape))
        if hi is not None:
            keep &= x <= hi
            past = (x > hi) | (hi < lo) if lo is not None else x > hi
            grads.append(unbroadcast(np.where(past, g, zero), hi.shape))
        return [unbroadcast(np.where(keep, g, zero), x.shape), *grads]


# ---- maximum, minimum --------------------------------------------------------------------------


class Extremum(Op):
    """Elementwise max/min of two tensors, broadcast. At ties each side gets half the gradient
    (torch's MaximumBackward0: grad / 2 where input == other). int64 tensors too (bin indices), without gradient."""

    pointwise = True
    any_dtype = True

    tensors = ("input", "other")
    pick: Any = None
    loses: Any = None
    """(a, b) -> where a loses to b and gets no gradient."""

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return broadcast(*shapes)

    def dtype(self, dtypes: list[str]) -> str:
        return no_bool(self, dtypes)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return getattr(t, self.name)(xs[0], xs[1])

    def forward(self, xs: list[Array], a: Any) -> Array:
        return type(self).pick(xs[0], xs[1])

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, y = xs
        half = np.where(x == y, g / np.asarray(2, g.dtype), g)
        loses = type(self).loses  # torch zeroes only the losing side: a NaN on either side sends g to both
        zero = np.zeros((), g.dtype)
        gx, gy = np.where(loses(x, y), zero, half), np.where(loses(y, x), zero, half)
        return [unbroadcast(gx, x.shape), unbroadcast(gy, y.shape)]


@register
class Maximum(Extremum):
    """torch.maximum (MaximumBackward0)."""

    name = "maximum"
    functions = ("torch.maximum",)
    methods = ("maximum",)
    pick = np.maximum
    loses = np.less


@register
class Minimum(Extremum):
    """torch.minimum (MinimumBackward0)."""

    name = "minimum"
    functions = ("torch.minimum",)
    methods = ("minimum",)
    pick = np.minimum
    loses = np.greater


# ---- logical ops on bool masks -----------------------------------------------------------------


class Logical(Op):
    """Elementwise logic on bool tensors (masks), broadcast; a bool result, no gradient. In programs also `~m`,
    `a & b`, `a | b`, `a ^ b` on bool tensors (torch's bitwise ops, the same values on bools)."""

    pointwise = True

    tensors = ("input", "other")
    scalars = True  # (refused by dtype with the reason: `idx & 1` on int64 is torch's bitwise and, not logic)
    differentiable = (False, False)
    any_dtype = True
    out_range = (0.0, 1.0)
    npop: Any = None

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return broadcast(*shapes)

    def dtype(self, dtypes: list[str]) -> str:
        if any(d != "bool" for d in dtypes):
            raise ShapeError(f"{self.name}: takes bool tensors (masks), got {', '.join(dtypes)}: compare first, e.g. x > 0")
        return "bool"

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return getattr(t, self.name)(*xs)

    def forward(self, xs: list[Array], a: Any) -> Array:
        return np.asarray(type(self).npop(*xs), dtype=bool)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [None] * len(xs)


def _logical(name: str, npop: Any, unary: bool = False) -> None:
    class _L(Logical):
        pass

    _L.name, _L.npop = name, npop
    _L.tensors = ("input",) if unary else ("input", "other")
    _L.differentiable = (False,) * len(_L.tensors)
    _L.functions, _L.methods = (f"torch.{name}",), (name,)
    _L.__name__ = _L.__qualname__ = "".join(p.title() for p in name.split("_"))
    register(_L)


_logical("logical_not", np.logical_not, unary=True)
_logical("logical_and", np.logical_and)
_logical("logical_or", np.logical_or)
_logical("logical_xor", np.logical_xor)


class MaskedSelectArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int
    """How many elements the mask (broadcast with the input) selects: known when the program is compiled, the mask
    being made from numbers alone (a mask from drawn or computed values gives a shape that depends on the data)."""


@register
class MaskedSelect(Op):
    """x.masked_select(mask) / torch.masked_select (MaskedSelectBackward0): the elements where the mask, broadcast
    with x, is True, in row-major order, as a 1-d tensor; the gradient goes back to those places (summed where x
    was broadcast)."""

    name = "masked_select"
    tensors = ("input", "mask")
    Args = MaskedSelectArgs
    any_dtype = True
    differentiable = (True, False)

    def shape(self, shapes: list[Shape], a: MaskedSelectArgs) -> Shape:
        broadcast(*shapes)
        return (a.count,)

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[1] != "bool":
            raise ShapeError(f"masked_select: mask must be a bool tensor, got {dtypes[1]}")
        return dtypes[0]

    def check_values(self, values: list[Any], shapes: list[Shape], a: MaskedSelectArgs) -> None:
        if values[1] is None:
            raise ShapeError("masked_select: the mask must be written out (a bool tensor of values): the result's "
                             "shape depends on it")
        n = int(np.count_nonzero(np.broadcast_to(np.asarray(values[1]), broadcast(*shapes))))
        if n != a.count:
            raise ShapeError(f"masked_select: the mask selects {n} elements, count says {a.count}")

    def torch(self, t: Any, xs: list[Any], a: MaskedSelectArgs) -> Any:
        return t.masked_select(xs[0], xs[1])

    def forward(self, xs: list[Array], a: MaskedSelectArgs) -> Array:
        x, m = np.broadcast_arrays(*xs)
        out = x[m]
        if out.size != a.count:
            raise ValueError(f"masked_select: the mask selects {out.size} elements, {a.count} when compiled")
        return out.copy()

    def backward(self, g: Array, out: Array, xs: list[Array], a: MaskedSelectArgs) -> list[Array | None]:
        x, m = np.broadcast_arrays(*xs)
        gx = np.zeros(x.shape, g.dtype)
        gx[m] = g
        return [unbroadcast(gx, xs[0].shape), None]


class FloatTest(Op):
    """torch.isnan / isinf / isfinite / isposinf / isneginf (imputation: `torch.where(torch.isnan(x), 0.0, x)`): a bool
    mask of which elements are so; integers and bools are never NaN or infinite. No gradient."""

    pointwise = True
    any_dtype = True
    differentiable = (False,)
    out_range = (0.0, 1.0)
    npop: Any = None

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        return "bool"

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return getattr(t, self.name)(xs[0])

    def forward(self, xs: list[Array], a: Any) -> Array:
        x = xs[0]
        if x.dtype.kind != "f":
            return np.full(x.shape, self.name == "isfinite")
        return np.asarray(type(self).npop(x), dtype=bool)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [None]


for _name, _npop in (("isnan", np.isnan), ("isinf", np.isinf), ("isfinite", np.isfinite), ("isposinf", np.isposinf),
                     ("isneginf", np.isneginf)):
    register(type(_name.title().replace("inf", "Inf"), (FloatTest,), {
        "name": _name, "npop": _npop, "functions": (f"torch.{_name}",), "methods": (_name,)}))


class AnyAllArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int | None = None
    keepdim: bool = False


class AnyAll(Op):
    """mask.any() / mask.all(), over everything or along `dim`: a bool result, no gradient."""

    Args = AnyAllArgs
    positional = ("dim", "keepdim")
    differentiable = (False,)
    any_dtype = True
    out_range = (0.0, 1.0)

    def shape(self, shapes: list[Shape], a: AnyAllArgs) -> Shape:
        s = shapes[0]
        if a.dim is None:
            return ()
        if not -max(len(s), 1) <= a.dim < max(len(s), 1):
            raise ShapeError(f"{self.name}: dim {a.dim} is out of range for {len(s)} dims")
        d = a.dim % max(len(s), 1)
        return (*s[:d], *((1,) if a.keepdim else ()), *s[d + 1:]) if s else ()

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[0] != "bool":
            raise ShapeError(f"{self.name}: takes a bool tensor (a mask) here, got {dtypes[0]}")
        return "bool"

    def torch(self, t: Any, xs: list[Any], a: AnyAllArgs) -> Any:
        return getattr(xs[0], self.name)() if a.dim is None else getattr(xs[0], self.name)(dim=a.dim, keepdim=a.keepdim)

    def forward(self, xs: list[Array], a: AnyAllArgs) -> Array:
        fn = np.any if self.name == "any" else np.all
        x = np.asarray(xs[0])
        return np.asarray(fn(x) if a.dim is None else fn(x, axis=a.dim if x.ndim else None, keepdims=a.keepdim), dtype=bool)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [None]


@register
class Any_(AnyAll):
    name = "any"
    functions, methods = ("torch.any",), ("any",)


@register
class All_(AnyAll):
    name = "all"
    functions, methods = ("torch.all",), ("all",)
