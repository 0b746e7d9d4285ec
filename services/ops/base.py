"""The op protocol and registry: one class per op holds its name, argument schema,
shape rule, torch call and reference forward/backward, side by side."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from services.errors import ShapeError

Shape = tuple[int, ...]
Array = np.ndarray


class NoArgs(BaseModel):
    """Argument schema of ops that take none."""

    model_config = ConfigDict(extra="forbid")


class Op:
    """Base of every op. Subclasses set the class attributes and override the four methods."""

    name: ClassVar[str]
    tensors: ClassVar[tuple[str, ...]] = ("input",)
    """Names of tensor parameters in torch's order; the first `min_inputs` are required."""
    min_inputs: ClassVar[int | None] = None
    variadic: ClassVar[bool] = False
    """True for ops taking a list of tensors (cat)."""
    Args: ClassVar[type[BaseModel]] = NoArgs
    positional: ClassVar[tuple[str, ...]] = ()
    """Args fields that may be given positionally after the tensors, in order."""
    star: ClassVar[str | None] = None
    """An Args field that collects all trailing positional ints (reshape's shape, permute's dims)."""
    functions: ClassVar[tuple[str, ...]] = ()
    """Names a program may call it by (besides `name`), e.g. 'torch.relu', 'F.relu'."""
    methods: ClassVar[tuple[str, ...]] = ()
    """Tensor method names a program may use, e.g. 'relu' for `z.relu()`."""
    scalars: ClassVar[bool] = False
    """True when an input may be a Python number (torch's `x * 2`); otherwise every input is a tensor."""
    differentiable: ClassVar[tuple[bool, ...] | None] = None
    """Per tensor input; None means all are."""
    any_dtype: ClassVar[bool] = False
    """Moves or casts elements, no arithmetic: int64 and bool inputs are taken as they are (no gradient flows to
    them), and the output has the inputs' dtype when they share one (a cast: the one it casts to)."""
    view: ClassVar[bool] = False
    """torch may return a view of the first input (its memory): an in-place change of the result changes it too."""
    same_dtype: ClassVar[bool] = False
    """torch refuses float inputs of different dtypes (matmul, linear, conv2d do not promote)."""
    hides_clone: ClassVar[bool] = False
    """The torch call writes into a clone of its first input (setitem), where torch's own in-place write has no
    CloneBackward0: the engine's next_functions look through it to the input's grad_fn, as torch prints them."""
    pointwise: ClassVar[bool] = False
    """An elementwise op run by torch's TensorIterator: its output keeps its inputs' memory order (strides.iterated)."""
    grad_refused: ClassVar[tuple[str, ...]] = ()
    """Tensor slots torch refuses when they require grad (a loss's class weights: 'is not differentiable with
    respect to argument weight'): the compiler refuses such a node as torch would fail it."""
    optional: ClassVar[dict[str, float]] = {}
    """Tensor slots torch takes as None, by the number that stands for one left out when a later slot is given
    (binary cross entropy's weight: 1.0 with only pos_weight): a program's call fills it in."""
    signature: ClassVar[tuple[str, ...] | None] = None
    """torch's positional parameters in order, when tensors and arguments interleave (index_select is
    ('input', 'dim', 'index')): names in `tensors` bind tensors, the others Args fields. None: the tensors,
    then `positional`."""

    @cached_property
    def arity(self) -> tuple[int, int | None]:
        """(min, max) number of tensor inputs; max None for variadic ops."""
        if self.variadic:
            return (self.min_inputs or 1, None)
        return (len(self.tensors) if self.min_inputs is None else self.min_inputs, len(self.tensors))

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        """Output shape for these input shapes (scalars are ()); raise ShapeError if they don't fit."""
        raise NotImplementedError

    def dtype(self, dtypes: list[str]) -> str:
        """Output dtype: torch's promotion among tensor inputs (python scalars don't promote)."""
        if self.any_dtype and all(d == dtypes[0] for d in dtypes):
            return dtypes[0]
        out = None
        for d in dtypes:
            if d.startswith("float"):
                if out is None:
                    out = d
                elif d != out:
                    return str(np.result_type(*[d for d in dtypes if d.startswith("float")]))
        return out or "float32"

    def dtype_for(self, dtypes: list[str], a: Any) -> str:
        """Output dtype when it depends on the arguments (a cast); by default `dtype(dtypes)`."""
        return self.dtype(dtypes)

    def result_dtype(self, dtypes: list[str], inputs: list[Any], a: Any, default: str = "float32") -> str:
        """Output dtype when it depends on the inputs themselves (arithmetic: an int or a float Python number
        promotes differently; `default` is the default float dtype, the spec's); by default `dtype_for(dtypes, a)`."""
        return self.dtype_for(dtypes, a)

    @cached_property
    def default_args(self) -> BaseModel | None:
        """The arguments' defaults, one shared instance (most nodes give none: `x + y`), or None when some are
        required; nodes never change their arguments."""
        try:
            return self.Args()
        except ValidationError:
            return None

    @cached_property
    def checks_ranges(self) -> bool:
        """Whether this op overrides check_ranges (the compiler skips building its arguments otherwise)."""
        return type(self).check_ranges is not Op.check_ranges

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: Any) -> None:
        """Check inputs whose values are known before anything runs (int64 literals, randint bounds):
        `ranges[k]` is (min, max) of input k, or None when unknown. Raise ShapeError for an index out of
        range, so that a spec that would fail in torch is rejected at compile time."""

    def check_values(self, values: list[Any], shapes: list[Shape], a: Any) -> None:
        """Check inputs whose values are written in the spec (literal leaves; None for the others) against the
        arguments: raise ShapeError where they disagree (masked_select's count of its mask)."""

    @cached_property
    def checks_values(self) -> bool:
        """Whether this op overrides check_values (the compiler asks only such ops)."""
        return type(self).check_values is not Op.check_values

    def warning(self, shapes: list[Shape], a: Any) -> str | None:
        """What torch warns about for these shapes (it runs, likely not as meant); the result's notes carry it."""
        return None

    @cached_property
    def warns(self) -> bool:
        """Whether this op overrides warning (the compiler asks only such ops)."""
        return type(self).warning is not Op.warning

    def out_strides(self, shapes: list[Shape], strides: list[tuple[int, ...]], a: Any) -> tuple[int, ...] | None:
        """torch's strides (in elements) of this op's result when torch does not make it row-major, from its tensor
        inputs' shapes and strides (services.strides); None: row-major. A random fill shaped like the result
        (dropout's mask) goes in that memory order."""
        return None

    @cached_property
    def lays_out(self) -> bool:
        """Whether this op has its own rule for its result's strides (the compiler asks only such ops)."""
        return type(self).out_strides is not Op.out_strides

    def on_cuda(self, a: Any) -> str | None:
        """Where torch's CUDA kernel may give other numbers than its CPU one for these arguments (an order torch
        leaves unspecified): the result's notes carry it when the job runs with device 'cuda'."""
        return None

    out_range: ClassVar[tuple[float, float] | None] = None
    """Bounds every output value lies in, whatever the inputs (sigmoid, softmax: [0, 1])."""

    def value_range(self, ranges: list[tuple[float, float] | None], a: Any) -> tuple[float, float] | None:
        """Bounds of the output's values known before anything runs, for checks downstream (binary cross entropy
        needs probabilities): `out_range`, or a view's input's own; None when unknown."""
        return self.out_range or (ranges[0] if self.view and ranges else None)

    @cached_property
    def gives_ranges(self) -> bool:
        """Whether value_range can know anything (the compiler asks only such ops)."""
        return self.out_range is not None or self.view or type(self).value_range is not Op.value_range

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        """Run the op in torch; `t` is the torch module (ops never import torch themselves)."""
        raise NotImplementedError

    in_place: ClassVar[str | None] = None
    """The name of torch's in-place form of this op that changes a tensor's shape alone (unsqueeze_, t_): the torch
    engine runs it on the tensor itself where the program did (Node.in_place), for torch's grad_fn and version."""

    def torch_in_place(self, t: Any, xs: list[Any], a: Any) -> Any:
        """torch(...) as the in-place method `in_place` on xs[0] itself (which it returns)."""
        kwargs = {k: v for k, v in a.model_dump().items() if v is not None} if a is not None else {}
        return getattr(xs[0], self.in_place)(*[tuple(v) if isinstance(v, list) else v for v in kwargs.values()])

    def forward(self, xs: list[Array], a: Any) -> Array:
        """Reference forward in numpy."""
        raise NotImplementedError

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        """Reference backward: the gradient w.r.t. each input, shaped like it (None: no gradient)."""
        raise NotImplementedError

    def forward_saving(self, xs: list[Array], a: Any) -> tuple[Array, Any]:
        """Forward, plus what backward can reuse instead of recomputing (conv2d's im2col columns); the
        reference engine keeps it per node until that node's backward. Default: nothing saved."""
        return self.forward(xs, a), None

    def backward_saved(
        self, g: Array, out: Array, xs: list[Array], a: Any, saved: Any, needs: tuple[bool, ...] | None = None
    ) -> list[Array | None]:
        """Backward given what forward_saving saved (None: nothing). `needs`: which inputs want a gradient
        (torch's ctx.needs_input_grad; None: all); an op may return None for the others. Default: backward."""
        return self.backward(g, out, xs, a)


