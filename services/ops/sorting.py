"""Sorting: torch.topk, torch.sort and torch.argsort. Each call gives (values, indices): one node each, the same op
with `part` saying which (values carry the gradient, scattered back to where they came from; indices are int64)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, norm_dim, register
from services.ops.topk_order import sort_indices, topk_indices


class TopkArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(ge=0)
    dim: int = -1
    largest: bool = True
    sorted: Literal[True] = Field(True, description="torch leaves the order of sorted=False unspecified: not traced")
    part: Literal["values", "indices"] = "values"


class SortArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = -1
    descending: bool = False
    stable: bool | None = None
    part: Literal["values", "indices"] = "values"


def _order(x: Array, dim: int, descending: bool, k: int | None = None) -> Array:
    """Indices that sort x along dim (the first k of them), ties in their original order (torch's CPU sort is
    stable). A stable sort is ~13x a quicksort of floats: only rows that hold equal keys get one (with distinct
    keys every sort gives the same order), and the first k of a long row come from a partition."""
    d = norm_dim(dim, x.ndim)
    # descending, ties first-come: an ascending sort of the negation (NaN, torch's largest, first)
    key = x if not descending else np.where(np.isnan(x), -np.inf, -x) if x.dtype.kind == "f" else -x
    n = x.shape[d]
    k = n if k is None else k
    if x.size == 0:
        return np.take(np.argsort(key, axis=d), np.arange(k), axis=d)
    rows = np.moveaxis(key, d, -1).reshape(-1, n)
    out = np.empty((rows.shape[0], k), dtype=np.int64)
    tied = _equal_keys(rows)
    if tied.any():
        out[tied] = np.argsort(rows[tied], axis=1, kind="stable")[:, :k]
    free = ~tied
    if free.any():
        if 0 < k and 4 * k <= n:
            part = np.argpartition(rows[free], k - 1, axis=1)[:, :k]  # the k smallest keys, unordered
            out[free] = np.take_along_axis(part, np.argsort(np.take_along_axis(rows[free], part, axis=1), axis=1), axis=1)
        else:
            out[free] = np.argsort(rows[free], axis=1)[:, :k]
    return np.moveaxis(out.reshape(*np.moveaxis(key, d, -1).shape[:-1], k), -1, d)


def _equal_keys(rows: Array) -> Array:
    """Per row, whether it holds two equal keys (two NaNs count): only there does the order a sort gives depend on
    its algorithm."""
    if rows.shape[1] < 2:
        return np.zeros(rows.shape[0], dtype=bool)
    s = np.sort(rows, axis=1)
    tied = (s[:, 1:] == s[:, :-1]).any(axis=1)
    if rows.dtype.kind == "f":
        tied |= np.isnan(rows).sum(axis=1) > 1
    return tied


def _tied_rows(x: Array, d: int, idx: Array, pick: Callable[[list[float]], list[int]]) -> Array:
    """idx (the picked indices along dim d, ties first-come) with each row of x that has ties (equal values, or NaNs)
    picked by `pick` instead, torch's CPU order among them (topk_order)."""
    rows = np.moveaxis(x, d, -1).reshape(-1, x.shape[d])
    tied = _equal_keys(rows)
    if not tied.any():
        return idx
    out = np.moveaxis(idx, d, -1).copy()
    flat = out.reshape(-1, out.shape[-1])
    for r in np.flatnonzero(tied):
        flat[r] = pick(rows[r].tolist())
    return np.moveaxis(flat.reshape(out.shape), -1, d)


