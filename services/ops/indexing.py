"""Indexing ops: getitem (ints, slices, None, Ellipsis, integer lists and tensors, with torch's semantics),
setitem (the same index written into), index_select and gather; gradients scatter back, accumulating on repeated indices."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, broadcast, norm_dim, register, unbroadcast

MAX_STEP = 2**31 - 1
"""Larger slice steps overflow torch's strides (step * stride past int64); steps past a dim's size all take one element."""
MASK_HINT = "bool masks give a shape that depends on the data: use torch.where(mask, x, 0) instead"


def _index_dtypes(op: str, dtypes: list[str]) -> None:
    """Index tensors (inputs 1 on) must be int64 (the only integer dtype gradtrace has); bool masks are refused."""
    for k, d in enumerate(dtypes[1:], start=1):
        if d == "bool":
            raise ShapeError(f"{op}: index tensor (input {k}) is a bool mask; {MASK_HINT}")
        if d != "int64":
            raise ShapeError(f"{op}: tensors used as indices must be int64, but input {k} is {d}")


def _out_dtype(dtypes: list[str]) -> str:
    """Indexing keeps the dtype of the tensor indexed."""
    return dtypes[0]


# ---- getitem ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorRef:
    """`{"tensor": k}`: the k-th index tensor, inputs[1 + k]."""

    k: int


def _int_list_shape(v: Any, where: str) -> tuple[int, ...]:
    """Shape of a rectangular nested list of ints, or ValueError."""
    if isinstance(v, bool):
        raise ValueError(f"{where}: True/False in an index list makes it a bool mask; {MASK_HINT}")
    if isinstance(v, int):
        return ()
    if not isinstance(v, list):
        raise ValueError(f"{where}: index lists must hold ints, got {v!r}")
    inner = [_int_list_shape(e, where) for e in v]
    if any(s != inner[0] for s in inner):
        raise ValueError(f"{where}: the nested index list is ragged")
    return (len(v), *(inner[0] if inner else ()))


def _slice_part(v: Any, where: str) -> int | None:
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise ValueError(f"{where}: slice start, stop and step must be ints or null, got {v!r}")


def _item(v: Any, where: str) -> Any:
    """One index item as Python indexes with it: int, slice, None, Ellipsis, nested int list or TensorRef."""
    if isinstance(v, bool):
        raise ValueError(f"{where}: a bool index (True/False) is a mask; {MASK_HINT}")
    if v is None or isinstance(v, (int, TensorRef)):
        return v
    if v == "..." or v is Ellipsis:
        return Ellipsis
    if isinstance(v, list):
        _int_list_shape(v, where)
        return v
    if isinstance(v, dict) and set(v) == {"tensor"}:
        k = v["tensor"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"{where}: {{'tensor': k}} needs an int k >= 0, got {k!r}")
        return TensorRef(k)
    if isinstance(v, dict) and set(v) == {"slice"} and isinstance(v["slice"], list) and len(v["slice"]) == 3:
        v = slice(*(_slice_part(p, where) for p in v["slice"]))
    if isinstance(v, slice):
        start, stop, step = (_slice_part(p, where) for p in (v.start, v.stop, v.step))
        if step == 0:
            raise ValueError(f"{where}: slice step cannot be zero")
        if step is not None and step < 0:
            raise ValueError(f"{where}: slice step must be greater than zero (torch refuses negative steps)")
        if step is not None and step > MAX_STEP:
            raise ValueError(f"{where}: slice step {step} is too large (torch's strides overflow); any step over the dim's size takes one element")
        return slice(start, stop, step)
    raise ValueError(
        f"{where}: {v!r} is not an index item (an int, {{'slice': [start, stop, step]}}, null, '...', "
        "a list of ints, or {'tensor': k})"
    )


def spec_index(items: list[Any]) -> tuple[Any, ...]:
    """A spec's index items (no index tensors) as the tuple Python indexes with."""
    return tuple(_item(e, f"item {i}") for i, e in enumerate(items))


class GetitemArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: list[Any]
    """The items of the index tuple, in order (see _item); validated into Python's index objects."""

    @field_validator("index", mode="before")
    @classmethod
    def _items(cls, v: Any) -> list[Any]:
        if not isinstance(v, (list, tuple)):
            raise ValueError("index must be a list of index items (the tuple inside x[...])")
        items = [_item(e, f"item {i}") for i, e in enumerate(v)]
        if sum(e is Ellipsis for e in items) > 1:
            raise ValueError("an index can only have a single Ellipsis ('...')")
        return items


