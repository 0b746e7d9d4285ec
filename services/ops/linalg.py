"""Matrix and vector products: matmul with torch's 1-D promotion and batch broadcasting, linear, dot, outer, cross,
and the fused beta * input + alpha * product family (addmm, addmv, addr, baddbmm, addbmm)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, broadcast, norm_dim, promoted, register, unbroadcast


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """torch.matmul's output shape, or ShapeError."""
    if len(a) == 0 or len(b) == 0:
        raise ShapeError("matmul needs tensors of at least 1 dim")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ShapeError(f"matmul of {list(a)} and {list(b)}: inner sizes {a2[-1]} and {b2[-2]} differ")
    batch = broadcast(a2[:-2], b2[:-2])
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


@register
class Matmul(Op):
    name = "matmul"
    same_dtype = True
    tensors = ("input", "other")
    functions = ("torch.matmul", "torch.mm", "torch.mv")
    methods = ("matmul", "mm", "mv")

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return matmul_shape(shapes[0], shapes[1])

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return xs[0] @ xs[1]

    def forward(self, xs: list[Array], a: Any) -> Array:
        return np.matmul(xs[0], xs[1])

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, y = xs
        x2 = x[None, :] if x.ndim == 1 else x
        y2 = y[:, None] if y.ndim == 1 else y
        g2 = g
        if x.ndim == 1:
            g2 = np.expand_dims(g2, -2 if y.ndim > 1 else 0)
        if y.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        gx = unbroadcast(g2 @ np.swapaxes(y2, -1, -2), x2.shape)
        gy = unbroadcast(np.swapaxes(x2, -1, -2) @ g2, y2.shape)
        return [gx.reshape(x.shape), gy.reshape(y.shape)]


def bmm_shape(op: str, x: Shape, y: Shape) -> Shape:
    """(B, n, m) @ (B, m, p) -> (B, n, p), one batch size (no broadcasting), or ShapeError as torch words it."""
    if len(x) != 3:
        raise ShapeError(f"{op}: batch1 must be a 3D tensor, got {list(x)}")
    if len(y) != 3:
        raise ShapeError(f"{op}: batch2 must be a 3D tensor, got {list(y)}")
    if x[0] != y[0] or x[2] != y[1]:
        raise ShapeError(f"{op}: expected size for first two dimensions of batch2 tensor to be: [{x[0]}, {x[2]}] "
                         f"but got: [{y[0]}, {y[1]}]")
    return (x[0], x[1], y[2])


@register
class Bmm(Matmul):
    """torch.bmm(a, b): (B, n, m) @ (B, m, p), one batch size (no broadcasting), BmmBackward0 as torch records it
    (matmul of the same tensors records UnsafeViewBackward0)."""

    name = "bmm"
    functions = ("torch.bmm",)
    methods = ("bmm",)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return bmm_shape(self.name, *shapes)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.bmm(xs[0], xs[1])


@register
class Linear(Op):
    """y = x W^T + b over the last dim of x, as F.linear."""

    name = "linear"
    same_dtype = True
    tensors = ("input", "weight", "bias")
    min_inputs = 2
    functions = ("F.linear",)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        x, w = shapes[0], shapes[1]
        if len(w) != 2 or len(x) == 0:
            raise ShapeError(f"linear needs a 2-d weight and an input of at least 1 dim, got {list(x)} and {list(w)}")
        if x[-1] != w[1]:
            raise ShapeError(f"linear: input's last dim {x[-1]} != weight's in_features {w[1]} (weight {list(w)})")
        if len(shapes) == 3 and shapes[2] not in ((w[0],), ()):
            raise ShapeError(f"linear: bias shape {list(shapes[2])} does not fit out_features {w[0]}")
        return x[:-1] + (w[0],)

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.nn.functional.linear(*xs)

    def forward(self, xs: list[Array], a: Any) -> Array:
        y = xs[0] @ xs[1].T
        return y + xs[2] if len(xs) == 3 else y

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, w = xs[0], xs[1]
        rows = int(np.prod(g.shape[:-1], dtype=np.int64))  # explicit: -1 is ambiguous for empty tensors
        g2 = g.reshape(rows, w.shape[0])
        grads: list[Array | None] = [g @ w, g2.T @ x.reshape(rows, w.shape[1])]
        if len(xs) == 3:
            gb = g2.sum(axis=0)
            grads.append(gb if xs[2].ndim else gb.sum())
        return grads


