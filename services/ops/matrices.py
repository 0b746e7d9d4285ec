"""Square-matrix ops over the last two dims (batched): trace, diag_embed, linalg.inv, linalg.det and linalg.solve, each
with the gradient torch's derivatives give."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, NoArgs, Op, Shape, register, same_float, unbroadcast


def _square(name: str, x: Shape, batched: bool = True) -> None:
    if len(x) < 2 or x[-1] != x[-2] or (not batched and len(x) != 2):
        raise ShapeError(f"{name}: expected a {'(*, n, n)' if batched else '2-d'} square matrix, got shape {list(x)}")


@register
class Trace(Op):
    """torch.trace(x): the sum of a 2-d matrix's diagonal (rectangular too: TraceBackward0); its gradient is g on
    that diagonal."""

    name = "trace"
    functions = ("torch.trace",)
    methods = ("trace",)

    def shape(self, shapes: list[Shape], a: NoArgs) -> Shape:
        if len(shapes[0]) != 2:
            raise ShapeError(f"trace: expected a matrix, got shape {list(shapes[0])}")
        return ()

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: NoArgs) -> Any:
        return t.trace(xs[0])

    def forward(self, xs: list[Array], a: NoArgs) -> Array:
        return np.asarray(np.trace(xs[0]), dtype=xs[0].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: NoArgs) -> list[Array | None]:
        gx = np.zeros_like(xs[0])
        k = np.arange(min(gx.shape))
        gx[k, k] = g
        return [gx]


class DiagEmbedArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offset: int = 0


@register
class DiagEmbed(Op):
    """torch.diag_embed(x, offset) (torch.diag of a vector): each last-dim vector onto the diagonal of a square
    matrix of zeros (DiagEmbedBackward0); the gradient reads that diagonal back."""

    name = "diag_embed"
    Args = DiagEmbedArgs
    positional = ("offset",)
    functions = ("torch.diag_embed",)
    methods = ("diag_embed",)
    any_dtype = True

    def shape(self, shapes: list[Shape], a: DiagEmbedArgs) -> Shape:
        x = shapes[0]
        if not x:
            raise ShapeError("diag_embed: input must be at least 1-d, got a 0-d tensor")
        n = x[-1] + abs(a.offset)
        return (*x[:-1], n, n)

    def torch(self, t: Any, xs: list[Any], a: DiagEmbedArgs) -> Any:
        return t.diag_embed(xs[0], offset=a.offset)

    def _index(self, n: int, a: DiagEmbedArgs) -> tuple[Array, Array]:
        k = np.arange(n - abs(a.offset))
        return (k, k + a.offset) if a.offset >= 0 else (k - a.offset, k)

    def forward(self, xs: list[Array], a: DiagEmbedArgs) -> Array:
        x = xs[0]
        n = x.shape[-1] + abs(a.offset)
        out = np.zeros((*x.shape[:-1], n, n), dtype=x.dtype)
        rows, cols = self._index(n, a)
        out[..., rows, cols] = x
        return out

    def backward(self, g: Array, out: Array, xs: list[Array], a: DiagEmbedArgs) -> list[Array | None]:
        rows, cols = self._index(g.shape[-1], a)
        return [np.ascontiguousarray(g[..., rows, cols]).reshape(xs[0].shape)]


def column_major(shape: Shape) -> tuple[int, ...]:
    """Strides of a batch of matrices stored column by column (LAPACK's results: linalg.inv, linalg.solve)."""
    *batch, m, n = shape
    out, step = [1, max(m, 1)], max(m, 1) * max(n, 1)
    for k in reversed(batch):
        out.insert(0, step)
        step *= max(k, 1)
    return (*out[:-2], 1, max(m, 1))


@register
class Inv(Op):
    """torch.linalg.inv / torch.inverse: the inverse of each (n, n) matrix; d(A^-1) = -A^-1 dA A^-1, so the
    gradient is -A^-T g A^-T (LinalgInvExBackward0)."""

    name = "inv"
    functions = ("torch.linalg.inv", "torch.inverse")
    methods = ("inverse",)

    def shape(self, shapes: list[Shape], a: NoArgs) -> Shape:
        _square(self.name, shapes[0])
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: NoArgs) -> Any:
        return t.linalg.inv(xs[0])

    def out_strides(self, shapes: list[Shape], strides: list[tuple[int, ...]], a: NoArgs) -> tuple[int, ...] | None:
        return column_major(shapes[0])  # LAPACK's layout: each matrix column by column

    def forward(self, xs: list[Array], a: NoArgs) -> Array:
        return np.linalg.inv(xs[0])

    def backward(self, g: Array, out: Array, xs: list[Array], a: NoArgs) -> list[Array | None]:
        it = np.swapaxes(out, -1, -2)
        return [-(it @ g @ it)]