@dataclass
class Plan:
    """How torch applies an index: the basic items first, then the advanced ones on what remains."""

    basic: list[Any]
    """A numpy basic index (ints, slices, None; TensorRef for a 0-d index tensor, which torch selects with)."""
    advanced: list[tuple[int, Any]]
    """(axis in the basic result, list or TensorRef) for each advanced index, in order."""
    selects: list[tuple[TensorRef, int, int]]
    """0-d index tensors, with the input dim each selects from and its size."""
    dims: list[tuple[int, int]]
    """For each advanced index, the input dim it indexes and its size."""
    out: Shape


def _plan(shape: Shape, items: list[Any], refs: list[Shape]) -> Plan:
    """Walk the items as torch's applySlicing does, computing shapes only; ShapeError where torch raises."""
    ndim = len(shape)
    used = {it.k for it in items if isinstance(it, TensorRef)}
    if used != set(range(len(refs))):
        extra, missing = sorted(used - set(range(len(refs)))), sorted(set(range(len(refs))) - used)
        if extra:
            raise ShapeError(f"getitem: the index names tensor {extra[0]}, but only {len(refs)} index tensors are inputs")
        raise ShapeError(f"getitem: index tensor {missing[0]} (input {missing[0] + 1}) is not used by the index")
    consumed = sum(it is not None and it is not Ellipsis for it in items)
    if consumed > ndim:
        raise ShapeError(f"too many indices for tensor of dimension {ndim}")
    basic: list[Any] = []
    advanced: list[tuple[int, Any]] = []
    selects: list[tuple[TensorRef, int, int]] = []
    dims: list[tuple[int, int]] = []
    ishapes: list[Shape] = []
    after: list[int] = []
    dim = 0
    for it in items:
        if it is None:
            basic.append(None)
            after.append(1)
        elif it is Ellipsis:
            for _ in range(ndim - consumed):
                basic.append(slice(None))
                after.append(shape[dim])
                dim += 1
        elif isinstance(it, slice):
            basic.append(it)
            after.append(len(range(*it.indices(shape[dim]))))
            dim += 1
        elif isinstance(it, int) or (isinstance(it, TensorRef) and refs[it.k] == ()):
            if isinstance(it, int):
                _check_bounds(it, it, dim, shape[dim])
            if isinstance(it, TensorRef):
                selects.append((it, dim, shape[dim]))
            basic.append(it)
            dim += 1
        else:
            ishapes.append(refs[it.k] if isinstance(it, TensorRef) else _int_list_shape(it, "index"))
            advanced.append((len(after), it))
            dims.append((dim, shape[dim]))
            basic.append(slice(None))
            after.append(shape[dim])
            dim += 1
    after += shape[dim:]
    out = tuple(after)
    if advanced:
        try:
            b = broadcast(*ishapes)
        except ShapeError:
            shown = ", ".join(str(list(s)) for s in ishapes)
            raise ShapeError(f"shape mismatch: indexing tensors could not be broadcast together with shapes {shown}") from None
        for d, n in dims:
            if n == 0 and math.prod(b):
                raise ShapeError(f"index is out of bounds for dimension {d} with size 0")
        axes = [p for p, _ in advanced]
        rest = [n for i, n in enumerate(after) if i not in axes]
        if axes == list(range(axes[0], axes[0] + len(axes))):
            out = tuple(rest[: axes[0]]) + b + tuple(rest[axes[0] :])
        else:
            out = b + tuple(rest)
    plan = Plan(basic, advanced, selects, dims, out)
    if math.prod(out):  # torch checks advanced indices only for elements it computes
        for (_, it), (d, n) in zip(advanced, dims, strict=True):
            if isinstance(it, list) and np.size(it):
                _check_bounds(float(np.min(it)), float(np.max(it)), d, n)
    return plan


def plan_shape(shape: Shape, items: list[Any]) -> Shape:
    """The shape x[items] has (no index tensors), or ShapeError where torch raises."""
    return _plan(shape, items, []).out


