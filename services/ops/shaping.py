"""Ops that move elements without arithmetic: reshape, transpose, permute, flatten, cat."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, norm_dim, register


class ReshapeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shape: list[int]


def reshape_shape(src: Shape, shape: list[int]) -> Shape:
    """Resolve one -1 like torch.reshape, or ShapeError."""
    size = int(np.prod(src))
    if shape.count(-1) > 1 or any(n < -1 for n in shape):
        raise ShapeError(f"invalid shape {shape}")
    known = int(np.prod([n for n in shape if n != -1]))
    if -1 in shape:
        if known == 0 or size % known:
            raise ShapeError(f"shape {shape} is invalid for input of size {size}")
        shape = [size // known if n == -1 else n for n in shape]
    if int(np.prod(shape)) != size:
        raise ShapeError(f"shape {shape} is invalid for input of size {size}")
    return tuple(shape)


@register
class Reshape(Op):
    name = "reshape"
    Args = ReshapeArgs
    star = "shape"
    functions = ("torch.reshape",)
    methods = ("reshape", "view")

    def shape(self, shapes: list[Shape], a: ReshapeArgs) -> Shape:
        return reshape_shape(shapes[0], a.shape)

    def torch(self, t: Any, xs: list[Any], a: ReshapeArgs) -> Any:
        return t.reshape(xs[0], a.shape)

    def forward(self, xs: list[Array], a: ReshapeArgs) -> Array:
        return xs[0].reshape(a.shape)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ReshapeArgs) -> list[Array | None]:
        return [g.reshape(xs[0].shape)]


class TransposeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim0: int
    dim1: int


@register
class Transpose(Op):
    name = "transpose"
    Args = TransposeArgs
    positional = ("dim0", "dim1")
    functions = ("torch.transpose",)
    methods = ("transpose",)

    def shape(self, shapes: list[Shape], a: TransposeArgs) -> Shape:
        s = list(shapes[0])
        i, j = norm_dim(a.dim0, len(s)), norm_dim(a.dim1, len(s))
        if s:
            s[i], s[j] = s[j], s[i]
        return tuple(s)

    def torch(self, t: Any, xs: list[Any], a: TransposeArgs) -> Any:
        return t.transpose(xs[0], a.dim0, a.dim1)

    def forward(self, xs: list[Array], a: TransposeArgs) -> Array:
        x = xs[0]
        return np.swapaxes(x, norm_dim(a.dim0, x.ndim), norm_dim(a.dim1, x.ndim)) if x.ndim else x

    def backward(self, g: Array, out: Array, xs: list[Array], a: TransposeArgs) -> list[Array | None]:
        return [self.forward([g], a)]


class PermuteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dims: list[int]


@register
class Permute(Op):
    name = "permute"
    Args = PermuteArgs
    star = "dims"
    functions = ("torch.permute",)
    methods = ("permute",)

    def shape(self, shapes: list[Shape], a: PermuteArgs) -> Shape:
        s = shapes[0]
        dims = [norm_dim(d, len(s)) for d in a.dims]
        if sorted(dims) != list(range(len(s))):
            raise ShapeError(f"permute dims {a.dims} are not a permutation of a {len(s)}-d tensor's dims")
        return tuple(s[d] for d in dims)

    def torch(self, t: Any, xs: list[Any], a: PermuteArgs) -> Any:
        return t.permute(xs[0], a.dims)

    def forward(self, xs: list[Array], a: PermuteArgs) -> Array:
        return np.transpose(xs[0], [norm_dim(d, xs[0].ndim) for d in a.dims])

    def backward(self, g: Array, out: Array, xs: list[Array], a: PermuteArgs) -> list[Array | None]:
        return [np.transpose(g, np.argsort([norm_dim(d, g.ndim) for d in a.dims]))]


class FlattenArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_dim: int = 0
    end_dim: int = -1


@register
class Flatten(Op):
    name = "flatten"
    Args = FlattenArgs
    positional = ("start_dim", "end_dim")
    functions = ("torch.flatten",)
    methods = ("flatten",)

    def shape(self, shapes: list[Shape], a: FlattenArgs) -> Shape:
        s = shapes[0]
        if not s:
            return (1,)
        i, j = norm_dim(a.start_dim, len(s)), norm_dim(a.end_dim, len(s))
        if i > j:
            raise ShapeError(f"flatten: start_dim {a.start_dim} comes after end_dim {a.end_dim}")
        return s[:i] + (int(np.prod(s[i : j + 1])),) + s[j + 1 :]

    def torch(self, t: Any, xs: list[Any], a: FlattenArgs) -> Any:
        return t.flatten(xs[0], a.start_dim, a.end_dim)

    def forward(self, xs: list[Array], a: FlattenArgs) -> Array:
        return xs[0].reshape(self.shape([xs[0].shape], a))

    def backward(self, g: Array, out: Array, xs: list[Array], a: FlattenArgs) -> list[Array | None]:
        return [g.reshape(xs[0].shape)]


class CatArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = 0


@register
class Cat(Op):
    name = "cat"
    tensors = ("tensors",)
    variadic = True
    Args = CatArgs
    positional = ("dim",)
    functions = ("torch.cat", "torch.concat", "torch.concatenate")

    def shape(self, shapes: list[Shape], a: CatArgs) -> Shape:
        first = shapes[0]
        if not first:
            raise ShapeError("cat: zero-dimensional tensors cannot be concatenated")
        d = norm_dim(a.dim, len(first))
        for s in shapes[1:]:
            if len(s) != len(first) or s[:d] + s[d + 1 :] != first[:d] + first[d + 1 :]:
                raise ShapeError(f"cat along dim {a.dim}: shapes {[list(x) for x in shapes]} differ off that dim")
        return first[:d] + (sum(s[d] for s in shapes),) + first[d + 1 :]

    def torch(self, t: Any, xs: list[Any], a: CatArgs) -> Any:
        return t.cat(xs, dim=a.dim)

    def forward(self, xs: list[Array], a: CatArgs) -> Array:
        return np.concatenate(xs, axis=norm_dim(a.dim, xs[0].ndim))

    def backward(self, g: Array, out: Array, xs: list[Array], a: CatArgs) -> list[Array | None]:
        d = norm_dim(a.dim, g.ndim)
        cuts = np.cumsum([x.shape[d] for x in xs])[:-1]
        return list(np.split(g, cuts, axis=d))
