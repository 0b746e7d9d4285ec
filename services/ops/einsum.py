"""torch.einsum: any equation of subscripts (implicit or explicit output, `...`, a letter repeated in one operand for
its diagonal, a letter summed within one operand). Each operand's gradient is one more einsum: the output gradient
against the other operands, onto that operand's subscripts."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, register, same_float, unbroadcast
from services.strides import contiguous, iterated


class EinsumArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    equation: str


def parse(equation: str, n: int) -> tuple[list[str], str]:
    """(each operand's subscripts, the output's), spaces dropped, the implicit output made explicit (the letters
    that appear once, sorted, after `...` if any operand has it), as torch reads it."""
    eq = equation.replace(" ", "")
    if not re.fullmatch(r"[A-Za-z.,]*(->[A-Za-z.]*)?", eq):
        raise ShapeError(f"einsum: equation {equation!r} has characters other than letters, '...', ',' and '->'")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != n:
        raise ShapeError(f"einsum: equation {equation!r} has {len(terms)} operand(s), {n} tensor(s) were given")
    for t in [*terms, out]:
        if t.replace("...", "").count(".") or t.count("...") > 1:
            raise ShapeError(f"einsum: '.' is only allowed as one '...' per subscript, in {equation!r}")
    if not arrow:
        letters = "".join(terms).replace(".", "")
        out = ("..." if any("..." in t for t in terms) else "") + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return terms, out


def _sizes(terms: list[str], shapes: list[Shape], equation: str) -> tuple[dict[str, int], Shape]:
    """Each letter's size and the broadcast shape of the `...` dims, or ShapeError where they do not fit."""
    sizes: dict[str, int] = {}
    ell: list[Shape] = []
    for t, s in zip(terms, shapes, strict=True):
        letters = t.replace("...", "")
        if "..." in t:
            if len(s) < len(letters):
                raise ShapeError(f"einsum: subscript {t!r} needs at least {len(letters)} dims, operand has {list(s)}")
            k = t.index("...")
            n_ell = len(s) - len(letters)
            ell.append(tuple(s[k : k + n_ell]))
            dims = list(s[:k]) + list(s[k + n_ell :])
        else:
            if len(s) != len(letters):
                raise ShapeError(f"einsum: subscript {t!r} has {len(letters)} letters for an operand of shape {list(s)}")
            dims = list(s)
        for c, d in zip(letters, dims, strict=True):
            if sizes.setdefault(c, d) != d:
                raise ShapeError(f"einsum: subscript {c!r} in {equation!r} has size {d} against {sizes[c]} elsewhere")
    try:
        return sizes, tuple(np.broadcast_shapes(*ell)) if ell else ()
    except ValueError:
        raise ShapeError(f"einsum: the '...' dims {[list(e) for e in ell]} do not broadcast") from None


BLAS_SIZE = 1 << 14
"""Operands of more elements than this (together) are contracted along an optimised path: numpy's plain einsum
never calls BLAS (a batched matmul written as einsum ran 4x torch); the path search costs ~50 us."""


def contract(subscripts: str, *ops: Array) -> Array:
    """np.einsum, along numpy's greedy path (BLAS where it can) for operands large enough to pay for finding it."""
    big = sum(o.size for o in ops) > BLAS_SIZE
    return np.einsum(subscripts, *ops, optimize="greedy" if big and len(ops) > 1 else False)


