"""Cholesky and its solves, and slogdet, over the last two dims (batched), with the gradients torch's derivatives
give (FunctionsManual.cpp: cholesky_backward, cholesky_solve_backward, linalg_solve_triangular_backward): a Gaussian
process's marginal likelihood, L = cholesky(K), alpha = cholesky_solve(y, L), log det K = 2 * log(diag(L)).sum()."""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.linalg import lu_factor, lu_solve
from scipy.linalg import solve_triangular as _triangular

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, register, same_float, unbroadcast
from services.ops.matrices import _square, column_major


def _mh(x: Array) -> Array:
    return np.swapaxes(x, -1, -2)


def triangular_solve(A: Array, B: Array, upper: bool, left: bool = True, unit: bool = False) -> Array:
    """X with A X = B (left) or X A = B, A triangular; batched over leading dims."""
    if not left:  # X A = B  <=>  A^T X^T = B^T
        return _mh(triangular_solve(_mh(A), _mh(B), not upper, True, unit))
    batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    if A.size == 0 or B.size == 0:  # (empty matrices or an empty batch: nothing to solve)
        return np.zeros((*batch, *B.shape[-2:]), dtype=B.dtype)
    A2 = np.broadcast_to(A, (*batch, *A.shape[-2:])).reshape(-1, *A.shape[-2:])
    B2 = np.broadcast_to(B, (*batch, *B.shape[-2:])).reshape(-1, *B.shape[-2:])
    out = np.stack([_one_triangular(a, b, not upper, unit) for a, b in zip(A2, B2, strict=True)])
    return out.reshape(*batch, *B.shape[-2:]).astype(B.dtype, copy=False)


def _one_triangular(a: Array, b: Array, lower: bool, unit: bool) -> Array:
    """One triangular solve; a zero on the diagonal gives inf and NaN, as LAPACK's trtrs in torch, not an error."""
    try:
        return _triangular(a, b, lower=lower, unit_diagonal=unit, check_finite=False)  # type: ignore[no-any-return]
    except np.linalg.LinAlgError:
        pass
    n = a.shape[0]
    x = np.zeros(b.shape, dtype=np.result_type(a, b))
    rows = range(n) if lower else range(n - 1, -1, -1)
    with np.errstate(all="ignore"):
        for i in rows:
            done = slice(0, i) if lower else slice(i + 1, n)
            rest = b[i] - a[i, done] @ x[done]
            x[i] = rest if unit else rest / a[i, i]
    return x


class CholeskyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upper: bool = False
    deprecated: bool = False
    """torch.cholesky / Tensor.cholesky (CholeskyBackward0), not torch.linalg.cholesky (LinalgCholeskyExBackward0)."""


@register
class Cholesky(Op):
    """L with A = L L^H (upper: U with A = U^H U) of each symmetric positive definite matrix; torch reads A's lower
    triangle (upper=True: its upper one). The gradient is torch's: L^-H Phi(L^H gL) L^-1, Phi the lower triangle with its diagonal halved."""

    name = "cholesky"
    Args = CholeskyArgs
    positional = ("upper",)
    functions = ("torch.linalg.cholesky",)

    def shape(self, shapes: list[Shape], a: CholeskyArgs) -> Shape:
        _square(self.name, shapes[0])
        return shapes[0]

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: CholeskyArgs) -> Any:
        return t.cholesky(xs[0], upper=a.upper) if a.deprecated else t.linalg.cholesky(xs[0], upper=a.upper)

    def out_strides(self, shapes: list[Shape], strides: list[tuple[int, ...]], a: CholeskyArgs) -> tuple[int, ...] | None:
        return column_major(shapes[0])  # LAPACK's layout

    def forward(self, xs: list[Array], a: CholeskyArgs) -> Array:
        A = xs[0]  # torch reads one triangle, the lower (upper=True: the upper)
        lower = np.triu(A) + _mh(np.triu(A, 1)) if a.upper else np.tril(A) + _mh(np.tril(A, -1))
        L = _cholesky(lower.astype(np.float64)).astype(A.dtype)
        return _mh(L) if a.upper else L

    def backward(self, g: Array, out: Array, xs: list[Array], a: CholeskyArgs) -> list[Array | None]:
        L, gL = (_mh(out), _mh(g)) if a.upper else (out, g)
        gA = np.tril(_mh(L) @ gL)
        gA = 0.5 * (gA + _mh(np.tril(gA, -1)))
        gA = triangular_solve(_mh(L), gA, upper=True)
        gA = triangular_solve(L, gA, upper=False, left=False)
        return [gA.astype(xs[0].dtype, copy=False)]


def _cholesky(m: Array) -> Array:
    """Lower Cholesky factors in float64; NaN for a matrix that is not positive definite here (torch's float32
    factorisation can pass a singular one its rounding makes positive: the engines then disagree there, not fail)."""
    try:
        return np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        flat = m.reshape(-1, *m.shape[-2:])
        out = np.full(flat.shape, np.nan)
        for k, one in enumerate(flat):
            try:
                out[k] = np.linalg.cholesky(one)
            except np.linalg.LinAlgError:
                pass
        return out.reshape(m.shape)


class UpperArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upper: bool = False


