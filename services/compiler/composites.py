"""torch functions that torch itself composes from other ops, built here from the same ops in the same order, so
that their nodes, numbers and grad_fns are torch's: F.l1_loss (abs of the difference, then its reduction),
F.kl_div (xlogy and a product, batchmean's division), F.cosine_similarity (each vector over its clamped norm),
F.pairwise_distance, F.triplet_margin_loss, F.margin_ranking_loss, F.cosine_embedding_loss, F.hinge_embedding_loss,
F.poisson_nll_loss, F.multilabel_soft_margin_loss and torch.nanmean.

Each builder takes `add(op, inputs, args, last)`, which adds one node (the `last` one is the call's result) and returns
its name: a program's call (F.l1_loss) and a module's (nn.L1Loss) name their nodes each their own way."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from services.ops.base import broadcast

Add = Callable[[str, list[Any], dict[str, Any], bool], str]
"""add(op, inputs, args, last) -> the new node's name."""

REDUCTIONS = ("mean", "sum", "none")


def _reduced(add: Add, x: str, reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction is 'mean', 'sum' or 'none', not {reduction!r}")
    return x if reduction == "none" else add(reduction, [x], {}, True)


def l1_loss(add: Add, input: str, target: str, reduction: str = "mean") -> str:
    """|input - target|, then mean or sum (MeanBackward0 over AbsBackward0 over SubBackward0, as torch's)."""
    d = add("sub", [input, target], {}, False)
    return _reduced(add, add("abs", [d], {}, reduction == "none"), reduction)


def kl_div(add: Add, input: str, target: str, batch: int, reduction: str = "mean", log_target: bool = False) -> str:
    """target * (log target - input) for log-probabilities `input`: xlogy(target, target) - target * input (with
    log_target, exp(target) * (target - input)); 'batchmean' sums and divides by the batch size."""
    if log_target:
        loss = add("mul", [add("exp", [target], {}, False), add("sub", [target, input], {}, False)], {}, reduction == "none")
    else:
        loss = add("sub", [add("xlogy", [target, target], {}, False), add("mul", [target, input], {}, False)], {},
                   reduction == "none")
    if reduction == "batchmean":
        return add("div", [add("sum", [loss], {}, False), float(batch)], {}, True)
    return _reduced(add, loss, reduction)


def cosine_similarity(add: Add, x1: str, x2: str, shapes: tuple[tuple[int, ...], ...], dim: int = 1, eps: float = 1e-8) -> str:
    """sum(x1 / max(|x1|, eps) * x2 / max(|x2|, eps), dim) over the broadcast shape, as torch divides each vector by its
    norm first (DivBackward0; torch clamps the norm in place where gradtrace adds a clamp_min node)."""
    shape = broadcast(*shapes)
    scaled = []
    for x, own in zip((x1, x2), shapes, strict=True):
        wide = x if own == shape else add("expand", [x], {"size": list(shape)}, False)
        norm = add("clamp_min", [add("norm", [wide], {"p": 2, "dim": dim, "keepdim": True}, False)], {"min": eps}, False)
        scaled.append(add("div", [wide, norm], {}, False))
    return add("sum", [add("mul", scaled, {}, False)], {"dim": dim}, True)


def pairwise_distance(add: Add, x1: str, x2: str, ndim: int, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False,
                      last: bool = True) -> str:
    """||x1 - x2 + eps||_p over the last dim (NormBackward1 over AddBackward1 over SubBackward0, as torch's)."""
    d = add("add", [add("sub", [x1, x2], {}, False), eps], {}, False)
    return add("at_norm", [d], {"p": p, "dim": max(ndim - 1, 0), "keepdim": keepdim}, last)


def triplet_margin_loss(add: Add, anchor: str, positive: str, negative: str, ndim: int, margin: float = 1.0,
                        p: float = 2.0, eps: float = 1e-6, swap: bool = False, reduction: str = "mean") -> str:
    """max(d(a, p) + margin - d(a, n), 0) with pairwise distances (with `swap`, d(a, n) is min(d(a, n), d(p, n))),
    then the reduction, in torch's order of ops."""
    pos = pairwise_distance(add, anchor, positive, ndim, p, eps, last=False)
    neg = pairwise_distance(add, anchor, negative, ndim, p, eps, last=False)
    if swap:
        neg = add("minimum", [neg, pairwise_distance(add, positive, negative, ndim, p, eps, last=False)], {}, False)
    gap = add("sub", [add("add", [pos, float(margin)], {}, False), neg], {}, False)
    return _reduced(add, add("clamp_min", [gap], {"min": 0.0}, reduction == "none"), reduction)


def margin_ranking_loss(add: Add, x1: str, x2: str, target: str, margin: float = 0.0, reduction: str = "mean") -> str:
    """max(-target * (x1 - x2) + margin, 0), then the reduction (ClampMinBackward0 over AddBackward1 over
    MulBackward0, as torch's)."""
    score = add("mul", [add("neg", [target], {}, False), add("sub", [x1, x2], {}, False)], {}, False)
    gap = add("add", [score, float(margin)], {}, False)
    return _reduced(add, add("clamp_min", [gap], {"min": 0.0}, reduction == "none"), reduction)


def cosine_embedding_loss(add: Add, x1: str, x2: str, target: str, shapes: tuple[tuple[int, ...], ...], margin: float = 0.0,
                          reduction: str = "mean") -> str:
    """ATen's cosine_embedding_loss: cos = sum(x1 * x2) / sqrt((sum(x1 * x1) + 1e-12) * (sum(x2 * x2) + 1e-12)) over the
    last dim; 1 - cos where target is 1, max(cos - margin, 0) where it is -1 (two where()s over zeros), then the
    reduction. A 1-d target takes 2-d inputs, a 0-d target 1-d ones."""
    tdim = len(shapes[2])
    if tdim not in (0, 1):
        raise ValueError("0D or 1D target tensor expected, multi-target not supported")
    if len(shapes[0]) != tdim + 1 or len(shapes[1]) != tdim + 1:
        raise ValueError(f"{tdim}D target tensor expects {tdim + 1}D input tensors, but found inputs with sizes "
                         f"{list(shapes[0])} and {list(shapes[1])}")
    prod_sum = add("sum", [add("mul", [x1, x2], {}, False)], {"dim": tdim}, False)
    mags = [add("add", [add("sum", [add("mul", [x, x], {}, False)], {"dim": tdim}, False), 1e-12], {}, False) for x in (x1, x2)]
    cos = add("div", [prod_sum, add("sqrt", [add("mul", mags, {}, False)], {}, False)], {}, False)
    pos = add("sub", [1.0, cos], {}, False)
    neg = add("clamp_min", [add("sub", [cos, float(margin)], {}, False)], {"min": 0.0}, False)
    out_pos = add("where", [add("eq", [target, 1.0], {}, False), pos, 0.0], {}, False)
    out_neg = add("where", [add("eq", [target, -1.0], {}, False), neg, 0.0], {}, False)
    return _reduced(add, add("add", [out_pos, out_neg], {}, reduction == "none"), reduction)


def hinge_embedding_loss(add: Add, input: str, target: str, margin: float = 1.0, reduction: str = "mean") -> str:
    """ATen's hinge_embedding_loss: max(margin - input, 0) where target is not 1, plus input where target is not -1
    (two where()s over zeros), then the reduction."""
    clamped = add("clamp_min", [add("sub", [float(margin), input], {}, False)], {"min": 0.0}, False)
    out_margin = add("where", [add("ne", [target, 1.0], {}, False), clamped, 0.0], {}, False)
    out_self = add("where", [add("ne", [target, -1.0], {}, False), input, 0.0], {}, False)
    return _reduced(add, add("add", [out_margin, out_self], {}, reduction == "none"), reduction)


def poisson_nll_loss(add: Add, input: str, target: str, log_input: bool = True, full: bool = False, eps: float = 1e-8,
                     reduction: str = "mean") -> str:
    """exp(input) - target * input (log_input=False: input - target * log(input + eps)); with `full`, Stirling's
    term where target > 1 added, as ATen's poisson_nll_loss (MeanBackward0 over SubBackward0 over ExpBackward0)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction is 'mean', 'sum' or 'none', not {reduction!r}")
    done = reduction == "none" and not full  # (the last elementwise node is the result)
    if log_input:
        loss = add("sub", [add("exp", [input], {}, False), add("mul", [target, input], {}, False)], {}, done)
    else:
        log = add("log", [add("add", [input, float(eps)], {}, False)], {}, False)
        loss = add("sub", [input, add("mul", [target, log], {}, False)], {}, done)
    if full:
        stirling = add("add", [add("sub", [add("mul", [target, add("log", [target], {}, False)], {}, False), target], {}, False),
                               add("mul", [add("log", [add("mul", [target, 2 * math.pi], {}, False)], {}, False), 0.5], {}, False)],
                       {}, False)
        small = add("le", [target, 1.0], {}, False)
        loss = add("add", [loss, add("masked_fill", [stirling, small], {"value": 0.0}, False)], {}, reduction == "none")
    return _reduced(add, loss, reduction)


def gaussian_nll_loss(add: Add, input: str, target: str, var: str, shapes: tuple[tuple[int, ...], ...], full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> str:
    """0.5 * (log(var) + (input - target) ** 2 / var) with var clamped to eps outside the graph (var_clamp), plus
    0.5 * log(2 pi) with `full` (AddBackward1 here, where torch's in-place += records AddBackward0), then the
    reduction: torch's Python, op for op. A var of input's shape without its last dim is unsqueezed first; one with a single dim of size 1
    where input's differs broadcasts."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction is 'mean', 'sum' or 'none', not {reduction!r}")
    x, v = shapes[0], shapes[2]
    if v != x:
        if x[:-1] == v:
            var = add("unsqueeze", [var], {"dim": -1}, False)
        elif not (len(x) == len(v) and sum(b for a, b in zip(x, v, strict=True) if a != b) == 1):
            # (torch's test: one mismatched dim, of size 1 in var: (10, 2, 1), or (4, 1, 32, 32) for (4, 3, 32, 32))
            raise ValueError(f"var is of incorrect size: {list(v)} for input {list(x)}")
    var = add("var_clamp", [var], {"eps": float(eps)}, False)
    sq = add("pow", [add("sub", [input, target], {}, False), 2.0], {}, False)
    inner = add("add", [add("log", [var], {}, False), add("div", [sq, var], {}, False)], {}, False)
    loss = add("mul", [inner, 0.5], {}, reduction == "none" and not full)
    if full:
        loss = add("add", [loss, 0.5 * math.log(2 * math.pi)], {}, reduction == "none")
    return _reduced(add, loss, reduction)


def multilabel_soft_margin_loss(add: Add, input: str, target: str, classes: int, weight: str | None = None,
                                reduction: str = "mean") -> str:
    """-(target * logsigmoid(input) + (1 - target) * logsigmoid(-input)), times weight, summed over the classes and
    divided by their count, then the reduction: torch's Python, op for op."""
    pos = add("mul", [target, add("logsigmoid", [input], {}, False)], {}, False)
    neg = add("mul", [add("sub", [1.0, target], {}, False), add("logsigmoid", [add("neg", [input], {}, False)], {}, False)],
              {}, False)
    loss = add("neg", [add("add", [pos, neg], {}, False)], {}, False)
    if weight is not None:
        loss = add("mul", [loss, weight], {}, False)
    per = add("div", [add("sum", [loss], {"dim": -1}, False), float(classes)], {}, reduction == "none")
    return _reduced(add, per, reduction)


def nanmean(add: Add, x: str, dim: Any = None, keepdim: bool = False) -> str:
    """torch.nanmean: nansum divided by the count of the elements that are not NaN (DivBackward0 over NansumBackward0,
    as ATen's)."""
    args = {} if dim is None else {"dim": dim, "keepdim": keepdim}
    count = add("sum", [add("logical_not", [add("isnan", [x], {}, False)], {}, False)], args, False)
    return add("div", [add("nansum", [x], args, False), count], {}, True)


def pool1d(add: Add, x: str, op: str, size: int, stride: int | None = None, padding: int = 0,
           options: dict[str, Any] | None = None) -> str:
    """F.max_pool1d / avg_pool1d / adaptive_avg_pool1d / adaptive_max_pool1d as torch runs them: the 2-d pool over a height of 1 between an
    unsqueeze and a squeeze (SqueezeBackward1 over MaxPool2DWithIndicesBackward0 over UnsqueezeBackward0)."""
    if op.startswith("adaptive"):
        args: dict[str, Any] = {"output_size": [1, size]}
    else:
        args = {"kernel_size": [1, size], "padding": [0, padding], **({"stride": [1, stride]} if stride is not None else {}),
                **(options or {})}
    tall = add("unsqueeze", [x], {"dim": -2}, False)
    return add("squeeze", [add(op, [tall], args, False)], {"dim": -2}, True)