@register
class Dot(Op):
    """torch.dot(a, b) of two 1-D tensors of one length (DotBackward0)."""

    name = "dot"
    same_dtype = True
    tensors = ("input", "tensor")
    functions = ("torch.dot", "torch.inner")
    methods = ("dot",)

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        x, y = shapes
        if len(x) != 1 or len(y) != 1 or x != y:
            raise ShapeError(f"dot: 1D tensors of one size expected, got {list(x)} and {list(y)}")
        return ()

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.dot(xs[0], xs[1])

    def forward(self, xs: list[Array], a: Any) -> Array:
        return np.asarray(np.dot(xs[0], xs[1]), dtype=xs[0].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return [(g * xs[1]).astype(xs[0].dtype), (g * xs[0]).astype(xs[1].dtype)]


@register
class Outer(Op):
    """torch.outer(a, b): the [n, m] products of two vectors; the gradients are g @ b and g.T @ a."""

    name = "outer"
    tensors = ("input", "vec2")
    functions = ("torch.outer", "torch.ger")
    methods = ("outer", "ger")
    any_dtype = True  # torch promotes: Llama's `torch.outer(torch.arange(T), freqs)` is float

    def dtype(self, dtypes: list[str]) -> str:
        if "bool" in dtypes:
            raise ShapeError("outer of a bool tensor is not supported: cast it first (.float())")
        return promoted(self, dtypes, ["t", "t"])

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        x, y = shapes
        if len(x) != 1 or len(y) != 1:
            raise ShapeError(f"outer: both inputs must be 1-D vectors, got shapes {list(x)} and {list(y)}")
        return (x[0], y[0])

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        return t.outer(xs[0], xs[1])

    def forward(self, xs: list[Array], a: Any) -> Array:
        return np.multiply.outer(xs[0], xs[1])

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        x, y = xs
        return [(g @ y.astype(g.dtype)).astype(g.dtype), (g.T @ x.astype(g.dtype)).astype(g.dtype)]


class CrossArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int | None = None
    """None: the first dim of size 3 (torch.cross's default)."""


class LinalgCrossArgs(CrossArgs):
    dim: int = -1  # type: ignore[assignment]


@register
class Cross(Op):
    """torch.cross(a, b, dim): the cross product of 3-vectors along dim (without dim, the first of size 3), the inputs
    of one rank broadcast (LinalgCrossBackward0, as torch.linalg.cross); the gradients are b x g and g x a."""

    name = "cross"
    same_dtype = True
    tensors = ("input", "other")
    Args = CrossArgs
    positional = ("dim",)
    functions = ("torch.cross",)
    methods = ("cross",)

    def axis(self, shape: Shape, a: CrossArgs) -> int:
        """The dim the 3-vectors lie along, in a shape of the inputs' rank."""
        if a.dim is not None:
            return norm_dim(a.dim, len(shape))
        d = next((i for i, n in enumerate(shape) if n == 3), None)
        if d is None:
            raise ShapeError(f"{self.name}: no dimension of size 3 in input of shape {list(shape)}")
        return d

    def shape(self, shapes: list[Shape], a: CrossArgs) -> Shape:
        x, y = shapes
        if len(x) != len(y):
            raise ShapeError(f"{self.name}: inputs must have the same number of dimensions, got {list(x)} and {list(y)}")
        if not x:
            raise ShapeError(f"{self.name}: inputs must have a dimension of length 3, got 0-d tensors")
        out = broadcast(x, y)
        d = self.axis(out, a)
        if x[d] != 3 or y[d] != 3:
            raise ShapeError(f"{self.name}: inputs dimension {d} must have length 3, got {x[d]} and {y[d]}")
        return out

    def torch(self, t: Any, xs: list[Any], a: CrossArgs) -> Any:
        d = self.axis(broadcast(tuple(xs[0].shape), tuple(xs[1].shape)), a)
        return t.linalg.cross(xs[0], xs[1], dim=d)  # torch.cross without dim: the same, and a deprecation warning

    def forward(self, xs: list[Array], a: CrossArgs) -> Array:
        x, y = xs
        return np.cross(x, y, axis=self.axis(broadcast(x.shape, y.shape), a)).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: CrossArgs) -> list[Array | None]:
        x, y = xs
        d = self.axis(out.shape, a)
        return [unbroadcast(np.cross(y, g, axis=d), x.shape).astype(x.dtype),
                unbroadcast(np.cross(g, x, axis=d), y.shape).astype(y.dtype)]


