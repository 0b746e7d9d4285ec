"""Ops that move elements without arithmetic: reshape, transpose, t, clone, repeat, permute, flatten, cat,
squeeze, unsqueeze, expand, stack, split and chunk."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

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
    view = True
    any_dtype = True
    Args = ReshapeArgs
    star = "shape"
    functions = ("torch.reshape",)
    methods = ("reshape",)

    def shape(self, shapes: list[Shape], a: ReshapeArgs) -> Shape:
        return reshape_shape(shapes[0], a.shape)

    def torch(self, t: Any, xs: list[Any], a: ReshapeArgs) -> Any:
        return t.reshape(xs[0], a.shape)

    def forward(self, xs: list[Array], a: ReshapeArgs) -> Array:
        return xs[0].reshape(a.shape)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ReshapeArgs) -> list[Array | None]:
        return [g.reshape(xs[0].shape)]


class ViewArgs(ReshapeArgs):
    contiguous: bool = Field(False, description="the program called .contiguous() first: the view is of a contiguous copy "
                                                "where the layout needs one (CloneBackward0 behind it, as torch shows)")


@register
class View(Reshape):
    """x.view(shape): reshape's numbers, but torch refuses a layout it cannot view without a copy (a transpose or a
    strided slice first: "view size is not compatible with input tensor's size and stride"), and so does the trace."""

    name = "view"
    Args = ViewArgs
    functions = ()
    methods = ("view",)

    def torch(self, t: Any, xs: list[Any], a: ViewArgs) -> Any:  # type: ignore[override]
        return (xs[0].contiguous() if a.contiguous else xs[0]).view(a.shape)


class TransposeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim0: int
    dim1: int


@register
class Transpose(Op):
    name = "transpose"
    in_place = "transpose_"
    view = True
    any_dtype = True
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


@register
class T(Op):
    """x.t(): the transpose of a matrix (TBackward0); a vector or a 0-d tensor as it is."""

    name = "t"
    in_place = "t_"
    view = True
    any_dtype = True
    functions = ("torch.t",)
    methods = ("t",)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        if len(shapes[0]) > 2:
            raise ShapeError(f"t() expects a tensor with <= 2 dimensions, but it has {len(shapes[0])}")
        return shapes[0][::-1]

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return xs[0].t()

    def forward(self, xs: list[Array], a: Any) -> Array:
        return xs[0].T

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [g.T]


class TriangleArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    diagonal: int = 0


class Triangle(Op):
    """tril/triu: the lower/upper triangle of the last two dims (from `diagonal` on), zeros elsewhere; the
    gradient is the same triangle of the output's."""

    Args = TriangleArgs
    positional = ("diagonal",)
    any_dtype = True
    cut: Any = None

    def shape(self, shapes: list[Shape], a: TriangleArgs) -> Shape:
        if len(shapes[0]) < 2:
            raise ShapeError(f"{self.name}: input tensor must have at least 2 dimensions, got {len(shapes[0])}")
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: TriangleArgs) -> Any:
        return getattr(t, self.name)(xs[0], a.diagonal)

    def forward(self, xs: list[Array], a: TriangleArgs) -> Array:
        return type(self).cut(xs[0], a.diagonal)

    def backward(self, g: Array, out: Array, xs: list[Array], a: TriangleArgs) -> list[Array | None]:
        return [type(self).cut(g, a.diagonal)]


@register
class Tril(Triangle):
    name = "tril"
    functions = ("torch.tril",)
    methods = ("tril",)
    cut = np.tril


@register
class Triu(Triangle):
    name = "triu"
    functions = ("torch.triu",)
    methods = ("triu",)
    cut = np.triu


class CloneArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory_format: Literal["preserve", "contiguous"] = "preserve"


@register
class Clone(Op):
    """x.clone(): a copy with its own memory (CloneBackward0); the gradient passes unchanged. memory_format
    'contiguous' is x.contiguous() of a tensor that is not (a transpose's copy in row-major order)."""

    name = "clone"
    any_dtype = True
    Args = CloneArgs
    functions = ("torch.clone",)
    methods = ("clone",)

    def shape(self, shapes: list[Shape], a: CloneArgs) -> Shape:
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: CloneArgs) -> Any:
        return xs[0].clone(memory_format=t.contiguous_format) if a.memory_format == "contiguous" else xs[0].clone()

    def forward(self, xs: list[Array], a: Any) -> Array:
        return np.array(xs[0])

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [g]


class RepeatArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sizes: list[int]


@register
class Repeat(Op):
    """x.repeat(*sizes): the tensor tiled (leading dims added when sizes has more); the gradient sums the tiles."""

    name = "repeat"
    Args = RepeatArgs
    star = "sizes"
    any_dtype = True
    methods = ("repeat",)

    def shape(self, shapes: list[Shape], a: RepeatArgs) -> Shape:
        s = shapes[0]
        if len(a.sizes) < max(len(s), 1) or any(n < 0 for n in a.sizes):
            raise ShapeError(f"repeat: give at least {max(len(s), 1)} non-negative sizes (one per dim), got {a.sizes}")
        padded = (1,) * (len(a.sizes) - len(s)) + tuple(s)
        return tuple(n * k for n, k in zip(padded, a.sizes, strict=True))

    def torch(self, t: Any, xs: list[Any], a: RepeatArgs) -> Any:
        return xs[0].repeat(*a.sizes)

    def forward(self, xs: list[Array], a: RepeatArgs) -> Array:
        return np.tile(xs[0], a.sizes)

    def backward(self, g: Array, out: Array, xs: list[Array], a: RepeatArgs) -> list[Array | None]:
        x = xs[0]
        padded = (1,) * (len(a.sizes) - x.ndim) + x.shape
        split = [d for pair in zip(a.sizes, padded, strict=True) for d in pair]
        summed = g.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return [summed.reshape(x.shape)]


class DimsArgs(BaseModel):
    """A list of dims (permute's order, flip's axes)."""

    model_config = ConfigDict(extra="forbid")
    dims: list[int]


@register
class Flip(Op):
    """torch.flip(x, dims): the order of the elements reversed along each of dims (a copy); the gradient flips back."""

    name = "flip"
    any_dtype = True
    Args = DimsArgs
    star = "dims"
    functions = ("torch.flip",)
    methods = ("flip",)

    def shape(self, shapes: list[Shape], a: DimsArgs) -> Shape:
        dims = [norm_dim(d, len(shapes[0])) for d in a.dims]
        if len(set(dims)) != len(dims):
            raise ShapeError(f"flip: dims {a.dims} have a dim more than once")
        return shapes[0]

    def torch(self, t: Any, xs: list[Any], a: DimsArgs) -> Any:
        return t.flip(xs[0], a.dims)

    def forward(self, xs: list[Array], a: DimsArgs) -> Array:
        x = xs[0]
        return x.copy() if x.ndim == 0 else np.flip(x, tuple(norm_dim(d, x.ndim) for d in a.dims)).copy()

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimsArgs) -> list[Array | None]:
        return [self.forward([g], a)]


class PadArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pad: list[int]
    mode: Literal["constant", "reflect", "replicate", "circular"] = "constant"
    value: float | None = None


