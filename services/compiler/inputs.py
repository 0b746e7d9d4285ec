"""Leaves from a JSON spec's input specs: literal values now, generated tensors as a random stream that the
worker replays (numpy's PCG64 by default, torch's generator with "rng": "torch")."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.errors import SpecError
from services.ir import Event, Leaf, Stream
from shared.spec import InputSpec


def infer_dtype(value: Any) -> str:
    """torch.tensor's choice for literal numbers: int64 when every number is an int ('' otherwise)."""

    def all_of(v: Any, kind: type) -> bool:
        if isinstance(v, (list, tuple)):
            return all(all_of(x, kind) for x in v)
        return isinstance(v, kind) and (kind is bool or not isinstance(v, bool))

    return "bool" if all_of(value, bool) else "int64" if all_of(value, int) else ""


def literal_array(value: Any, dtype: str, loc: tuple[str | int, ...], max_elements: int) -> np.ndarray:
    """A literal number or nested list as an array of `dtype`; inf/nan (also as 'Infinity'/'NaN') are kept."""
    try:
        a = np.array(value, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise SpecError(f"value is not a number or a rectangular nested list of numbers ({e})", loc=loc) from None
    if a.size > max_elements:
        raise SpecError(f"{a.size} elements exceed the limit of {max_elements} per tensor", loc=loc)
    if dtype == "int64" and (not np.all(np.isfinite(a)) or not np.all(a == np.round(a))):
        raise SpecError("int64 values must be whole numbers", loc=loc)
    if dtype == "bool" and not np.all((a == 0) | (a == 1)):
        raise SpecError("bool values must be true/false (or 0/1)", loc=loc)
    return a.astype(dtype)


def value_range(a: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of a literal array, for compile-time checks of what torch would refuse at run time (an index out
    of range, a probability outside [0, 1]); NaN where the array holds one."""
    return (float(a.min()), float(a.max())) if a.dtype.kind in "iubf" and a.size else None


def make_leaf(
    name: str, spec: InputSpec, default_dtype: str, max_elements: int, *, literal_ints: bool = False
) -> tuple[Leaf, Stream | None]:
    """One leaf, and the stream that draws it when it is generated. `literal_ints` follows torch.tensor's
    int64 inference for integer literals."""
    loc: tuple[str | int, ...] = ("inputs", name)
    dtype = spec.dtype or (("int64" if spec.init == "randint" else "") if spec.shape is not None else "")
    if not dtype and spec.value is not None and literal_ints:
        dtype = infer_dtype(spec.value)
    dtype = dtype or default_dtype
    requires_grad = spec.requires_grad if spec.requires_grad is not None else dtype in ("float32", "float64")
    if requires_grad and dtype not in ("float32", "float64"):
        raise SpecError("only floating point tensors can require gradients", loc=loc)
    if spec.value is not None:
        value = literal_array(spec.value, dtype, loc, max_elements)
        leaf = Leaf(name, tuple(value.shape), dtype, requires_grad, value=value, known_range=value_range(value))
        return leaf, None
    shape = tuple(spec.shape or ())
    size = int(np.prod(shape, dtype=np.int64))
    if size > max_elements:
        raise SpecError(f"shape {list(shape)} has {size} elements, over the limit of {max_elements} per tensor", loc=loc)
    if spec.init == "randint" and spec.high <= spec.low:
        raise SpecError("randint needs high > low", loc=loc)
    leaf = Leaf(name, shape, dtype, requires_grad)
    if spec.init == "randint":
        leaf.known_range = (float(int(spec.low)), float(int(spec.high) - 1))
    elif spec.init in ("zeros", "ones"):
        leaf.known_range = (float(spec.init == "ones"),) * 2
    elif spec.init == "arange":
        leaf.known_range = (0.0, float(max(size - 1, 0)))
    elif spec.init == "uniform":
        leaf.known_range = (float(spec.low), float(spec.high))
    if spec.rng == "torch":
        events, leaf.init = _torch_events(name, spec, shape, dtype)
        return leaf, Stream("torch", spec.seed, events)
    args = {"low": spec.low, "high": spec.high, "mean": spec.mean, "std": spec.std}
    leaf.init = {
        "uniform": f"uniform({spec.low}, {spec.high}) numpy seed={spec.seed}",
        "normal": f"normal({spec.mean}, {spec.std}) numpy seed={spec.seed}",
        "randint": f"randint({int(spec.low)}, {int(spec.high)}) numpy seed={spec.seed}",
    }.get(spec.init, spec.init)
    return leaf, Stream("numpy", spec.seed, [Event(spec.init, name, args)])


def _torch_events(name: str, spec: InputSpec, shape: tuple[int, ...], dtype: str) -> tuple[list[Event], str]:
    """The torch call that draws this input, and how it reads."""
    size = list(shape)
    if spec.init == "uniform" and (spec.low, spec.high) != (0.0, 1.0):
        fn, args, kwargs = "empty", [size], {}
        init = f"torch.empty({size}).uniform_({spec.low}, {spec.high})"
    elif spec.init == "normal" and (spec.mean, spec.std) != (0.0, 1.0):
        fn, args, kwargs = "normal", [spec.mean, spec.std, size], {}
        init = f"torch.normal({spec.mean}, {spec.std}, {size})"
    elif spec.init == "randint":
        fn, args, kwargs = "randint", [int(spec.low), int(spec.high), size], {}
        init = f"torch.randint({int(spec.low)}, {int(spec.high)}, {size})"
    elif spec.init == "arange":
        fn, args, kwargs = "arange", [int(np.prod(shape, dtype=np.int64))], {}
        init = "torch.arange"
    else:
        fn = {"uniform": "rand", "normal": "randn"}.get(spec.init, spec.init)
        args, kwargs = [size], {}
        init = f"torch.{fn}({size})"
    events = [Event("tensor", name, {"fn": fn, "args": args, "kwargs": kwargs, "dtype": dtype})]
    if fn == "empty":
        events.append(Event("inplace", name, {"method": "uniform_", "args": [spec.low, spec.high]}))
    return events, f"{init} seed={spec.seed}"