@register
class Det(Op):
    """torch.linalg.det / torch.det: each matrix's determinant; its gradient is g * det(A) * A^-T (LinalgDetBackward0),
    0 for a singular matrix, as torch's."""

    name = "det"
    functions = ("torch.linalg.det", "torch.det")
    methods = ("det",)

    def shape(self, shapes: list[Shape], a: NoArgs) -> Shape:
        _square(self.name, shapes[0])
        return shapes[0][:-2]

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: NoArgs) -> Any:
        return t.linalg.det(xs[0])

    def forward(self, xs: list[Array], a: NoArgs) -> Array:
        return np.asarray(np.linalg.det(xs[0]), dtype=xs[0].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: NoArgs) -> list[Array | None]:
        return [(np.asarray(g)[..., None, None] * _cofactors(xs[0].astype(np.float64))).astype(xs[0].dtype)]


def _cofactors(m: Array) -> Array:
    """d det(A) / dA as torch computes it: det(A) * A^-T, solved against det(A) * I, so 0 where det(A) is exactly 0
    (the cofactors of a singular matrix need not be, but torch's gradient is)."""
    det = np.linalg.det(m)
    out = np.zeros_like(m)
    ok = det != 0
    if np.any(ok):
        out[ok] = det[ok][..., None, None] * np.swapaxes(np.linalg.inv(m[ok]), -1, -2)
    return out


@register
class Solve(Op):
    """torch.linalg.solve(A, B): X with A X = B (B a vector or matrices, batches broadcast); gB = A^-T g and
    gA = -gB X^T (LinalgSolveExBackward0)."""

    name = "solve"
    tensors = ("A", "B")
    same_dtype = True
    functions = ("torch.linalg.solve",)

    def _vector(self, a: Shape, b: Shape) -> bool:
        """torch treats B as a (batch of) vector(s) when it has one dim less than A and matches A's rows."""
        return len(b) == 1 or (len(b) == len(a) - 1 and b == a[:-1])

    def shape(self, shapes: list[Shape], a: NoArgs) -> Shape:
        A, B = shapes
        _square(self.name, A)
        if self._vector(A, B):
            if B[-1] != A[-1]:
                raise ShapeError(f"solve: B {list(B)} does not fit A {list(A)}")
            return (*np.broadcast_shapes(A[:-2], B[:-1]), A[-1])
        if len(B) < 2 or B[-2] != A[-1]:
            raise ShapeError(f"solve: B {list(B)} must have {A[-1]} rows for A {list(A)}")
        return (*np.broadcast_shapes(A[:-2], B[:-2]), A[-1], B[-1])

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: NoArgs) -> Any:
        return t.linalg.solve(xs[0], xs[1])

    def out_strides(self, shapes: list[Shape], strides: list[tuple[int, ...]], a: NoArgs) -> tuple[int, ...] | None:
        out = self.shape(shapes, a)  # LAPACK's layout, a batch of vectors included: (2, 5, 3) has strides (15, 1, 5)
        return column_major(out) if len(out) >= 2 else None

    def forward(self, xs: list[Array], a: NoArgs) -> Array:
        A, B = xs
        if self._vector(A.shape, B.shape):
            return np.linalg.solve(A, B[..., None])[..., 0]
        return np.linalg.solve(A, B)

    def backward(self, g: Array, out: Array, xs: list[Array], a: NoArgs) -> list[Array | None]:
        A, B = xs
        vec = self._vector(A.shape, B.shape)
        g2, x2 = (g[..., None], out[..., None]) if vec else (g, out)
        gb = np.linalg.solve(np.swapaxes(A, -1, -2), g2)
        ga = -gb @ np.swapaxes(x2, -1, -2)
        return [unbroadcast(ga, A.shape).astype(A.dtype), unbroadcast(gb[..., 0] if vec else gb, B.shape).astype(B.dtype)]