def _check_bounds(lo: float, hi: float, dim: int, n: int) -> None:
    """Indices in [lo, hi] must lie in [-n, n) (negatives count from the end, as in torch)."""
    for v in (hi, lo):
        if not -n <= v < n:
            raise ShapeError(f"index {int(v)} is out of bounds for dimension {dim} with size {n}")


def _check_index_ranges(ranges: list[tuple[float, float] | None], shapes: list[Shape], a: GetitemArgs) -> None:
    """Index tensors whose values are known before anything runs must lie in their dims (inputs 1 on)."""
    plan = _plan(shapes[0], a.index, shapes[1:])
    for ref, d, n in plan.selects:
        r = ranges[1 + ref.k]
        if r is not None:
            _check_bounds(*r, d, n)
    if math.prod(plan.out):
        for (_, it), (d, n) in zip(plan.advanced, plan.dims, strict=True):
            r = ranges[1 + it.k] if isinstance(it, TensorRef) else None
            if r is not None:
                _check_bounds(*r, d, n)


def _views(x: Array, xs: list[Array], a: GetitemArgs) -> tuple[Plan, Array, tuple[Any, ...]]:
    """The plan, the basic-indexed view of `x`, and the index that finishes the job on that view (index
    tensors are xs[1:])."""
    plan = _plan(x.shape, a.index, [v.shape for v in xs[1:]])
    view = x[(*(_resolve(it, xs) for it in plan.basic), Ellipsis)]  # the Ellipsis keeps an all-int index a view
    rest: list[Any] = [slice(None)] * view.ndim
    for axis, it in plan.advanced:
        rest[axis] = _resolve(it, xs)
    return plan, view, tuple(rest)


def _resolve(it: Any, xs: list[Array]) -> Any:
    if isinstance(it, TensorRef):
        v = xs[1 + it.k]
        return int(v) if v.ndim == 0 else v
    return np.asarray(it, dtype=np.int64) if isinstance(it, list) else it


@register
class Getitem(Op):
    """x[index] with torch's order: ints, slices, None and Ellipsis first (views), then integer lists and
    tensors as advanced indices on what remains (numpy's placement rule among those). Programs reach it
    through subscripts, not by a function name."""

    name = "getitem"
    view = True  # basic indexing is; advanced indexing copies, but an in-place change is refused for both
    any_dtype = True
    tensors = ("input", "indices")
    variadic = True
    min_inputs = 1
    differentiable = (True,)
    Args = GetitemArgs

    def shape(self, shapes: list[Shape], a: GetitemArgs) -> Shape:
        return _plan(shapes[0], a.index, shapes[1:]).out

    def dtype(self, dtypes: list[str]) -> str:
        _index_dtypes("getitem", dtypes)
        return _out_dtype(dtypes)

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: GetitemArgs) -> None:
        _check_index_ranges(ranges, shapes, a)

    def torch(self, t: Any, xs: list[Any], a: GetitemArgs) -> Any:
        return xs[0][tuple(xs[1 + it.k] if isinstance(it, TensorRef) else it for it in a.index)]

    def forward(self, xs: list[Array], a: GetitemArgs) -> Array:
        plan, view, rest = _views(xs[0], xs, a)
        if not plan.advanced:
            return view.copy()
        if not math.prod(plan.out):
            return np.zeros(plan.out, dtype=xs[0].dtype)
        return view[rest]

    def backward(self, g: Array, out: Array, xs: list[Array], a: GetitemArgs) -> list[Array | None]:
        gx = np.zeros_like(xs[0])
        plan, view, rest = _views(gx, xs, a)
        if not plan.advanced:
            view[...] = g
        elif g.size:
            np.add.at(view, rest, g)  # repeated indices accumulate
        return [gx] + [None] * (len(xs) - 1)


# ---- setitem ------------------------------------------------------------------------------------


def value_shape(value: Shape, target: Shape) -> Shape:
    """The value's shape with its leading 1s dropped, as torch's copy into an index drops them; it must then
    broadcast to the indexed part's shape without changing it."""
    k = 0
    while k < len(value) and value[k] == 1:
        k += 1
    stripped = value[k:]
    try:
        ok = broadcast(stripped, target) == target
    except ShapeError:
        ok = False
    if not ok:
        raise ShapeError(f"shape mismatch: value tensor of shape {list(value)} cannot be broadcast to indexing "
                         f"result of shape {list(target)}")
    return stripped