@register
class CholeskySolve(Op):
    """torch.cholesky_solve(B, L, upper=False): X with (L L^H) X = B; torch's gradient: gB = cholesky_solve(g, L),
    gL = -(C + C^H) L with C = gB X^H (upper: -U (C + C^H))."""

    name = "cholesky_solve"
    tensors = ("input", "input2")
    Args = UpperArgs
    positional = ("upper",)
    functions = ("torch.cholesky_solve",)
    methods = ("cholesky_solve",)
    same_dtype = True

    def shape(self, shapes: list[Shape], a: UpperArgs) -> Shape:
        B, L = shapes
        _square(self.name, L)
        if len(B) < 2 or B[-2] != L[-1]:
            raise ShapeError(f"cholesky_solve: B {list(B)} must be (*, {L[-1]}, k) for the factor {list(L)}")
        return (*np.broadcast_shapes(B[:-2], L[:-2]), *B[-2:])

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: UpperArgs) -> Any:
        return t.cholesky_solve(xs[0], xs[1], upper=a.upper)

    def out_strides(self, shapes: list[Shape], strides: list[tuple[int, ...]], a: UpperArgs) -> tuple[int, ...] | None:
        return column_major(self.shape(shapes, a))

    @staticmethod
    def solve(B: Array, L: Array, upper: bool) -> Array:
        if upper:  # U^H U X = B
            return triangular_solve(L, triangular_solve(_mh(L), B, upper=False), upper=True)
        return triangular_solve(_mh(L), triangular_solve(L, B, upper=False), upper=True)

    def forward(self, xs: list[Array], a: UpperArgs) -> Array:
        return self.solve(xs[0], xs[1], a.upper)

    def backward(self, g: Array, out: Array, xs: list[Array], a: UpperArgs) -> list[Array | None]:
        B, L = xs
        gB = self.solve(g, L, a.upper)
        common = gB @ _mh(out)
        common = common + _mh(common)
        gL = -(L @ common) if a.upper else -(common @ L)
        return [unbroadcast(gB, B.shape).astype(B.dtype, copy=False), unbroadcast(gL, L.shape).astype(L.dtype, copy=False)]


class TriangularArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upper: bool
    left: bool = True
    unitriangular: bool = False


@register
class SolveTriangular(Op):
    """torch.linalg.solve_triangular(A, B, upper=..., left=True, unitriangular=False): X with A X = B (X A = B);
    torch's gradient: gB = A^-H g (solved), gA = -gB X^H (-X^H gB), kept to A's triangle."""

    name = "solve_triangular"
    tensors = ("A", "B")
    Args = TriangularArgs
    functions = ("torch.linalg.solve_triangular",)
    same_dtype = True

    def shape(self, shapes: list[Shape], a: TriangularArgs) -> Shape:
        A, B = shapes
        _square(self.name, A)
        if len(B) < 2 or (B[-2] if a.left else B[-1]) != A[-1]:
            raise ShapeError(f"solve_triangular: B {list(B)} does not fit A {list(A)} (left={a.left})")
        return (*np.broadcast_shapes(A[:-2], B[:-2]), *B[-2:])

    def out_strides(self, shapes: list[Shape], strides: list[tuple[int, ...]], a: TriangularArgs) -> tuple[int, ...] | None:
        return column_major(self.shape(shapes, a))  # LAPACK's layout, left or right, batched or not

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: TriangularArgs) -> Any:
        return t.linalg.solve_triangular(xs[0], xs[1], upper=a.upper, left=a.left, unitriangular=a.unitriangular)

    def forward(self, xs: list[Array], a: TriangularArgs) -> Array:
        A, B = xs
        A = np.triu(A) if a.upper else np.tril(A)  # torch reads A's triangle only
        return triangular_solve(A, B, a.upper, a.left, a.unitriangular)

    def backward(self, g: Array, out: Array, xs: list[Array], a: TriangularArgs) -> list[Array | None]:
        A, B = xs
        At = np.triu(A) if a.upper else np.tril(A)
        gB = triangular_solve(_mh(At), g, not a.upper, a.left, a.unitriangular)
        gA = -(gB @ _mh(out)) if a.left else -(_mh(out) @ gB)
        gA = np.triu(gA, int(a.unitriangular)) if a.upper else np.tril(gA, -int(a.unitriangular))
        return [unbroadcast(gA, A.shape).astype(A.dtype, copy=False), unbroadcast(gB, B.shape).astype(B.dtype, copy=False)]


class SlogdetArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part: Literal["sign", "logabsdet"] = "logabsdet"


@register
class Slogdet(Op):
    """torch.linalg.slogdet(A): (sign, log|det A|), one node each (LinalgSlogdetBackward0); log|det|'s gradient is
    g A^-T, the sign has none."""

    name = "slogdet"
    Args = SlogdetArgs

    def shape(self, shapes: list[Shape], a: SlogdetArgs) -> Shape:
        _square(self.name, shapes[0])
        return shapes[0][:-2]

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: SlogdetArgs) -> Any:
        return t.linalg.slogdet(xs[0])[0 if a.part == "sign" else 1]

    def forward(self, xs: list[Array], a: SlogdetArgs) -> Array:
        sign, logabs = np.linalg.slogdet(xs[0])
        return np.asarray(sign if a.part == "sign" else logabs, dtype=xs[0].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: SlogdetArgs) -> list[Array | None]:
        if a.part == "sign":
            return [None]
        A = xs[0]
        if A.size == 0:
            return [np.zeros_like(A)]
        # g A^-T solved through LU, as torch's: a singular matrix gives inf and NaN where its pivots are 0, no error
        n = A.shape[-1]
        flat, gs = A.reshape(-1, n, n).astype(np.float64), np.broadcast_to(np.asarray(g, np.float64), A.shape[:-2]).reshape(-1)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (scipy's LinAlgWarning for a singular matrix)
            out = np.stack([lu_solve(lu_factor(m, check_finite=False), gk * np.eye(n), trans=1, check_finite=False)
                            for m, gk in zip(flat, gs, strict=True)])
        return [out.reshape(A.shape).astype(A.dtype)]