@register
class Einsum(Op):
    """torch.einsum(equation, *operands): numpy's einsum for the numbers; the gradient of operand k is the output
    gradient's einsum with the others onto k's subscripts (ones for letters only k has, written onto k's diagonal
    where a letter repeats, summed over the `...` dims it was broadcast along)."""

    name = "einsum"
    variadic = True
    same_dtype = True
    Args = EinsumArgs

    def shape(self, shapes: list[Shape], a: EinsumArgs) -> Shape:
        terms, out = parse(a.equation, len(shapes))
        sizes, ell = _sizes(terms, shapes, a.equation)
        if any("..." in t and len(set(t.replace("...", ""))) < len(t.replace("...", "")) for t in terms):
            raise ShapeError(f"einsum: a subscript with both '...' and a repeated letter is not traced ({a.equation!r})")
        letters = out.replace("...", "")
        if len(set(letters)) != len(letters) or any(c not in sizes for c in letters):
            raise ShapeError(f"einsum: output subscript {out!r} repeats a letter or has one no operand has")
        k = out.index("...") if "..." in out else len(letters)
        return tuple(sizes[c] for c in letters[:k]) + (ell if "..." in out else ()) + tuple(sizes[c] for c in letters[k:])

    def dtype(self, dtypes: list[str]) -> str:
        return same_float(self.name, dtypes)

    def torch(self, t: Any, xs: list[Any], a: EinsumArgs) -> Any:
        return t.einsum(a.equation, *xs)

    def out_strides(self, shapes: list[Shape], strides: list[tuple[int, ...]], a: EinsumArgs) -> tuple[int, ...] | None:
        """torch's layout of the result, as ATen's einsum makes it (None: row-major, or not modelled: '...', three or
        more operands): see einsum_layout."""
        terms, out = parse(a.equation, len(shapes))
        if "..." in a.equation or len(terms) > 2:
            return None
        sizes, _ = _sizes(terms, shapes, a.equation)
        return einsum_layout(terms, out, sizes, list(strides))

    def forward(self, xs: list[Array], a: EinsumArgs) -> Array:
        terms, out = parse(a.equation, len(xs))
        if "..." in out or not any("..." in t for t in terms):
            return np.asarray(contract(f"{','.join(terms)}->{out}", *xs), dtype=xs[0].dtype)
        y = contract(f"{','.join(terms)}->...{out}", *xs)  # '...' summed away, as torch does (numpy refuses to)
        return np.asarray(y.reshape(-1, *y.shape[y.ndim - len(out):]).sum(axis=0), dtype=xs[0].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: EinsumArgs) -> list[Array | None]:
        terms, out_sub = parse(a.equation, len(xs))
        sizes, _ = _sizes(terms, [x.shape for x in xs], a.equation)
        return [self._grad(k, g, xs, terms, out_sub, sizes) for k in range(len(xs))]

    def _grad(self, k: int, g: Array, xs: list[Array], terms: list[str], out_sub: str, sizes: dict[str, int]) -> Array:
        """Operand k's gradient: einsum of g and the other operands onto k's letters (each once)."""
        term, x = terms[k], xs[k]
        others = [(t, v) for j, (t, v) in enumerate(zip(terms, xs, strict=True)) if j != k]
        have = set(out_sub + "".join(t for t, _ in others))
        letters = term.replace("...", "")
        unique = "".join(dict.fromkeys(letters))
        lone = [c for c in unique if c not in have]  # summed within x alone: its gradient is the same along them
        subs = [out_sub, *(t for t, _ in others), *lone]
        ops = [g, *(v for _, v in others), *(np.ones(sizes[c], g.dtype) for c in lone)]
        if "..." not in term:
            if any("..." in t for t in subs):  # numpy keeps '...' dims to the end: summed here, x has none
                gu = contract(f"{','.join(subs)}->...{unique}", *ops)
                gu = gu.reshape(-1, *gu.shape[gu.ndim - len(unique):]).sum(axis=0)
            else:
                gu = contract(f"{','.join(subs)}->{unique}", *ops)
            if len(unique) == len(term):
                return np.asarray(gu, dtype=x.dtype)
            gx = np.zeros(x.shape, dtype=x.dtype)  # a repeated letter: the gradient lies on x's diagonal
            np.einsum(f"{term}->{unique}", gx)[...] = gu
            return gx
        pre = term.index("...")
        n_ell = x.ndim - len(letters)
        ell = x.shape[pre : pre + n_ell]
        gu = contract(f"{','.join([*subs, '...'])}->...{unique}", *ops, np.ones(ell, g.dtype))  # ones: x's '...' dims
        gu = unbroadcast(gu, ell + tuple(sizes[c] for c in unique))  # summed where x was broadcast along '...'
        return np.ascontiguousarray(np.moveaxis(gu, list(range(n_ell)), list(range(pre, pre + n_ell))), dtype=x.dtype)


def _label_order(c: str) -> int:
    """ATen's label index: A-Z before a-z (the order of the contracted letters)."""
    return ord(c) - ord("A") if c.isupper() else 26 + ord(c) - ord("a")


def einsum_layout(terms: list[str], out: str, sizes: dict[str, int], strides: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The strides of torch.einsum's result for one or two operands (ATen's einsum and sumproduct_pair, torch 2.13).
    Each operand is viewed over every letter, the output's in its order and then the contracted ones (a repeated
    letter its diagonal, a missing one a size-1 dim). One operand: that view, or a sum (row-major). Two: a letter
    contracted within one operand is summed first (that operand then row-major); with no letter left to contract
    between them, their product (TensorIterator's order); else bmm, whose result lies in memory as (letters of both
    and the output, the left's own, the right's own) - the two own groups swapped when all of the right's come first -
    and is viewed back: `bhqk,bhkd->bqhd` is (b, h, q, d) in memory. None: row-major."""
    dims = list(out) + sorted({c for c in sizes if c not in out}, key=_label_order)
    if len(terms) == 1:
        if len(dims) > len(out):
            return None  # a sum over the contracted letters: a new, row-major tensor
        return tuple(sum(st for c2, st in zip(terms[0], strides[0], strict=True) if c2 == c) for c in out)
    contracted = dims[len(out):]
    count = {c: sum(c in t and sizes[c] != 1 for t in terms) for c in contracted}
    size: list[dict[str, int]] = []
    view: list[tuple[int, ...] | None] = []
    for t, st in zip(terms, strides, strict=True):
        summed = {c for c in contracted if c in t and sizes[c] != 1 and count[c] == 1}
        size.append({c: (sizes[c] if c in t and c not in summed else 1) for c in dims})
        view.append(None if summed else tuple(sum(s for c2, s in zip(t, st, strict=True) if c2 == c) if c in t else 1 for c in dims))
    left, right = size
    pair = [c for c in contracted if left[c] != 1 and right[c] != 1]
    shape = tuple(max(left[c], right[c]) for c in dims)
    if not pair:  # left * right: TensorIterator's order of the two views (a summed one row-major over the letters)
        ops = [(tuple(sz[c] for c in dims), v if v is not None else contiguous(tuple(sz[c] for c in dims)))
               for sz, v in zip(size, view, strict=True)]
        full = iterated(shape, ops)
        return full[: len(out)]
    both = [c for c in dims if c not in pair and left[c] != 1 and right[c] != 1]
    lo = [c for c in dims if c not in pair and left[c] != 1 and right[c] == 1]
    ro = [c for c in dims if c not in pair and left[c] == 1]
    if lo and ro and dims.index(ro[-1]) < dims.index(lo[0]):  # swap_lo_ro: bmm gives the natural order directly
        lo, ro = ro, lo
    memory = both + lo + pair + ro
    step = dict(zip(memory, contiguous(tuple(1 if c in pair else shape[dims.index(c)] for c in memory)), strict=True))
    return tuple(step[c] for c in out)