@register
class Setitem(Op):
    """`x[index] = value` as a new tensor: x with the indexed part replaced by value (broadcast, cast to x's
    dtype). Index items as getitem's; index tensors are inputs 2 on. The gradient of x is zero where the index
    wrote, the value's is the indexed part of the gradient, summed to its shape. Programs reach it through
    subscript assignments, which torch makes in place (grad_fn CopySlices, IndexPutBackward0 for advanced
    indices): every name bound to x then means the new tensor."""

    name = "setitem"
    any_dtype = True
    scalars = True  # `mask[:, 0] = 0`
    tensors = ("input", "value", "indices")
    variadic = True
    min_inputs = 2
    differentiable = (True, True)
    hides_clone = True
    Args = GetitemArgs

    def shape(self, shapes: list[Shape], a: GetitemArgs) -> Shape:
        value_shape(shapes[1], _plan(shapes[0], a.index, shapes[2:]).out)
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        _index_dtypes("setitem", [dtypes[0], *dtypes[2:]])
        return dtypes[0]  # the value is cast to x's dtype, as copy_ casts

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: GetitemArgs) -> None:
        _check_index_ranges([ranges[0], *ranges[2:]], [shapes[0], *shapes[2:]], a)

    def value_range(self, ranges: list[tuple[float, float] | None], a: GetitemArgs) -> tuple[float, float] | None:
        """Known when both the tensor's and the value's are (`idx = torch.zeros(3, dtype=torch.long); idx[1] = 5`):
        a later index or one_hot check sees the written value."""
        x, v = ranges[0], ranges[1]
        return None if x is None or v is None else (min(x[0], v[0]), max(x[1], v[1]))

    def torch(self, t: Any, xs: list[Any], a: GetitemArgs) -> Any:
        y = xs[0].clone()  # torch writes into x itself; its old value is a node of its own here
        y[tuple(xs[2 + it.k] if isinstance(it, TensorRef) else it for it in a.index)] = xs[1]
        return y

    def forward(self, xs: list[Array], a: GetitemArgs) -> Array:
        y = np.array(xs[0], copy=True)
        plan, view, rest = _views(y, [y, *xs[2:]], a)
        v = np.asarray(xs[1])
        v = v.reshape(value_shape(v.shape, plan.out))
        if not plan.advanced:
            view[...] = v
        elif math.prod(plan.out):
            view[rest] = v  # repeated indices: the last write wins (torch leaves it undefined)
        return y

    def backward(self, g: Array, out: Array, xs: list[Array], a: GetitemArgs) -> list[Array | None]:
        gx = np.array(g, copy=True)
        plan, view, rest = _views(gx, [gx, *xs[2:]], a)
        part = view.copy() if not plan.advanced else view[rest] if math.prod(plan.out) else np.zeros(plan.out, g.dtype)
        if not plan.advanced:
            view[...] = 0
        elif math.prod(plan.out):
            view[rest] = 0
        v = np.asarray(xs[1])
        gv = unbroadcast(part, value_shape(v.shape, plan.out)).reshape(v.shape) if v.dtype.kind == "f" else None
        return [gx if gx.dtype.kind == "f" else None, None if gv is None else gv.astype(v.dtype, copy=False)] + \
            [None] * (len(xs) - 2)