@register
class LinalgCross(Cross):
    """torch.linalg.cross(a, b, dim=-1)."""

    name = "linalg_cross"
    Args = LinalgCrossArgs
    functions = ("torch.linalg.cross",)
    methods = ()


# ---- beta * input + alpha * product -------------------------------------------------------------


class ScaledArgs(BaseModel):
    """The keyword-only factors of torch.addmm and its kin."""

    model_config = ConfigDict(extra="forbid")
    beta: float = 1.0
    alpha: float = 1.0


def _dims(op: str, shapes: list[Shape], dims: tuple[int, ...]) -> None:
    """torch's rank checks of the product's operands (shapes[1:]), or ShapeError."""
    for slot, s, d in zip(("first", "second"), shapes[1:], dims, strict=True):
        if len(s) != d:
            raise ShapeError(f"{op}: the {slot} operand must be {d}-D, got shape {list(s)}")


class AddProduct(Op):
    """beta * input + alpha * product(operands), input broadcast to the product's shape; with beta 0 the input is
    ignored (its NaN does not spread), as torch does. Subclasses give the product, its shape and its backward."""

    tensors = ("input", "mat1", "mat2")
    Args = ScaledArgs
    same_dtype = True

    def product_shape(self, x: Shape, y: Shape) -> Shape:
        raise NotImplementedError

    def product(self, x: Array, y: Array) -> Array:
        raise NotImplementedError

    def product_backward(self, g: Array, x: Array, y: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def shape(self, shapes: list[Shape], a: ScaledArgs) -> Shape:
        out = self.product_shape(shapes[1], shapes[2])
        if len(shapes[0]) > len(out) or any(i not in (1, o) for i, o in zip(shapes[0][::-1], out[::-1], strict=False)):
            raise ShapeError(f"{self.name}: input of shape {list(shapes[0])} does not broadcast to the product's {list(out)}")
        return out

    def torch(self, t: Any, xs: list[Any], a: ScaledArgs) -> Any:
        return getattr(t, self.name)(*xs, beta=a.beta, alpha=a.alpha)

    def forward(self, xs: list[Array], a: ScaledArgs) -> Array:
        c, x, y = xs
        p = self.product(x, y)
        if a.alpha != 1:
            p = p * np.asarray(a.alpha, p.dtype)
        if a.beta == 0:
            return np.broadcast_to(p, p.shape).copy()
        return (p + (c if a.beta == 1 else c * np.asarray(a.beta, c.dtype))).astype(p.dtype, copy=False)

    def backward(self, g: Array, out: Array, xs: list[Array], a: ScaledArgs) -> list[Array | None]:
        c, x, y = xs
        gc = unbroadcast(g * np.asarray(a.beta, g.dtype), c.shape)
        gx, gy = self.product_backward(g * np.asarray(a.alpha, g.dtype) if a.alpha != 1 else g, x, y)
        return [gc.reshape(c.shape), gx, gy]


@register
class Addmm(AddProduct):
    """torch.addmm(input, mat1, mat2): beta * input + alpha * (mat1 @ mat2) of 2-D matrices (AddmmBackward0)."""

    name = "addmm"
    functions = ("torch.addmm",)
    methods = ("addmm",)

    def product_shape(self, x: Shape, y: Shape) -> Shape:
        _dims(self.name, [(), x, y], (2, 2))
        if x[1] != y[0]:
            raise ShapeError(f"addmm: mat1 and mat2 shapes cannot be multiplied ({x[0]}x{x[1]} and {y[0]}x{y[1]})")
        return (x[0], y[1])

    def product(self, x: Array, y: Array) -> Array:
        return x @ y

    def product_backward(self, g: Array, x: Array, y: Array) -> tuple[Array, Array]:
        return g @ y.T, x.T @ g


@register
class Addmv(AddProduct):
    """torch.addmv(input, mat, vec): beta * input + alpha * (mat @ vec) (AddmvBackward0)."""

    name = "addmv"
    tensors = ("input", "mat", "vec")
    functions = ("torch.addmv",)
    methods = ("addmv",)

    def product_shape(self, x: Shape, y: Shape) -> Shape:
        _dims(self.name, [(), x, y], (2, 1))
        if x[1] != y[0]:
            raise ShapeError(f"addmv: size mismatch, got mat {list(x)} and vec {list(y)}")
        return (x[0],)

    def product(self, x: Array, y: Array) -> Array:
        return x @ y

    def product_backward(self, g: Array, x: Array, y: Array) -> tuple[Array, Array]:
        return np.multiply.outer(g, y), x.T @ g


@register
class Addr(AddProduct):
    """torch.addr(input, vec1, vec2): beta * input + alpha * outer(vec1, vec2) (AddrBackward0)."""

    name = "addr"
    tensors = ("input", "vec1", "vec2")
    functions = ("torch.addr",)
    methods = ("addr",)

    def product_shape(self, x: Shape, y: Shape) -> Shape:
        _dims(self.name, [(), x, y], (1, 1))
        return (x[0], y[0])

    def product(self, x: Array, y: Array) -> Array:
        return np.multiply.outer(x, y)

    def product_backward(self, g: Array, x: Array, y: Array) -> tuple[Array, Array]:
        return g @ y, g.T @ x


@register
class Baddbmm(AddProduct):
    """torch.baddbmm(input, batch1, batch2): beta * input + alpha * bmm(batch1, batch2) (BaddbmmBackward0)."""

    name = "baddbmm"
    tensors = ("input", "batch1", "batch2")
    functions = ("torch.baddbmm",)
    methods = ("baddbmm",)

    def product_shape(self, x: Shape, y: Shape) -> Shape:
        return bmm_shape(self.name, x, y)

    def product(self, x: Array, y: Array) -> Array:
        return np.matmul(x, y)

    def product_backward(self, g: Array, x: Array, y: Array) -> tuple[Array, Array]:
        return g @ np.swapaxes(y, 1, 2), np.swapaxes(x, 1, 2) @ g


@register
class Addbmm(Baddbmm):
    """torch.addbmm(input, batch1, batch2): beta * input + alpha * the sum over the batch of batch1[i] @ batch2[i]
    (AddbmmBackward0)."""

    name = "addbmm"
    functions = ("torch.addbmm",)
    methods = ("addbmm",)

    def product_shape(self, x: Shape, y: Shape) -> Shape:
        return super().product_shape(x, y)[1:]

    def product(self, x: Array, y: Array) -> Array:
        return np.matmul(x, y).sum(axis=0)  # (its backward is baddbmm's: the (n, p) gradient broadcasts over the batch)