KIND = {"bool": 0, "int64": 1, "float32": 2, "float64": 2}
"""torch's promotion categories: a Python number or tensor of a higher one decides the result's category."""


def promoted(op: Op, dtypes: list[str], inputs: list[Any], true_division: bool = False, default: str = "float32") -> str:
    """torch's type promotion for arithmetic: tensors decide within their highest category (float32 with
    float64: float64), a Python number only when its category is higher (int tensor * 0.5: the default float
    dtype; int tensor * 2: int64); true division of integers gives the default float dtype."""
    tensors = [d for d in dtypes if d != "scalar"]
    kind = max((KIND[d] for d in tensors), default=0)
    numbers = [i for i in inputs if not isinstance(i, str)]
    number_kind = max((2 if isinstance(i, float) else 1 for i in numbers if not isinstance(i, bool)), default=0)
    if kind == 2:
        return Op.dtype(op, tensors)
    if number_kind == 2 or true_division:
        return default
    return "int64" if max(kind, number_kind) == 1 else "bool"


REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add one instance of the op to the registry under its name."""
    if cls.name in REGISTRY:
        raise RuntimeError(f"op '{cls.name}' registered twice")
    REGISTRY[cls.name] = cls()
    return cls


# ---- helpers shared by op families -------------------------------------------------------------


def broadcast(*shapes: Shape) -> Shape:
    """torch/numpy broadcasting of shapes, or ShapeError naming them."""
    if len(shapes) == 2 and (shapes[0] == shapes[1] or shapes[1] == ()):
        return shapes[0]
    if len(shapes) == 2 and shapes[0] == ():
        return shapes[1]
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"shapes {' and '.join(str(list(s)) for s in shapes)} do not broadcast") from None


def unbroadcast(g: Array, shape: Shape) -> Array:
    """Sum a broadcast gradient back down to an input's shape."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(extra))) if extra > 0 else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def sgn(x: Array) -> Array:
    """torch's sign: (0 < x) - (x < 0), so 0 at NaN (numpy's sign gives NaN), in x's dtype."""
    return ((x > 0).astype(np.int8) - (x < 0).astype(np.int8)).astype(x.dtype, copy=False)


def norm_dim(dim: int, ndim: int) -> int:
    """A torch dim (negative allowed) as a non-negative axis, or ShapeError."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise ShapeError(f"dim {dim} is out of range for a tensor of {ndim} dims")
    return dim % n


def pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An int or a pair, as conv and pool arguments take them."""
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


def same_float(name: str, dtypes: list[str]) -> str:
    """The one floating dtype all tensor inputs share; torch's norms, linalg and einsum reject mixed dtypes."""
    if dtypes[0] not in ("float32", "float64"):
        raise ShapeError(f"{name}: input must be a floating point tensor, got {dtypes[0]}")
    if any(d != dtypes[0] for d in dtypes[1:]):
        raise ShapeError(f"{name}: all tensors must share one dtype (torch does not promote here), got {dtypes}")
    return dtypes[0]
