"""Materialise leaf tensors from input specs: literal values or seeded generators."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.errors import SpecError
from services.ir import Leaf
from shared.spec import InputSpec


def _infer_dtype(value: Any) -> str:
    """torch.tensor's choice for literal numbers: int64 when every number is an int."""
    def all_ints(v: Any) -> bool:
        if isinstance(v, list):
            return all(all_ints(x) for x in v)
        return isinstance(v, int) and not isinstance(v, bool)

    return "int64" if all_ints(value) else ""


def make_leaf(name: str, spec: InputSpec, default_dtype: str, max_elements: int, *, literal_ints: bool = False) -> Leaf:
    """Build one leaf; `literal_ints` follows torch.tensor's int64 inference for integer literals."""
    loc: tuple[str | int, ...] = ("inputs", name)
    dtype = spec.dtype or (("int64" if spec.init == "randint" else "") if spec.shape is not None else "")
    if not dtype and spec.value is not None and literal_ints:
        dtype = _infer_dtype(spec.value)
    dtype = dtype or default_dtype
    if spec.value is not None:
        try:
            value = np.array(spec.value, dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise SpecError(f"value is not a number or a rectangular nested list of numbers ({e})", loc=loc) from None
        if value.size > max_elements:
            raise SpecError(f"{value.size} elements exceed the limit of {max_elements} per tensor", loc=loc)
        if dtype == "int64" and not np.all(value == np.round(value)):
            raise SpecError("int64 values must be whole numbers", loc=loc)
        init = "given"
    else:
        shape = tuple(spec.shape or ())
        size = int(np.prod(shape))
        if size > max_elements:
            raise SpecError(f"shape {list(shape)} has {size} elements, over the limit of {max_elements} per tensor", loc=loc)
        rng = np.random.Generator(np.random.PCG64(spec.seed))
        if spec.init == "uniform":
            value = rng.uniform(spec.low, spec.high, size=shape)
            init = f"uniform({spec.low}, {spec.high}) seed={spec.seed}"
        elif spec.init == "normal":
            value = rng.normal(spec.mean, spec.std, size=shape)
            init = f"normal({spec.mean}, {spec.std}) seed={spec.seed}"
        elif spec.init == "randint":
            if spec.high <= spec.low:
                raise SpecError("randint needs high > low", loc=loc)
            value = rng.integers(int(spec.low), int(spec.high), size=shape).astype(np.float64)
            init = f"randint({int(spec.low)}, {int(spec.high)}) seed={spec.seed}"
        elif spec.init == "arange":
            value = np.arange(size, dtype=np.float64).reshape(shape)
            init = "arange"
        else:
            value = np.zeros(shape) if spec.init == "zeros" else np.ones(shape)
            init = spec.init
    requires_grad = spec.requires_grad if spec.requires_grad is not None else dtype != "int64"
    if requires_grad and dtype == "int64":
        raise SpecError("only floating point tensors can require gradients", loc=loc)
    return Leaf(name=name, value=value.astype(dtype), requires_grad=requires_grad, init=init)