def _pad_slices(shape: Shape, pad: list[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """(the input's kept part, where it lands in the output) for F.pad's (left, right, top, bottom, ...) pads, which
    start at the last dim; a negative pad crops."""
    src, dst = [slice(None)] * len(shape), [slice(None)] * len(shape)
    for k in range(len(pad) // 2):
        d = len(shape) - 1 - k
        lo, hi = pad[2 * k], pad[2 * k + 1]
        keep = slice(max(0, -lo), shape[d] - max(0, -hi))
        src[d] = keep
        start = max(0, lo)
        dst[d] = slice(start, start + max(0, keep.stop - keep.start))
    return tuple(src), tuple(dst)


_NUMPY_PAD = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_sources(shape: Shape, a: PadArgs) -> list[tuple[int, Array]]:
    """Reflect, replicate and circular modes: for each padded dim, which input element each output element is."""
    out = []
    for k in range(len(a.pad) // 2):
        d = len(shape) - 1 - k
        out.append((d, np.pad(np.arange(shape[d]), (a.pad[2 * k], a.pad[2 * k + 1]), mode=_NUMPY_PAD[a.mode])))  # type: ignore[call-overload]
    return out


@register
class Pad(Op):
    """F.pad(x, pad, mode, value): `pad` gives (before, after) per dim from the last one backwards. In constant mode
    (negative pads crop) the gradient is the output gradient's part over the input; in reflect, replicate and
    circular modes (nn.ReflectionPad2d, ...) every output element copies an input element, whose gradient sums
    theirs."""

    name = "pad"
    any_dtype = True
    Args = PadArgs
    positional = ("pad", "mode", "value")
    functions = ("F.pad",)

    def shape(self, shapes: list[Shape], a: PadArgs) -> Shape:
        x = shapes[0]
        if len(a.pad) % 2 or len(a.pad) // 2 > len(x):
            raise ShapeError(f"pad: {a.pad} must be (before, after) pairs for at most {len(x)} dims")
        if a.mode != "constant":
            _check_mode(x, a)
        out = list(x)
        for k in range(len(a.pad) // 2):
            d = len(x) - 1 - k
            lo, hi = a.pad[2 * k], a.pad[2 * k + 1]
            if x[d] + min(lo, 0) + min(hi, 0) < 0:  # torch crops the negative pads first, each from what is left
                raise ShapeError(f"pad: {a.pad} crops more than dim {d}'s {x[d]} elements (torch: narrow(): length "
                                 "must be non-negative)")
            out[d] = x[d] + lo + hi
        return tuple(out)

    def torch(self, t: Any, xs: list[Any], a: PadArgs) -> Any:
        if a.mode != "constant":
            return t.nn.functional.pad(xs[0], a.pad, mode=a.mode)
        return t.nn.functional.pad(xs[0], a.pad, mode="constant", value=a.value)

    def forward(self, xs: list[Array], a: PadArgs) -> Array:
        x = xs[0]
        if a.mode != "constant":
            for d, src in _pad_sources(x.shape, a):
                x = np.take(x, src, axis=d)
            return x
        out = np.full(self.shape([x.shape], a), 0 if a.value is None else a.value, dtype=x.dtype)
        src, dst = _pad_slices(x.shape, a.pad)
        out[dst] = x[src]
        return out

    def backward(self, g: Array, out: Array, xs: list[Array], a: PadArgs) -> list[Array | None]:
        if a.mode != "constant":
            for d, src in reversed(_pad_sources(xs[0].shape, a)):  # dims undone in reverse, each summed onto its sources
                gd = np.zeros((xs[0].shape[d], *np.delete(g.shape, d)), dtype=g.dtype)
                np.add.at(gd, src, np.moveaxis(g, d, 0))
                g = np.moveaxis(gd, 0, d)
            return [g]
        gx = np.zeros_like(xs[0], dtype=g.dtype)
        src, dst = _pad_slices(xs[0].shape, a.pad)
        gx[src] = g[dst]
        return [gx]


def _check_mode(x: Shape, a: PadArgs) -> None:
    """torch's rules for the non-constant modes: 2, 4 or 6 pads for the last 1, 2 or 3 dims of a batched or
    unbatched input, no value, and pads smaller than the dim (reflect) or at most its size (circular)."""
    k = len(a.pad) // 2
    if k not in (1, 2, 3) or len(x) not in (k + 1, k + 2):
        raise ShapeError(f"pad: padding size {len(a.pad)} is not supported for {len(x)}D input in {a.mode} mode "
                         "(torch: 2 pads for 2D or 3D input, 4 for 3D or 4D, 6 for 4D or 5D)")
    if a.value not in (None, 0):
        raise ShapeError(f'pad: padding mode "{a.mode}" doesn\'t take in value argument')
    if 0 in x[len(x) - k - 1:]:  # the batch dim (of a batched input) alone may be empty
        raise ShapeError(f"pad: {a.mode} mode needs non-zero sizes besides the batch dim, got {list(x)}")
    for j in range(k):
        d, lo, hi = len(x) - 1 - j, a.pad[2 * j], a.pad[2 * j + 1]
        if lo < 0 or hi < 0:
            raise ShapeError(f"pad: negative pads {a.pad} in {a.mode} mode are not supported (crop with a slice first)")
        if a.mode == "reflect" and max(lo, hi) >= x[d]:
            raise ShapeError(f"pad: padding ({lo}, {hi}) should be less than the corresponding input dimension {d} "
                             f"of size {x[d]} in reflect mode")
        if a.mode == "circular" and max(lo, hi) > x[d]:
            raise ShapeError(f"pad: padding ({lo}, {hi}) of dim {d} (size {x[d]}) wraps around more than once")


class DiagonalArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offset: int = 0
    dim1: int = 0
    dim2: int = 1


def _diagonal_index(shape: Shape, a: DiagonalArgs) -> tuple[int, int, Any, Any]:
    """The two dims, and the rows and columns of the diagonal's elements within them."""
    d1, d2 = norm_dim(a.dim1, len(shape)), norm_dim(a.dim2, len(shape))
    if d1 == d2:
        raise ShapeError(f"diagonal: dim1 and dim2 cannot be the same dim ({a.dim1}, {a.dim2})")
    n = max(0, min(shape[d1] - max(-a.offset, 0), shape[d2] - max(a.offset, 0)))
    rows = np.arange(n) + max(-a.offset, 0)
    return d1, d2, rows, rows - max(-a.offset, 0) + max(a.offset, 0)


@register
class Diagonal(Op):
    """x.diagonal(offset, dim1, dim2): the elements x[..., i, i + offset, ...] as a last dim (a view); the gradient
    goes back onto that diagonal."""

    name = "diagonal"
    view = True
    any_dtype = True
    Args = DiagonalArgs
    positional = ("offset", "dim1", "dim2")
    functions = ("torch.diagonal",)
    methods = ("diagonal",)

    def shape(self, shapes: list[Shape], a: DiagonalArgs) -> Shape:
        x = shapes[0]
        if len(x) < 2:
            raise ShapeError(f"diagonal needs a tensor of at least 2 dims, got shape {list(x)}")
        d1, d2, rows, _ = _diagonal_index(x, a)
        return tuple(n for k, n in enumerate(x) if k not in (d1, d2)) + (len(rows),)

    def torch(self, t: Any, xs: list[Any], a: DiagonalArgs) -> Any:
        return t.diagonal(xs[0], a.offset, a.dim1, a.dim2)

    def forward(self, xs: list[Array], a: DiagonalArgs) -> Array:
        return np.diagonal(xs[0], a.offset, norm_dim(a.dim1, xs[0].ndim), norm_dim(a.dim2, xs[0].ndim)).copy()

    def backward(self, g: Array, out: Array, xs: list[Array], a: DiagonalArgs) -> list[Array | None]:
        gx = np.zeros_like(xs[0], dtype=g.dtype)
        d1, d2, rows, cols = _diagonal_index(gx.shape, a)
        np.moveaxis(gx, (d1, d2), (-2, -1))[..., rows, cols] = g
        return [gx]


@register
class Permute(Op):
    name = "permute"
    view = True
    any_dtype = True
    Args = DimsArgs
    star = "dims"
    functions = ("torch.permute",)
    methods = ("permute",)

    def shape(self, shapes: list[Shape], a: DimsArgs) -> Shape:
        s = shapes[0]
        dims = [norm_dim(d, len(s)) for d in a.dims]
        if sorted(dims) != list(range(len(s))):
            raise ShapeError(f"permute dims {a.dims} are not a permutation of a {len(s)}-d tensor's dims")
        return tuple(s[d] for d in dims)

    def torch(self, t: Any, xs: list[Any], a: DimsArgs) -> Any:
        return t.permute(xs[0], a.dims)

    def forward(self, xs: list[Array], a: DimsArgs) -> Array:
        return np.transpose(xs[0], [norm_dim(d, xs[0].ndim) for d in a.dims])

    def backward(self, g: Array, out: Array, xs: list[Array], a: DimsArgs) -> list[Array | None]:
        return [np.transpose(g, np.argsort([norm_dim(d, g.ndim) for d in a.dims]))]


class FlattenArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_dim: int = 0
    end_dim: int = -1


@register
class Flatten(Op):
    name = "flatten"
    view = True
    any_dtype = True
    Args = FlattenArgs
    positional = ("start_dim", "end_dim")
    functions = ("torch.flatten",)
    methods = ("flatten",)

    def shape(self, shapes: list[Shape], a: FlattenArgs) -> Shape:
        s = shapes[0]
        i, j = norm_dim(a.start_dim, len(s)), norm_dim(a.end_dim, len(s))  # a 0-d tensor takes dims -1 and 0
        if not s:
            return (1,)
        if i > j:
            raise ShapeError(f"flatten: start_dim {a.start_dim} comes after end_dim {a.end_dim}")
        return s[:i] + (int(np.prod(s[i : j + 1])),) + s[j + 1 :]

    def torch(self, t: Any, xs: list[Any], a: FlattenArgs) -> Any:
        return t.flatten(xs[0], a.start_dim, a.end_dim)

    def forward(self, xs: list[Array], a: FlattenArgs) -> Array:
        return xs[0].reshape(self.shape([xs[0].shape], a))

    def backward(self, g: Array, out: Array, xs: list[Array], a: FlattenArgs) -> list[Array | None]:
        return [g.reshape(xs[0].shape)]


def joined_dtype(op: Op, name: str, dtypes: list[str]) -> str:
    """cat/stack: tensors of one dtype keep it, float ones promote; int64 or bool mixed with others is refused."""
    if len(set(dtypes)) > 1 and not all(d.startswith("float") for d in dtypes):
        raise ShapeError(f"{name} of {' and '.join(sorted(set(dtypes)))} tensors: cast them to one dtype first (.float())")
    return Op.dtype(op, dtypes)


class CatArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = 0


@register
class Cat(Op):
    name = "cat"
    any_dtype = True
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

    def dtype(self, dtypes: list[str]) -> str:
        return joined_dtype(self, "cat", dtypes)

    def torch(self, t: Any, xs: list[Any], a: CatArgs) -> Any:
        return t.cat(xs, dim=a.dim)

    def forward(self, xs: list[Array], a: CatArgs) -> Array:
        return np.concatenate(xs, axis=norm_dim(a.dim, xs[0].ndim))

    def backward(self, g: Array, out: Array, xs: list[Array], a: CatArgs) -> list[Array | None]:
        d = norm_dim(a.dim, g.ndim)
        cuts = np.cumsum([x.shape[d] for x in xs])[:-1]
        return list(np.split(g, cuts, axis=d))


# ---- squeeze, unsqueeze, expand, stack, split, chunk ---------------------------------------------


class SqueezeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int | list[int] | None = None


@register
class Squeeze(Op):
    """Drop size-1 dims: all of them, or those among `dim` (dims of another size are left alone, as in torch)."""

    name = "squeeze"
    in_place = "squeeze_"
    view = True
    any_dtype = True
    Args = SqueezeArgs
    positional = ("dim",)
    functions = ("torch.squeeze",)
    methods = ("squeeze",)

    def _dropped(self, s: Shape, a: SqueezeArgs) -> set[int]:
        if a.dim is None:
            return {i for i, n in enumerate(s) if n == 1}
        dims = [a.dim] if isinstance(a.dim, int) else a.dim
        axes = [norm_dim(d, len(s)) for d in dims]
        for i, d in enumerate(axes):
            if d in axes[:i]:
                raise ShapeError(f"squeeze: dim {d} appears multiple times in the list of dims {a.dim}")
        return {d for d in axes if s and s[d] == 1}

    def shape(self, shapes: list[Shape], a: SqueezeArgs) -> Shape:
        s = shapes[0]
        drop = self._dropped(s, a)
        return tuple(n for i, n in enumerate(s) if i not in drop)

    def torch(self, t: Any, xs: list[Any], a: SqueezeArgs) -> Any:
        if a.dim is None:
            return t.squeeze(xs[0])
        return t.squeeze(xs[0], a.dim if isinstance(a.dim, int) else tuple(a.dim))

    def forward(self, xs: list[Array], a: SqueezeArgs) -> Array:
        return xs[0].reshape(self.shape([xs[0].shape], a))

    def backward(self, g: Array, out: Array, xs: list[Array], a: SqueezeArgs) -> list[Array | None]:
        return [g.reshape(xs[0].shape)]


class UnsqueezeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int


@register
class Unsqueeze(Op):
    """Insert a size-1 dim at `dim`, which ranges over ndim + 1 positions."""

    name = "unsqueeze"
    in_place = "unsqueeze_"
    view = True
    any_dtype = True
    Args = UnsqueezeArgs
    positional = ("dim",)
    functions = ("torch.unsqueeze",)
    methods = ("unsqueeze",)

    def shape(self, shapes: list[Shape], a: UnsqueezeArgs) -> Shape:
        s = shapes[0]
        d = norm_dim(a.dim, len(s) + 1)
        return s[:d] + (1,) + s[d:]

    def torch(self, t: Any, xs: list[Any], a: UnsqueezeArgs) -> Any:
        return t.unsqueeze(xs[0], a.dim)

    def forward(self, xs: list[Array], a: UnsqueezeArgs) -> Array:
        return xs[0].reshape(self.shape([xs[0].shape], a))

    def backward(self, g: Array, out: Array, xs: list[Array], a: UnsqueezeArgs) -> list[Array | None]:
        return [g.reshape(xs[0].shape)]


class ExpandArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: list[int]


@register
class Expand(Op):
    """Broadcast to `size` (Tensor.expand(*sizes)): -1 keeps a dim, size-1 dims stretch, new dims lead."""

    name = "expand"
    view = True
    any_dtype = True
    Args = ExpandArgs
    star = "size"
    methods = ("expand",)

    def shape(self, shapes: list[Shape], a: ExpandArgs) -> Shape:
        s, size = shapes[0], a.size
        lead = len(size) - len(s)
        if lead < 0:
            raise ShapeError(f"expand: {len(size)} sizes {size} are fewer than the tensor's {len(s)} dims")
        out = []
        for i, n in enumerate(size):
            if n < -1:
                raise ShapeError(f"expand: size {n} in {size} is negative (only -1, keep the size, is allowed)")
            if i < lead:
                if n == -1:
                    raise ShapeError(f"expand: -1 is not allowed in a new leading dim ({i}) of {size}")
                out.append(n)
                continue
            have = s[i - lead]
            if n != -1 and n != have and have != 1:
                raise ShapeError(f"expand: size {n} must match the existing size {have} at non-singleton dim {i} ({size} from {list(s)})")
            out.append(have if n == -1 else n)
        return tuple(out)

    def torch(self, t: Any, xs: list[Any], a: ExpandArgs) -> Any:
        return xs[0].expand(a.size)

    def forward(self, xs: list[Array], a: ExpandArgs) -> Array:
        return np.broadcast_to(xs[0], self.shape([xs[0].shape], a)).copy()

    def backward(self, g: Array, out: Array, xs: list[Array], a: ExpandArgs) -> list[Array | None]:
        shape = xs[0].shape
        g = g.sum(axis=tuple(range(g.ndim - len(shape))))
        axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
        return [g.sum(axis=axes, keepdims=True) if axes else g]


class StackArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = 0


@register
class Stack(Op):
    """Join equal-shaped tensors along a new dim."""

    name = "stack"
    any_dtype = True
    tensors = ("tensors",)
    variadic = True
    Args = StackArgs
    positional = ("dim",)
    functions = ("torch.stack",)

    def shape(self, shapes: list[Shape], a: StackArgs) -> Shape:
        first = shapes[0]
        for k, s in enumerate(shapes[1:], start=1):
            if s != first:
                raise ShapeError(f"stack expects each tensor to be equal size, but got {list(first)} at entry 0 and {list(s)} at entry {k}")
        d = norm_dim(a.dim, len(first) + 1)
        return first[:d] + (len(shapes),) + first[d:]

    def dtype(self, dtypes: list[str]) -> str:
        return joined_dtype(self, "stack", dtypes)

    def torch(self, t: Any, xs: list[Any], a: StackArgs) -> Any:
        return t.stack(xs, dim=a.dim)

    def forward(self, xs: list[Array], a: StackArgs) -> Array:
        return np.stack(xs, axis=norm_dim(a.dim, xs[0].ndim + 1))

    def backward(self, g: Array, out: Array, xs: list[Array], a: StackArgs) -> list[Array | None]:
        d = norm_dim(a.dim, g.ndim)
        return [np.take(g, k, axis=d) for k in range(len(xs))]