@register
class MaskPut(Op):
    """`x[mask] = value` with a bool mask over x's leading dims (`y[y < 0] = 0.0`, `x[pad] = torch.zeros(d)`): the
    value (a number, or one for each selected row, broadcast) where the mask holds. torch's index_put with a mask:
    grad_fn IndexPutBackward0. The gradient of x is zero where the mask holds; the value's is the sum of those."""

    name = "mask_put"
    any_dtype = True
    scalars = True
    hides_clone = True
    tensors = ("input", "mask", "value")
    differentiable = (True, False, True)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        x, m, v = shapes
        if not m or tuple(x[: len(m)]) != tuple(m):
            raise ShapeError(f"the mask's shape {list(m)} must be the tensor's {list(x)} or its leading dims")
        rest = tuple(x[len(m) :])
        try:
            value_shape(v, rest)
        except ShapeError:
            raise ShapeError(f"x[mask] = value: the value {list(v)} must be a number or one row of shape {list(rest)} "
                             "(a value per selected element has a shape that depends on the data)") from None
        return x

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[1] != "bool":
            raise ShapeError(f"mask_put: the mask must be a bool tensor, got {dtypes[1]}")
        return dtypes[0]

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        y = xs[0].clone()
        y[xs[1]] = xs[2]
        return y

    def forward(self, xs: list[Array], a: Any) -> Array:
        x, m, v = np.array(xs[0], copy=True), np.asarray(xs[1], dtype=bool), np.asarray(xs[2])
        x[m] = v.reshape(value_shape(v.shape, x.shape[m.ndim :]))
        return x

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        m, v = np.asarray(xs[1], dtype=bool), np.asarray(xs[2])
        gx = np.array(g, copy=True)
        part = g[m]  # (k, *rest): each selected row's gradient, which the one value received
        gx[m] = 0
        gv = None
        if v.dtype.kind == "f":
            stripped = value_shape(v.shape, g.shape[m.ndim :])
            gv = unbroadcast(part.sum(axis=0), stripped).reshape(v.shape).astype(v.dtype, copy=False)
        return [gx if gx.dtype.kind == "f" else None, None, gv]


# ---- index_select and gather --------------------------------------------------------------------


class DimArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int


def _check_index(op: str, r: tuple[float, float] | None, n: int) -> None:
    """index_select and gather take no negative indices: values must lie in [0, n)."""
    if r is not None and (r[0] < 0 or r[1] >= n):
        bad = int(r[0]) if r[0] < 0 else int(r[1])
        raise ShapeError(f"{op}: index {bad} is out of range for a dim of size {n} (valid: 0 to {n - 1})")


def _values_in(op: str, idx: Array, n: int) -> None:
    """The same check at run time, for index tensors computed by the graph."""
    if idx.size:
        _check_index(op, (float(idx.min()), float(idx.max())), n)


@register
class IndexSelect(Op):
    """Rows of `input` along `dim` picked by a 1-D int64 `index` (repeats allowed; no negatives)."""

    name = "index_select"
    tensors = ("input", "index")
    differentiable = (True, False)
    any_dtype = True  # edge_index.index_select(1, perm): int64 rows too
    Args = DimArgs
    signature = ("input", "dim", "index")
    functions = ("torch.index_select",)
    methods = ("index_select",)

    def shape(self, shapes: list[Shape], a: DimArgs) -> Shape:
        x, idx = shapes
        d = norm_dim(a.dim, len(x))
        if len(idx) > 1:
            raise ShapeError(f"index_select(): index is supposed to be a vector, got shape {list(idx)}")
        n = math.prod(idx)
        if not x:
            if n != 1:
                raise ShapeError(f"index_select(): index to a 0-d tensor can have only 1 value, got {n}")
            return ()
        return x[:d] + (n,) + x[d + 1 :]

    def dtype(self, dtypes: list[str]) -> str:
        _index_dtypes("index_select", dtypes)
        return _out_dtype(dtypes)

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: DimArgs) -> None:
        x = shapes[0]
        _check_index("index_select", ranges[1], x[norm_dim(a.dim, len(x))] if x else 1)

    def torch(self, t: Any, xs: list[Any], a: DimArgs) -> Any:
        return t.index_select(xs[0], a.dim, xs[1])

    def forward(self, xs: list[Array], a: DimArgs) -> Array:
        x, idx = xs
        if x.ndim == 0:
            _values_in("index_select", idx, 1)
            return x.copy()
        d = norm_dim(a.dim, x.ndim)
        _values_in("index_select", idx, x.shape[d])
        return np.take(x, idx.reshape(-1), axis=d)

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimArgs) -> list[Array | None]:
        x, idx = xs
        if x.ndim == 0:
            return [g.copy(), None]
        gx = np.zeros_like(x)
        d = norm_dim(a.dim, x.ndim)
        np.add.at(gx, (slice(None),) * d + (idx.reshape(-1),), g)
        return [gx, None]


def _gather_grid(idx: Array, d: int) -> tuple[Array, ...]:
    """The full index of gather: position i along every dim but `d`, where it is idx's value."""
    grid = list(np.ogrid[tuple(slice(0, n) for n in idx.shape)])
    grid[d] = idx
    return tuple(grid)


