"""Ops that notebooks use and gradtrace once lacked: masked_fill and tril/triu (causal attention), one_hot,
nll_loss and binary cross entropy (of probabilities and of logits), amax/amin, prod, norm, repeat, dot and adaptive_avg_pool2d,
proved like tests/test_ops.py: torch, the reference and finite differences agree on values, grads and edges."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_ops import DTYPES, N, check, given, normal, uniform

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

CASES: list[Any] = []
FROZEN = {"requires_grad": False}
EXACT = {"engines": ["torch", "reference"]}  # at ties, zeros and kinks finite differences see another slope


def case(id: str, inputs: dict[str, Any], *nodes: dict[str, Any], **kw: Any) -> None:
    CASES.append(pytest.param(inputs, list(nodes), kw, id=id))


CAUSAL = {"x": normal(2, 4, 4, seed=1), "o": {**given(np.ones((4, 4)).tolist()), **FROZEN}}
for cut in ("tril", "triu"):
    case(f"{cut}", {"x": normal(3, 4, seed=2)}, N("y", cut, "x"))
    case(f"{cut}-diagonal", {"x": normal(2, 3, 5, seed=3)}, N("y", cut, "x", diagonal=-1), N("z", cut, "x", diagonal=2),
         N("s", "add", "y", "z"))
case("masked_fill-causal", CAUSAL, N("m", "tril", "o"), N("c", "eq", "m", 0.0),
     N("w", "masked_fill", "x", "c", value=-1e9), N("y", "softmax", "w", dim=-1))
case("masked_fill-broadcast-mask", {"x": normal(3, 4, seed=4), "p": {**normal(4, seed=5), **FROZEN}},
     N("c", "gt", "p", 0.0), N("y", "masked_fill", "x", "c", value=2.5))
case("one_hot", {"x": normal(3, 4, seed=6), "t": given([0, 3, 1], dtype="int64")},
     N("h", "one_hot", "t", num_classes=4), N("y", "mul", "x", "h"))
LOGP = {"z": normal(4, 5, seed=7), "t": given([1, 0, 4, 1], dtype="int64")}
for red in ("mean", "sum", "none"):
    case(f"nll_loss-{red}", LOGP, N("x", "log_softmax", "z", dim=1), N("L", "nll_loss", "x", "t", reduction=red))
    case(f"binary_cross_entropy-{red}", {"p": uniform(3, 4, low=0.05, high=0.95, seed=8), "y": uniform(3, 4, low=0.0, high=1.0, seed=9)},
         N("L", "binary_cross_entropy", "p", "y", reduction=red))
    case(f"binary_cross_entropy_with_logits-{red}", {"x": normal(3, 4, seed=10, std=3.0), "y": uniform(3, 4, low=0.0, high=1.0, seed=11)},
         N("L", "binary_cross_entropy_with_logits", "x", "y", reduction=red))
# mse_loss of shapes that differ: torch broadcasts them (a warning; the result's notes say it), gradients unbroadcast.
case("mse_loss-broadcast", {"x": normal(4, 1, seed=13), "y": normal(4, seed=14)}, N("L", "mse_loss", "x", "y"))
case("mse_loss-broadcast-none", {"x": normal(3, 1, seed=15), "y": normal(1, 2, seed=16)},
     N("L", "mse_loss", "x", "y", reduction="none"))
case("nll_loss-1d", {"z": normal(5, seed=12), "t": given(3, dtype="int64")}, N("x", "log_softmax", "z", dim=0),
     N("L", "nll_loss", "x", "t"))


# amax/amin share ties evenly; prod's gradient is the product of the others (zeros included); norm at 0 is 0.
TIED = {"x": given([[1.0, 2.0, 2.0], [0.0, 3.0, -1.0]])}
for op in ("amax", "amin"):
    case(f"{op}-all", {"x": normal(3, 4, seed=20)}, N("y", op, "x"))
    case(f"{op}-dims", {"x": normal(2, 3, 4, seed=21)}, N("y", op, "x", dim=[0, 2], keepdim=True))
    case(f"{op}-ties", TIED, N("y", op, "x", dim=1), **EXACT)
case("prod-all", {"x": uniform(2, 3, low=0.5, high=1.5, seed=22)}, N("y", "prod", "x"))
case("prod-dim", {"x": normal(3, 4, seed=23)}, N("y", "prod", "x", dim=1, keepdim=True))
case("prod-zeros", {"x": given([[1.0, 2.0, 3.0], [0.0, 3.0, -1.0], [0.0, 0.0, 2.0]])}, N("y", "prod", "x", dim=1), **EXACT)
case("prod-0d", {"x": normal(seed=24)}, N("y", "prod", "x"))
case("norm-2", {"x": normal(3, 4, seed=25)}, N("y", "norm", "x"))
case("norm-dim-1", {"x": normal(3, 4, seed=26)}, N("y", "norm", "x", p=1, dim=1))
case("norm-zero", {"x": given([[0.0, 0.0], [3.0, 4.0]])}, N("y", "norm", "x", dim=1, keepdim=True), **EXACT)
case("repeat", {"x": normal(2, 3, seed=27)}, N("y", "repeat", "x", sizes=[2, 1, 3]))
case("repeat-same-rank", {"x": normal(2, 3, seed=28)}, N("y", "repeat", "x", sizes=[2, 2]), N("z", "mul", "y", "y"))
case("dot", {"a": normal(5, seed=29), "b": normal(5, seed=30)}, N("y", "dot", "a", "b"))
# batch_norm_running after an earlier step: the buffer it left is the second input.
case("batch_norm_running-previous", {"x": normal(4, 3, seed=34), "m": {**normal(3, seed=35), **FROZEN}},
     N("r", "batch_norm_running", "x", "m", stat="var", momentum=0.3), N("y", "mul", "x", 2.0), N("s", "sum", "y"))
# adaptive_avg_pool2d: windows that divide (a plain average), that overlap (5 -> 3), None keeps a size, 3-d input.
case("adaptive_avg_pool2d-1", {"x": normal(2, 3, 4, 4, seed=31)}, N("y", "adaptive_avg_pool2d", "x", output_size=1))
case("adaptive_avg_pool2d-overlap", {"x": normal(1, 2, 5, 7, seed=32)}, N("y", "adaptive_avg_pool2d", "x", output_size=[3, 4]),
     N("z", "mul", "y", "y"))
case("adaptive_avg_pool2d-none-3d", {"x": normal(2, 6, 5, seed=33)}, N("y", "adaptive_avg_pool2d", "x", output_size=[None, 2]))
# adaptive_max_pool2d: the same windows, the gradient to each window's first maximum (overlapping windows add theirs).
case("adaptive_max_pool2d-1", {"x": normal(2, 3, 4, 4, seed=34)}, N("y", "adaptive_max_pool2d", "x", output_size=1))
case("adaptive_max_pool2d-overlap", {"x": normal(1, 2, 5, 7, seed=35)}, N("y", "adaptive_max_pool2d", "x", output_size=[3, 4]),
     N("z", "mul", "y", "y"))
case("adaptive_max_pool2d-none-3d", {"x": normal(2, 6, 5, seed=36)}, N("y", "adaptive_max_pool2d", "x", output_size=[None, 2]))
case("adaptive_max_pool2d-ties", {"x": given([[[1.0, 3.0, 3.0], [2.0, 3.0, 0.0], [3.0, 1.0, 3.0]]])},
     N("y", "adaptive_max_pool2d", "x", output_size=2), **EXACT)
# prelu: one weight or one per channel (dim 1), a 1-d input (one channel), x = 0 taking the weight's slope.
case("prelu-channels", {"x": normal(2, 3, 4, seed=37), "w": uniform(3, low=0.0, high=0.5, seed=38)}, N("y", "prelu", "x", "w"))
case("prelu-one", {"x": normal(2, 3, 2, 2, seed=39), "w": given([0.25])}, N("y", "prelu", "x", "w"), N("z", "mul", "y", "y"))
case("prelu-1d-zero", {"x": given([-1.0, 0.0, 2.0, -0.5]), "w": given([0.3])}, N("y", "prelu", "x", "w"), **EXACT)
# cdist: p = 2 from differences (few rows) and by torch's matmul form (over 25 rows, or asked for), p = 1, 3 and inf,
# batch dims that broadcast.
PTS = {"a": normal(6, 3, seed=40), "b": normal(4, 3, seed=41)}
for p in (2.0, 1.0, 3.0, float("inf")):
    case(f"cdist-p{p}", PTS, N("d", "cdist", "a", "b", p=p))
case("cdist-matmul-rows", {"a": normal(30, 4, seed=42), "b": normal(5, 4, seed=43)}, N("d", "cdist", "a", "b"))
case("cdist-matmul-batched", {"a": normal(2, 6, 3, seed=44), "b": normal(4, 3, seed=45)},
     N("d", "cdist", "a", "b", compute_mode="use_mm_for_euclid_dist"), N("e", "mul", "d", "d"))
# selu / celu (elu's scaled forms: the left slope at 0), hardshrink / softshrink / threshold at and around their cuts.
CUTS = {"x": given([-2.0, -0.5, -0.3, 0.0, 0.3, 0.5, 0.7, 2.0])}
case("selu", {"x": normal(3, 4, seed=46)}, N("y", "selu", "x"))
case("celu", {"x": normal(3, 4, seed=47)}, N("y", "celu", "x", alpha=0.5))
for op, kw in (("selu", {}), ("celu", {"alpha": 2.0}), ("hardshrink", {}), ("softshrink", {"lambd": 0.3}),
               ("threshold", {"threshold": 0.3, "value": -1.0})):
    case(f"{op}-cuts", CUTS, N("y", op, "x", **kw), **EXACT)
# cholesky (lower and upper; torch reads the lower triangle), cholesky_solve, solve_triangular (left and right, unit
# diagonal) and slogdet, of matrices made positive definite from a leaf: torch's gradients, checked by finite differences.
SPD = {"x": normal(3, 3, seed=48), "i": {**given((np.eye(3) * 3).tolist()), **FROZEN}, "b": normal(3, 2, seed=49)}
GRAM = (N("xt", "transpose", "x", dim0=0, dim1=1), N("m", "matmul", "x", "xt"), N("s", "add", "m", "i"))
for upper in (False, True):
    case(f"cholesky-upper{upper}", SPD, *GRAM, N("L", "cholesky", "s", upper=upper))
    case(f"cholesky_solve-upper{upper}", SPD, *GRAM, N("L", "cholesky", "s", upper=upper),
         N("y", "cholesky_solve", "b", "L", upper=upper))
case("cholesky-batched", {"x": normal(2, 3, 3, seed=50), "i": {**given((np.eye(3) * 3).tolist()), **FROZEN}},
     N("xt", "transpose", "x", dim0=1, dim1=2), N("m", "matmul", "x", "xt"), N("s", "add", "m", "i"), N("L", "cholesky", "s"))
TRI = {"x": normal(3, 3, seed=51), "i": {**given((np.eye(3) * 3).tolist()), **FROZEN}, "b": normal(3, 2, seed=52),
       "c": normal(2, 3, seed=53)}
case("solve_triangular-lower", TRI, N("a", "add", "x", "i"), N("y", "solve_triangular", "a", "b", upper=False))
case("solve_triangular-upper-right-unit", TRI, N("a", "add", "x", "i"),
     N("y", "solve_triangular", "a", "c", upper=True, left=False, unitriangular=True))
case("slogdet", TRI, N("a", "add", "x", "i"), N("y", "slogdet", "a", part="logabsdet"))
# var_mean / std_mean (each part), median of all (ties share the gradient) and along a dim (the tied element torch's CPU
# kernel picks), lgamma, digamma, erfinv and logit (with eps: no gradient outside the clamp).
for op in ("var_mean", "std_mean"):
    for part in ("spread", "mean"):
        case(f"{op}-{part}", {"x": normal(3, 4, seed=54)}, N("y", op, "x", dim=1, part=part, keepdim=True))
TIES = {"x": given([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])}
case("median-all-ties", TIES, N("y", "median", "x"), **EXACT)
case("median-dim-ties", TIES, N("y", "median", "x", dim=1), **EXACT)
case("median-dim0", {"x": normal(5, 3, seed=55)}, N("y", "median", "x", dim=0, keepdim=True))
POSITIVE = {"x": uniform(6, low=0.5, high=3.0, seed=56)}
for op in ("lgamma", "digamma"):
    case(op, POSITIVE, N("y", op, "x"))
case("erfinv", {"x": uniform(6, low=-0.9, high=0.9, seed=57)}, N("y", "erfinv", "x"))
case("logit", {"x": uniform(6, low=0.05, high=0.95, seed=58)}, N("y", "logit", "x"))
case("logit-eps", {"x": given([0.05, 0.2, 0.5, 0.95])}, N("y", "logit", "x", eps=0.1), **EXACT)
# logcumsumexp (a Cox model's risk sets, reversed), cummax / cummin: values and indices, the last of equal values taking
# over, a NaN holding until the next (torch's CPU kernel), the gradient summed onto the places picked.
case("logcumsumexp", {"x": normal(3, 5, seed=59, std=3.0)}, N("y", "logcumsumexp", "x", dim=1))
case("logcumsumexp-dim0-reversed", {"x": normal(4, 2, seed=60)}, N("f", "flip", "x", dims=[0]),
     N("r", "logcumsumexp", "f", dim=0), N("y", "flip", "r", dims=[0]))
case("logcumsumexp-inf", {"x": given([[float("-inf"), float("-inf"), 0.0, 1.0], [2.0, float("-inf"), 0.5, -1.0]])},
     N("y", "logcumsumexp", "x", dim=1), **EXACT)
# embedding_bag (nn.EmbeddingBag): a 1-D input cut at offsets (an empty bag gives zeros), a 2-D input's rows, each mode,
# per-sample weights (sum only), padding_idx left out of a bag (and of a mean's count), include_last_offset.
BAG = {"i": given([1, 5, 2, 2, 0, 3, 5, 1], dtype="int64"), "o": given([0, 3, 3, 6], dtype="int64"),
       "w": normal(6, 3, seed=62), "p": normal(8, seed=63)}
for mode in ("sum", "mean", "max"):
    case(f"embedding_bag-{mode}", BAG, N("y", "embedding_bag", "i", "w", "o", mode=mode), **EXACT)
    case(f"embedding_bag-{mode}-2d-padding", {"i": given([[1, 0, 3, 3], [4, 2, 0, 0], [0, 0, 0, 0]], dtype="int64"),
                                              "w": normal(5, 2, seed=64)},
         N("y", "embedding_bag", "i", "w", mode=mode, padding_idx=0), **EXACT)
case("embedding_bag-per_sample_weights", BAG, N("y", "embedding_bag", "i", "w", "o", "p", mode="sum", padding_idx=2))
case("embedding_bag-include_last_offset", {**BAG, "o": given([0, 3, 3, 8], dtype="int64")},
     N("y", "embedding_bag", "i", "w", "o", include_last_offset=True))
# Tensor.unfold: sliding windows (overlapping: the gradient adds up; a step past the size: gaps get none), a 0-d tensor.
case("unfold-overlapping", {"x": normal(2, 9, seed=65)}, N("y", "unfold", "x", dimension=1, size=4, step=2))
case("unfold-gaps-dim0", {"x": normal(7, 3, seed=66)}, N("y", "unfold", "x", dimension=0, size=2, step=3))
case("unfold-twice", {"x": normal(1, 4, 6, seed=67)}, N("r", "unfold", "x", dimension=1, size=2, step=2),
     N("y", "unfold", "r", dimension=2, size=3, step=1))
case("unfold-0d", {"x": given(2.5)}, N("y", "unfold", "x", dimension=0, size=1, step=1))
# soft_margin_loss (its own backward), nansum (NaNs give no gradient; all NaN: 0).
MARGIN = {"x": normal(3, 4, seed=68), "y": {**given([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, -1.0], [1.0, 1.0, 1.0, -1.0]]), **FROZEN}}
for red in ("mean", "sum", "none"):
    case(f"soft_margin_loss-{red}", MARGIN, N("L", "soft_margin_loss", "x", "y", reduction=red))
NAN = {"x": given([[1.0, float("nan"), 2.0], [float("nan"), float("nan"), float("nan")], [0.5, -1.0, 3.0]])}
case("nansum-all", NAN, N("y", "nansum", "x"), **EXACT)
case("nansum-dim", NAN, N("y", "nansum", "x", dim=1, keepdim=True), **EXACT)
case("nansum-plain", {"x": normal(3, 4, seed=69)}, N("y", "nansum", "x", dim=[0, 1]))
# isnan / isinf / isfinite / isposinf / isneginf: masks (no gradient) that select, as imputation code writes it.
ODD = {"x": given([[1.0, float("nan"), float("inf")], [float("-inf"), 0.0, -2.0]]), "v": normal(2, 3, seed=70)}
for op in ("isnan", "isinf", "isfinite", "isposinf", "isneginf"):
    case(op, ODD, N("m", op, "x"), N("y", "where", "m", "v", 0.0), **EXACT)
case("isnan-int64", {"i": given([1, 2], dtype="int64"), "v": normal(2, seed=71)}, N("m", "isfinite", "i"),
     N("y", "where", "m", "v", 0.0), **EXACT)
# weight_norm (nn.utils.weight_norm's recomputed weight): the norm over every dim but dim (0, 1) or of everything (-1).
case("weight_norm-dim0", {"v": normal(3, 2, 2, seed=72), "g": normal(3, 1, 1, seed=73)}, N("w", "weight_norm", "v", "g"))
case("weight_norm-dim1", {"v": normal(3, 4, seed=74), "g": normal(1, 4, seed=75)}, N("w", "weight_norm", "v", "g", dim=1))
case("weight_norm-all", {"v": normal(3, 4, seed=76), "g": given(1.5)}, N("w", "weight_norm", "v", "g", dim=-1))
# masked_select: the mask broadcast with the input (and the input with the mask), count known when compiled.
MSEL = {"x": normal(3, 4, seed=77), "m": given([[True, False, True, True]], dtype="bool")}
case("masked_select-broadcast-mask", MSEL, N("y", "masked_select", "x", "m", count=9))
case("masked_select-broadcast-input", {"x": normal(4, seed=78), "m": given([[True, False, False, True], [False] * 4], dtype="bool")},
     N("y", "masked_select", "x", "m", count=2))
# var_clamp (F.gaussian_nll_loss's clamp outside the graph): values clamped, the gradient passed unclamped.
case("var_clamp", {"v": given([0.5, 1e-9, 2.0, 0.0])}, N("y", "var_clamp", "v", eps=1e-3), N("z", "mul", "y", "y"),
     engines=["torch", "reference"])
CUM_TIES = {"x": given([[1.0, 1.0, 0.0, 1.0, 1.0], [3.0, 2.0, 5.0, 5.0, 1.0], [0.0, 2.0, 2.0, 1.0, 2.0]])}
for op in ("cummax", "cummin"):
    case(f"{op}", {"x": normal(3, 4, seed=61)}, N("y", op, "x", dim=1))
    case(f"{op}-ties", CUM_TIES, N("y", op, "x", dim=1), **EXACT)
    case(f"{op}-dim0-ties", CUM_TIES, N("y", op, "x", dim=0), **EXACT)
    case(f"{op}-indices", CUM_TIES, N("i", op, "x", dim=1, part="indices"), N("f", "to", "i", dtype="float64"),
         N("y", "mul", "x", "f"), **EXACT)
    case(f"{op}-nan", {"x": given([[3.0, float("nan"), 5.0, float("nan"), 1.0], [1.0, 2.0, 0.0, 4.0, 4.0]])},
         N("y", op, "x", dim=1), **EXACT)

# div with a rounding_mode (index arithmetic, bucketing): floor as Python's //, trunc toward zero, the signs mixed;
# torch's derivative is zero (DivBackward2), which finite differences see too away from the jumps.
SIGNS = {"x": given([[5.0, -5.0, 7.3, 0.3], [-0.75, 2.25, -3.3, 9.4]]), "w": given([2.0, -2.0, 0.5, -0.4])}
for mode in ("floor", "trunc"):
    case(f"div-{mode}", SIGNS, N("q", "div", "x", "w", rounding_mode=mode), N("y", "mul", "q", "x"), N("z", "add", "y", "w"))
    case(f"div-{mode}-number", SIGNS, N("q", "div", "x", -3.0, rounding_mode=mode), N("y", "mul", "q", "x"))
    case(f"div-{mode}-int64", {"x": normal(2, 4, seed=62), "i": given([[7, -7, 0, 6], [-1, 5, -6, 3]], dtype="int64"),
                                  "j": given([3, -2, 5, -4], dtype="int64")},
         N("q", "div", "i", -4.0, rounding_mode=mode), N("r", "div", "i", "j", rounding_mode=mode), N("f", "to", "q", dtype="float64"),
         N("y", "mul", "x", "f"))
# fill_diagonal_ (SimCLR's self-similarity mask): square, wide, tall with and without wrap, a cube; the diagonal gets no
# gradient.
for shape, wrap in (((4, 4), False), ((3, 5), False), ((7, 3), False), ((7, 3), True), ((3, 3, 3), False)):
    case(f"fill_diagonal-{'x'.join(map(str, shape))}{'-wrap' if wrap else ''}", {"x": normal(*shape, seed=63)},
         N("y", "fill_diagonal", "x", fill_value=-2.5, wrap=wrap), N("z", "mul", "y", "y"))
# bernoulli on draws made before the trace: 1 where u < p; the gradient of p is zero (u is data, as a dropout mask)
case("bernoulli", {"p": uniform(3, 4, low=0.05, high=0.95, seed=64), "u": {**uniform(3, 4, low=0.0, high=1.0, seed=65), **FROZEN}},
     N("b", "bernoulli", "p", "u"), N("y", "mul", "b", "p"), engines=["torch", "reference"])
# multinomial with replacement (word2vec's negative samples): a search of p's cumulative sum per uniform double draw; a
# zero-probability category is never picked; integer indices, no gradient (the float cast after it carries none either)
case("multinomial_replacement", {"p": {**given([[0.0, 0.2, 0.3, 0.5], [1.0, 1.0, 0.0, 2.0], [0.1, 0.1, 0.1, 0.7]]), **FROZEN},
                                 "u": {**uniform(3, 6, low=0.0, high=1.0, seed=68), "dtype": "float64", **FROZEN},
                                 "x": normal(3, 6, seed=69)},
     N("s", "multinomial_replacement", "p", "u"), N("f", "to", "s", dtype="float32"), N("y", "mul", "f", "x"),
     engines=["torch", "reference"])
# torch.normal(mean, std) of tensors on noise drawn before the trace: noise * std + mean (broadcast), zero gradients
case("normal_tensors", {"m": normal(2, 1, seed=70), "s": uniform(3, low=0.5, high=2.0, seed=71),
                        "e": {**normal(2, 3, seed=72), **FROZEN}},
     N("w", "normal_tensors", "m", "s", "e"), N("y", "mul", "w", "s"), engines=["torch", "reference"])
case("normal_tensors-number-mean", {"s": uniform(2, 3, low=0.5, high=2.0, seed=73), "e": {**normal(2, 3, seed=74), **FROZEN}},
     N("w", "normal_tensors", 1.5, "s", "e"), N("y", "mul", "w", "s"), engines=["torch", "reference"])
# scatter_reduce (GraphSAGE's mean, a global max pool): each reduction with and without the input; ties (amax/amin share
# the gradient among the equal elements, the input's counted as torch counts it) and a position nothing lands on
POOL = {"x": normal(3, 4, seed=66), "src": normal(5, 4, seed=67),
        "i": given([[0, 0, 1, 2], [2, 0, 1, 0], [0, 2, 2, 2], [1, 1, 0, 0], [2, 2, 2, 1]], dtype="int64")}
TIES = {"x": given([[1.0, 2.0], [2.0, 2.0], [0.0, 1.0]]), "src": given([[2.0, 0.0], [1.0, 2.0]]),
        "i": given([[0, 0], [0, 0]], dtype="int64")}
for red in ("sum", "mean", "amax", "amin"):
    for inc in (True, False):
        case(f"scatter_reduce-{red}-{'self' if inc else 'noself'}", POOL,
             N("y", "scatter_reduce", "x", "i", "src", dim=0, reduce=red, include_self=inc), N("z", "mul", "y", "y"))
        if red in ("amax", "amin"):
            case(f"scatter_reduce-{red}-{'self' if inc else 'noself'}-ties", TIES,
                 N("y", "scatter_reduce", "x", "i", "src", dim=0, reduce=red, include_self=inc), N("z", "mul", "y", "y"), **EXACT)

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("inputs", "nodes", "kw"), CASES)
def test_op(inputs: dict[str, Any], nodes: list[dict[str, Any]], kw: dict[str, Any], dtype: str) -> None:
    check(inputs, nodes, dtype, **kw)


@pytest.mark.parametrize(("inputs", "nodes", "needle"), [
    ({"x": normal(3, 4)}, [N("c", "gt", "x", 0.0), N("y", "masked_fill", "c", "x", value=1.0)], "mask must be a bool"),
    ({"x": normal(3, 4), "m": {**normal(2, 3, 4), **FROZEN}}, [N("c", "gt", "m", 0.0), N("y", "masked_fill", "x", "c", value=1.0)],
     "must broadcast to the input's shape"),
    ({"x": normal(4)}, [N("y", "tril", "x")], "at least 2 dimensions"),
    ({"t": given([0, 5], dtype="int64"), "x": normal(2, 4)}, [N("h", "one_hot", "t", num_classes=4), N("y", "mul", "x", "h")],
     "out of range for 4 classes"),
    ({"t": given([0, 1], dtype="int64"), "x": normal(2, 4)}, [N("h", "one_hot", "t"), N("y", "mul", "x", "h")], "give num_classes"),
    ({"p": normal(3), "y": normal(4)}, [N("L", "binary_cross_entropy_with_logits", "p", "y")], "must be the same as input size"),
    ({"p": normal(3), "y": normal(4)}, [N("L", "mse_loss", "p", "y")], "do not broadcast"),
    ({"p": normal(3), "y": normal(4)}, [N("L", "dot", "p", "y")], "1D tensors of one size"),
    ({"p": normal(3, 2)}, [N("L", "repeat", "p", sizes=[2])], "at least 2 non-negative sizes"),
    # (values outside [0, 1] that only the run knows of fail there, with torch's message: tests/test_program_python.py)
    ({"p": given([0.5, 1.5]), "y": given([0.0, 1.0])}, [N("L", "binary_cross_entropy", "p", "y")], "they are in [0.5, 1.5]"),
    ({"p": uniform(3, low=0, high=1), "t": given([0, 1, 1], dtype="int64")}, [N("L", "binary_cross_entropy", "p", "t")],
     "cast with .float()"),
    ({"x": normal(3)}, [N("y", "fill_diagonal", "x", fill_value=0.0)], "dimensions must larger than 1"),
    ({"x": normal(2, 3, 3)}, [N("y", "fill_diagonal", "x", fill_value=0.0)], "all dimensions of input must be of equal length"),
    ({"x": normal(3), "b": given([True, False, True], dtype="bool")}, [N("q", "div", "b", "b", rounding_mode="floor"),
     N("y", "mul", "x", "q")], "of bool tensors is not supported"),
])
def test_bad_uses_name_the_node(inputs: dict[str, Any], nodes: list[dict[str, Any]], needle: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(inputs=inputs, nodes=nodes, output=nodes[-1]["name"], grad_output="ones"))
    assert needle in str(info.value), str(info.value)
    assert info.value.node in {n["name"] for n in nodes}
