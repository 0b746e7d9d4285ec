"""Ops that cut a tensor into pieces, one node per piece: split, chunk and unbind (a tuple of tensors in torch,
here each piece its own node, `index` saying which)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, norm_dim, register


def _piece(sizes: list[int], index: int, op: str) -> tuple[int, int]:
    """(start, length) of piece `index` (negative allowed) among consecutive pieces of these sizes."""
    if not -len(sizes) <= index < len(sizes):
        raise ShapeError(f"{op}: index {index} is out of range: it gives {len(sizes)} pieces of sizes {sizes}")
    k = index % len(sizes)
    return sum(sizes[:k]), sizes[k]


class PieceOp(Op):
    """A one-output node of split/chunk: the shape rule gives the piece sizes, `index` picks one."""

    view = True
    any_dtype = True

    def sizes(self, n: int, a: Any) -> list[int]:
        """Sizes of the pieces torch makes of a dim of size n."""
        raise NotImplementedError

    def _cut(self, s: Shape, a: Any) -> tuple[int, int, int]:
        if not s:
            raise ShapeError(f"{self.name} expects at least a 1-dimensional tensor")
        d = norm_dim(a.dim, len(s))
        start, length = _piece(self.sizes(s[d], a), a.index, self.name)
        return d, start, length

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        s = shapes[0]
        d, _, length = self._cut(s, a)
        return s[:d] + (length,) + s[d + 1 :]

    def forward(self, xs: list[Array], a: Any) -> Array:
        d, start, length = self._cut(xs[0].shape, a)
        return np.take(xs[0], np.arange(start, start + length), axis=d)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        d, start, length = self._cut(xs[0].shape, a)
        gx = np.zeros_like(xs[0])
        gx[(slice(None),) * d + (slice(start, start + length),)] = g
        return [gx]


class SplitArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split_size_or_sections: int | list[int]
    dim: int = 0
    index: int
    """Which piece this node is (torch.split(...)[index]); negative counts from the end."""


@register
class Split(PieceOp):
    """torch.split(tensor, split_size_or_sections, dim)[index]: pieces of one size (the last may be
    smaller) or of the listed sizes, which must add up to the dim."""

    name = "split"
    tensors = ("tensor",)
    Args = SplitArgs
    positional = ("split_size_or_sections", "dim")
    functions = ("torch.split",)
    methods = ("split",)

    def sizes(self, n: int, a: SplitArgs) -> list[int]:
        s = a.split_size_or_sections
        if isinstance(s, list):
            if any(k < 0 for k in s):
                raise ShapeError(f"split: sizes {s} must be non-negative")
            if sum(s) != n:
                raise ShapeError(f"split: sizes {s} must sum exactly to {n} (the size of dim {a.dim})")
            return list(s)
        if s < 0:
            raise ShapeError(f"split: split_size must be non-negative, got {s}")
        if s == 0:
            if n:
                raise ShapeError(f"split: split_size can only be 0 if the dim's size is 0, but it is {n}")
            return [0]
        pieces = max(-(-n // s), 1)
        return [s] * (pieces - 1) + [n - s * (pieces - 1)]

    def torch(self, t: Any, xs: list[Any], a: SplitArgs) -> Any:
        return t.split(xs[0], a.split_size_or_sections, a.dim)[a.index]


class ChunkArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chunks: int
    dim: int = 0
    index: int
    """Which chunk this node is (torch.chunk(...)[index]); negative counts from the end."""


@register
class Chunk(PieceOp):
    """torch.chunk(input, chunks, dim)[index]: pieces of ceil(n / chunks), so there may be fewer than asked."""

    name = "chunk"
    Args = ChunkArgs
    positional = ("chunks", "dim")
    functions = ("torch.chunk",)
    methods = ("chunk",)

    def sizes(self, n: int, a: ChunkArgs) -> list[int]:
        if a.chunks <= 0:
            raise ShapeError(f"chunk expects chunks to be greater than 0, got {a.chunks}")
        size = -(-n // a.chunks)
        if size == 0:
            return [0] * a.chunks  # an empty dim gives `chunks` empty pieces
        pieces = -(-n // size)
        return [size] * (pieces - 1) + [n - size * (pieces - 1)]

    def torch(self, t: Any, xs: list[Any], a: ChunkArgs) -> Any:
        return t.chunk(xs[0], a.chunks, a.dim)[a.index]


class UnbindArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = 0
    index: int
    """Which slice this node is (torch.unbind(...)[index])."""


@register
class Unbind(Op):
    """torch.unbind(input, dim)[index]: the index-th slice along dim, that dim removed (UnbindBackward0, as torch's)."""

    name = "unbind"
    view = True
    any_dtype = True
    Args = UnbindArgs

    def shape(self, shapes: list[Shape], a: UnbindArgs) -> Shape:
        s = shapes[0]
        if not s:
            raise ShapeError("unbind expects at least a 1-dimensional tensor")
        d = norm_dim(a.dim, len(s))
        if not -s[d] <= a.index < s[d]:
            raise ShapeError(f"unbind: index {a.index} is out of range for dim {d} of size {s[d]}")
        return s[:d] + s[d + 1 :]

    def torch(self, t: Any, xs: list[Any], a: UnbindArgs) -> Any:
        return t.unbind(xs[0], a.dim)[a.index]

    def forward(self, xs: list[Array], a: UnbindArgs) -> Array:
        return np.take(xs[0], a.index, axis=norm_dim(a.dim, xs[0].ndim)).copy()

    def backward(self, g: Array, out: Array, xs: list[Array], a: UnbindArgs) -> list[Array | None]:
        gx = np.zeros_like(xs[0], dtype=g.dtype)
        d = norm_dim(a.dim, gx.ndim)
        gx[(slice(None),) * d + (a.index,)] = g
        return [gx]
