"""torch.searchsorted and torch.bucketize: where values would be inserted into sorted boundaries (int64 indices, so
no gradient flows; NeRF's hierarchical sampling takes its bins this way)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, register


class SearchArgs(BaseModel):
    """torch.searchsorted's keywords; int32 output and a sorter are not traced."""

    model_config = ConfigDict(extra="forbid")
    right: bool = False
    side: Literal["left", "right"] | None = None
    out_int32: Literal[False] = Field(False, description="int32 indices are not traced: int64 only")
    sorter: None = Field(None, description="a sorter (argsort of unsorted boundaries) is not traced: sort them first")


def insertion(boundaries: Array, values: Array, side: Literal["left", "right"]) -> Array:
    """Per row, np.searchsorted of that row's values into its boundaries (1-d boundaries: all values), int64.
    Both are compared in one dtype, float64 when they differ, as torch promotes them."""
    if boundaries.dtype != values.dtype:
        boundaries, values = boundaries.astype(np.float64), values.astype(np.float64)
    if boundaries.ndim == 1:
        return np.searchsorted(boundaries, values, side=side).astype(np.int64)
    rows_b = boundaries.reshape(-1, boundaries.shape[-1])
    rows_v = values.reshape(-1, values.shape[-1])
    out = np.empty(rows_v.shape, dtype=np.int64)
    for i in range(rows_b.shape[0]):
        out[i] = np.searchsorted(rows_b[i], rows_v[i], side=side)
    return out.reshape(values.shape)


class Search(Op):
    """Shared by searchsorted and bucketize: int64 indices shaped like the values, no gradient to either input."""

    any_dtype = True
    differentiable = (False, False)

    def boundaries_and_values(self, xs: list[Any]) -> tuple[Any, Any]:
        raise NotImplementedError

    def side(self, a: Any) -> Literal["left", "right"]:
        return "right" if a.right else "left"

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        b, v = self.boundaries_and_values(shapes)
        if len(b) == 0 or (len(b) > 1 and (len(v) != len(b) or v[:-1] != b[:-1])):
            raise ShapeError(f"{self.name}: boundaries tensor should be 1 dimension or the first N-1 dimensions of "
                             f"boundaries tensor and input value tensor must match, but got boundaries {list(b)} and "
                             f"input {list(v)} (torch raises this)")
        return v

    def dtype(self, dtypes: list[str]) -> str:
        if "bool" in dtypes:
            raise ShapeError(f"{self.name} of a bool tensor is not traced: cast it with .float() or .long()")
        return "int64"

    def forward(self, xs: list[Array], a: Any) -> Array:
        b, v = self.boundaries_and_values(xs)
        return insertion(b, v, self.side(a))

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [None, None]


@register
class Searchsorted(Search):
    """torch.searchsorted(sorted_sequence, input, right=False, side=None): for each value, the index where it would
    go in its row of the sorted sequence (left: the first index with boundary >= value; right: > value). The
    sequence must be sorted along its last dim, as torch asks (its binary search gives no meaning to any other)."""

    name = "searchsorted"
    tensors = ("sorted_sequence", "input")
    Args = SearchArgs
    functions = ("torch.searchsorted",)

    def boundaries_and_values(self, xs: list[Any]) -> tuple[Any, Any]:
        return xs[0], xs[1]

    def side(self, a: SearchArgs) -> Literal["left", "right"]:
        return a.side or ("right" if a.right else "left")

    def shape(self, shapes: list[Shape], a: SearchArgs) -> Shape:
        if a.side == "left" and a.right:
            raise ShapeError("searchsorted: side and right can't be set to opposites, got side of left while right was True")
        return super().shape(shapes, a)

    def torch(self, t: Any, xs: list[Any], a: SearchArgs) -> Any:
        return t.searchsorted(xs[0], xs[1], right=a.right, side=a.side)


class BucketizeArgs(BaseModel):
    """torch.bucketize's keywords."""

    model_config = ConfigDict(extra="forbid")
    right: bool = False
    out_int32: Literal[False] = Field(False, description="int32 indices are not traced: int64 only")


@register
class Bucketize(Search):
    """torch.bucketize(input, boundaries, right=False): searchsorted with 1-d boundaries, the values first
    (right=False: boundaries[i-1] < x <= boundaries[i])."""

    name = "bucketize"
    tensors = ("input", "boundaries")
    Args = BucketizeArgs
    functions = ("torch.bucketize",)

    def boundaries_and_values(self, xs: list[Any]) -> tuple[Any, Any]:
        return xs[1], xs[0]

    def shape(self, shapes: list[Shape], a: BucketizeArgs) -> Shape:
        if len(shapes[1]) != 1:
            raise ShapeError(f"bucketize: boundaries tensor must be 1 dimension, but got dim({len(shapes[1])}) (torch raises this)")
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: BucketizeArgs) -> Any:
        return t.bucketize(xs[0], xs[1], right=a.right)
