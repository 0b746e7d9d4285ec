"""torch's strides of the tensors a graph makes, where they are not contiguous: transposes and permutes, expands,
slices and views of them, and what pointwise ops make of them (TensorIterator keeps its inputs' memory order). torch
fills a random tensor shaped like another (dropout's mask, empty_like) in that tensor's memory order, so a trace
draws its masks in that order to give torch's numbers. Strides count elements; None stands for contiguous."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

Shape = tuple[int, ...]
Strides = tuple[int, ...]


@lru_cache(maxsize=4096)
def contiguous(shape: Shape) -> Strides:
    """Row-major strides, as torch computes them (size-1 dims included)."""
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= max(n, 1)
    return tuple(reversed(out))


def permuted(strides: Strides, dims: list[int]) -> Strides:
    """x.permute(dims): output dim i is input dim dims[i]."""
    return tuple(strides[d % len(strides)] for d in dims)


def transposed(strides: Strides, a: int, b: int) -> Strides:
    s = list(strides)
    a, b = a % len(s), b % len(s)
    s[a], s[b] = s[b], s[a]
    return tuple(s)


def expanded(shape: Shape, strides: Strides, size: Shape) -> Strides:
    """x.expand(size): new leading dims and expanded size-1 dims stride 0."""
    lead = len(size) - len(shape)
    return (0,) * lead + tuple(0 if n == 1 and m != 1 else s for n, m, s in zip(shape, size[lead:], strides, strict=True))


def unsqueezed(shape: Shape, strides: Strides, dim: int) -> Strides:
    """torch's unsqueeze: the new dim's stride is sizes[dim] * strides[dim], or 1 at the end."""
    d = dim % (len(shape) + 1)
    new = 1 if d >= len(shape) else shape[d] * strides[d]
    return strides[:d] + (new,) + strides[d:]


def _dummy(shape: Shape, strides: Strides) -> np.ndarray:
    """A numpy array of this shape and these strides (bytes = elements: int8) over one byte, never read."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape=shape, strides=strides)


def viewed(shape: Shape, strides: Strides, size: Shape) -> Strides | None:
    """reshape / view / flatten to `size`: the view's strides when torch can view (numpy's rule is torch's), None
    when it copies (a contiguous result)."""
    try:
        return tuple(np.reshape(_dummy(shape, strides), size, copy=False).strides)
    except ValueError:
        return None


def indexed(shape: Shape, strides: Strides, index: tuple[Any, ...]) -> Strides:
    """Basic indexing (ints, slices, None, Ellipsis): the view's strides."""
    return tuple(_dummy(shape, strides)[index].strides)


def iterated(out: Shape, operands: list[tuple[Shape, Strides]]) -> Strides:
    """The strides TensorIterator gives a pointwise op's output: its inputs' memory order, the first input with an
    unambiguous order deciding each pair of dims (broadcast dims ignored; equal strides: the smaller size inside), as
    ATen's reorder_dimensions; dense in that order."""
    n = len(out)
    if n < 2:
        return contiguous(out)
    wide = []
    for shape, strides in operands:  # each operand's strides over the output's shape (broadcast dims 0)
        lead = n - len(shape)
        wide.append((0,) * lead + tuple(0 if m == 1 and o != 1 else s for m, o, s in zip(shape, out[lead:], strides, strict=True)))

    def should_swap(d0: int, d1: int) -> int:
        for s in wide:
            s0, s1 = s[d0], s[d1]
            if s0 == 0 or s1 == 0:
                continue
            if s0 < s1:
                return -1
            if s0 > s1:
                return 1
            if out[d0] > out[d1]:
                return 1
        return 0

    perm = list(range(n - 1, -1, -1))  # innermost first
    for i in range(1, n):
        d1 = i
        for d0 in range(i - 1, -1, -1):
            c = should_swap(perm[d0], perm[d1])
            if c > 0:
                perm[d0], perm[d1] = perm[d1], perm[d0]
                d1 = d0
            elif c < 0:
                break
    result, step = [0] * n, 1
    for d in perm:
        result[d] = step
        step *= max(out[d], 1)
    return tuple(result)


def is_contiguous(shape: Shape, strides: Strides) -> bool:
    """torch's is_contiguous: row-major where it matters (size-1 dims may have any stride); an empty tensor is."""
    if 0 in shape:
        return True
    step = 1
    for n, s in zip(reversed(shape), reversed(strides), strict=True):
        if n != 1:
            if s != step:
                return False
            step *= n
    return True


def like(shape: Shape, strides: Strides) -> Strides:
    """empty_like's strides (and so clone's, and what a random fill like the tensor goes through): its own when it is
    non-overlapping and dense, else dense ones in its dims' order (ATen's infer_dense_strides: TensorIterator's)."""
    return strides if memory_order(shape, strides) is not None else iterated(shape, [(shape, strides)])


def memory_order(shape: Shape, strides: Strides) -> list[int] | None:
    """The dims outermost first when the tensor is non-overlapping and dense (the order a fill of empty_like of it
    goes in); None otherwise (see `like`)."""
    order = sorted(range(len(shape)), key=lambda d: (-strides[d], -shape[d]))
    step = 1
    for d in reversed(order):
        if shape[d] != 1 and strides[d] != step:
            return None
        step *= shape[d]
    return order if math.prod(shape) else None