@register
class Gather(Op):
    """out[i][j][k] = input[index[i][j][k]][j][k] (dim 0); index has input's number of dims and sizes no
    larger off `dim`; the gradient scatters back with accumulation (torch's scatter_add)."""

    name = "gather"
    tensors = ("input", "index")
    differentiable = (True, False)
    Args = DimArgs
    signature = ("input", "dim", "index")
    functions = ("torch.gather",)
    methods = ("gather",)

    def shape(self, shapes: list[Shape], a: DimArgs) -> Shape:
        x, idx = shapes
        d = norm_dim(a.dim, len(x))
        if math.prod(idx) == 0:  # torch checks nothing more for an empty index
            return idx
        xs, ixs = x or (1,), idx or (1,)  # 0-d counts as 1-d of size 1
        if len(xs) != len(ixs):
            raise ShapeError(f"gather: index {list(idx)} must have the same number of dims as input {list(x)}")
        for i, (n, m) in enumerate(zip(xs, ixs, strict=True)):
            if i != d and m > n:
                raise ShapeError(f"gather: index {list(idx)} is larger than input {list(x)} at dim {i} (only dim {a.dim} may differ)")
        return idx

    def dtype(self, dtypes: list[str]) -> str:
        _index_dtypes("gather", dtypes)
        return _out_dtype(dtypes)

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: DimArgs) -> None:
        x = shapes[0]
        _check_index("gather", ranges[1], x[norm_dim(a.dim, len(x))] if x else 1)

    def torch(self, t: Any, xs: list[Any], a: DimArgs) -> Any:
        return t.gather(xs[0], a.dim, xs[1])

    def forward(self, xs: list[Array], a: DimArgs) -> Array:
        x, idx = xs
        if not idx.size:
            return np.zeros(idx.shape, dtype=x.dtype)
        x1, i1 = x.reshape(x.shape or (1,)), idx.reshape(idx.shape or (1,))
        d = norm_dim(a.dim, x1.ndim)
        _values_in("gather", i1, x1.shape[d])
        return x1[_gather_grid(i1, d)].reshape(idx.shape)

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimArgs) -> list[Array | None]:
        x, idx = xs
        gx = np.zeros(x.shape or (1,), dtype=x.dtype)
        if idx.size:
            i1 = idx.reshape(idx.shape or (1,))
            np.add.at(gx, _gather_grid(i1, norm_dim(a.dim, gx.ndim)), g.reshape(i1.shape))
        return [gx.reshape(x.shape), None]


# ---- one_hot ------------------------------------------------------------------------------------


class OneHotArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_classes: int = -1


@register
class OneHot(Op):
    """F.one_hot(idx, num_classes): int64 rows with a 1 at each index (no gradient). torch infers the number of
    classes from the data when not given; here it is the largest index known before the run, plus one."""

    name = "one_hot"
    tensors = ("tensor",)
    Args = OneHotArgs
    positional = ("num_classes",)
    differentiable = (False,)
    any_dtype = True
    functions = ("F.one_hot", "torch.nn.functional.one_hot")

    def shape(self, shapes: list[Shape], a: OneHotArgs) -> Shape:
        if a.num_classes < 1:
            raise ShapeError("one_hot: give num_classes (gradtrace knows shapes before the values are drawn)")
        return (*shapes[0], a.num_classes)

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[0] != "int64":
            raise ShapeError(f"one_hot: the indices must be int64, got {dtypes[0]}")
        return "int64"

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: OneHotArgs) -> None:
        r = ranges[0]
        if r is not None and a.num_classes >= 1 and (r[0] < 0 or r[1] >= a.num_classes):
            raise ShapeError(f"one_hot: class values in [{r[0]:g}, {r[1]:g}] are out of range for {a.num_classes} classes")

    def torch(self, t: Any, xs: list[Any], a: OneHotArgs) -> Any:
        return t.nn.functional.one_hot(xs[0], a.num_classes)

    def forward(self, xs: list[Array], a: OneHotArgs) -> Array:
        idx = xs[0]
        if idx.size and (idx.min() < 0 or idx.max() >= a.num_classes):
            raise ValueError(f"one_hot: class values must be in [0, {a.num_classes})")
        return (idx[..., None] == np.arange(a.num_classes)).astype(np.int64)

    def backward(self, g: Array, out: Array, xs: list[Array], a: OneHotArgs) -> list[Array | None]:
        return [None]
