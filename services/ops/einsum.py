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

    def forward(self, xs: list[Array], a: EinsumArgs) -> Array:
        terms, out = parse(a.equation, len(xs))
        if "..." in out or not any("..." in t for t in terms):
            return np.asarray(np.einsum(f"{','.join(terms)}->{out}", *xs), dtype=xs[0].dtype)
        y = np.einsum(f"{','.join(terms)}->...{out}", *xs)  # '...' summed away, as torch does (numpy refuses to)
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
                gu = np.einsum(f"{','.join(subs)}->...{unique}", *ops)
                gu = gu.reshape(-1, *gu.shape[gu.ndim - len(unique):]).sum(axis=0)
            else:
                gu = np.einsum(f"{','.join(subs)}->{unique}", *ops)
            if len(unique) == len(term):
                return np.asarray(gu, dtype=x.dtype)
            gx = np.zeros(x.shape, dtype=x.dtype)  # a repeated letter: the gradient lies on x's diagonal
            np.einsum(f"{term}->{unique}", gx)[...] = gu
            return gx
        pre = term.index("...")
        n_ell = x.ndim - len(letters)
        ell = x.shape[pre : pre + n_ell]
        gu = np.einsum(f"{','.join([*subs, '...'])}->...{unique}", *ops, np.ones(ell, g.dtype))  # ones: x's '...' dims
        gu = unbroadcast(gu, ell + tuple(sizes[c] for c in unique))  # summed where x was broadcast along '...'
        return np.ascontiguousarray(np.moveaxis(gu, list(range(n_ell)), list(range(pre, pre + n_ell))), dtype=x.dtype)