class Sorting(Op):
    """Shared by topk and sort: the picked order's values or indices, and the values' gradient put back."""

    any_dtype = True
    differentiable = (True,)

    def order(self, x: Array, a: Any) -> Array:
        raise NotImplementedError

    def dtype_for(self, dtypes: list[str], a: Any) -> str:
        if dtypes[0] == "bool":
            raise ShapeError(f"{self.name} of a bool tensor is not traced: cast it with .float() or .long()")
        return "int64" if a.part == "indices" else dtypes[0]

    def forward(self, xs: list[Array], a: Any) -> Array:
        x = xs[0]
        if x.ndim == 0:
            return np.zeros((), np.int64) if a.part == "indices" else x.copy()
        idx = self.order(x, a)
        return idx if a.part == "indices" else np.take_along_axis(x, idx, axis=norm_dim(a.dim, x.ndim))

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x = xs[0]
        if a.part == "indices" or x.dtype.kind != "f":
            return [None]
        if x.ndim == 0:
            return [g.copy()]
        gx = np.zeros_like(x, dtype=g.dtype)
        np.put_along_axis(gx, self.order(x, a), g, axis=norm_dim(a.dim, x.ndim))
        return [gx]


@register
class Topk(Sorting):
    """torch.topk(x, k, dim=-1, largest=True): the k largest (smallest) along dim, in order (TopkBackward0)."""

    name = "topk"
    Args = TopkArgs
    positional = ("k", "dim", "largest", "sorted")

    def shape(self, shapes: list[Shape], a: TopkArgs) -> Shape:
        x = shapes[0]
        d = norm_dim(a.dim, len(x))  # a 0-d tensor has dims -1 and 0
        size = x[d] if x else 1
        if a.k > size:
            raise ShapeError(f"topk: k ({a.k}) is out of range for dimension {a.dim} of size {size}")
        return x[:d] + (a.k,) + x[d + 1:] if x else ()

    def torch(self, t: Any, xs: list[Any], a: TopkArgs) -> Any:
        return t.topk(xs[0], a.k, dim=a.dim, largest=a.largest, sorted=True)[0 if a.part == "values" else 1]

    def order(self, x: Array, a: TopkArgs) -> Array:
        """The k picked along dim; among equal values, the ones torch's CPU kernel picks, in its order (topk_order)."""
        d = norm_dim(a.dim, x.ndim)
        idx = _order(x, a.dim, a.largest, a.k)
        if x.shape[d] < 2 or a.k == 0 or x.size == 0:  # (nothing to tie)
            return idx
        return _tied_rows(x, d, idx, lambda row: topk_indices(row, a.k, a.largest))

    def on_cuda(self, a: TopkArgs) -> str | None:
        return ("topk: torch's CUDA kernel picks among equal values otherwise than its CPU kernel, whose pick the "
                "reference engine follows, so with ties the indices and the gradient may differ")


@register
class Sort(Sorting):
    """torch.sort(x, dim=-1, descending=False) (SortBackward0) and torch.argsort (its indices)."""

    name = "sort"
    Args = SortArgs
    positional = ("dim", "descending")

    def shape(self, shapes: list[Shape], a: SortArgs) -> Shape:
        norm_dim(a.dim, len(shapes[0]))  # a 0-d tensor has dims -1 and 0, as torch says
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: SortArgs) -> Any:
        extra = {} if a.stable is None else {"stable": a.stable}  # torch records sort(stable=) as SortBackward1
        return t.sort(xs[0], dim=a.dim, descending=a.descending, **extra)[0 if a.part == "values" else 1]

    def order(self, x: Array, a: SortArgs) -> Array:
        """Ties first-come with stable=True; else, in rows of more than 16 with ties, the order torch's CPU kernel's
        std::sort leaves them in (topk_order: up to 16 its insertion sort is stable too)."""
        idx = _order(x, a.dim, a.descending)
        d = norm_dim(a.dim, x.ndim)
        if a.stable or x.ndim == 0 or x.shape[d] <= 16 or x.size == 0:
            return idx
        return _tied_rows(x, d, idx, lambda row: sort_indices(row, a.descending))

    def on_cuda(self, a: SortArgs) -> str | None:
        if a.stable:
            return None
        return ("sort: torch's CUDA sort orders equal values as it likes unless stable=True; the reference engine "
                "orders them as the CPU does (first come first), so with ties the indices and the gradient may differ")
