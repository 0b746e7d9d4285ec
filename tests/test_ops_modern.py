"""rms_norm (nn.RMSNorm), glu (nn.GLU), the beta * input + alpha * product family (addmm, addmv, addr, baddbmm,
addbmm), cross_entropy with class-probability targets and binary cross entropy's weight and pos_weight: torch, the reference and finite differences agree on values, grads and edges; programs that use them give
torch's numbers and grad_fn names; bad shapes name the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_ops import DTYPES, N, check, normal
from test_program_pytorch import in_torch, same_as_torch, traced

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

CASES: list[Any] = []


def case(id: str, inputs: dict[str, Any], *nodes: dict[str, Any], **kw: Any) -> None:
    CASES.append(pytest.param(inputs, list(nodes), kw, id=id))


# rms_norm over the last one and two dims, with and without a weight; eps given and torch's default (None).
RX = normal(3, 4, 5, seed=90, std=2.0)
case("rms_norm-1d", {"x": RX}, N("y", "rms_norm", "x", normalized_shape=[5]), N("L", "mul", "y", "y"))
case("rms_norm-1d-weight", {"x": RX, "w": normal(5, seed=91)}, N("y", "rms_norm", "x", "w", normalized_shape=[5], eps=1e-6))
case("rms_norm-2d-weight", {"x": RX, "w": normal(4, 5, seed=92)}, N("y", "rms_norm", "x", "w", normalized_shape=[4, 5]))
case("rms_norm-eps-large", {"x": normal(2, 6, seed=93, std=0.1), "w": normal(6, seed=94)},
     N("y", "rms_norm", "x", "w", normalized_shape=[6], eps=0.5))
case("rms_norm-chain", {"x": normal(4, 3, seed=95), "w": normal(6, 3, seed=96), "g": normal(6, seed=97)},
     N("h", "linear", "x", "w"), N("n", "rms_norm", "h", "g", normalized_shape=[6]), N("y", "tanh", "n"))
# glu along each dim, and a gated MLP.
case("glu", {"x": normal(3, 8, seed=98, std=2.0)}, N("y", "glu", "x"))
case("glu-dim0", {"x": normal(4, 3, seed=99, std=2.0)}, N("y", "glu", "x", dim=0))
case("glu-3d-middle", {"x": normal(2, 6, 3, seed=100)}, N("y", "glu", "x", dim=1), N("L", "mul", "y", "y"))
# addmm and kin, with torch's defaults and with beta / alpha, broadcast inputs, beta 0.
MATS = {"c": normal(2, 3, seed=101), "a": normal(2, 4, seed=102), "b": normal(4, 3, seed=103)}
case("addmm", MATS, N("y", "addmm", "c", "a", "b"))
case("addmm-beta-alpha", MATS, N("y", "addmm", "c", "a", "b", beta=0.5, alpha=-2.0), N("L", "mul", "y", "y"))
case("addmm-bias-row", {**MATS, "c": normal(3, seed=104)}, N("y", "addmm", "c", "a", "b"))
case("addmm-beta-0", MATS, N("y", "addmm", "c", "a", "b", beta=0.0))
case("addmv", {"c": normal(2, seed=105), "m": normal(2, 4, seed=106), "v": normal(4, seed=107)},
     N("y", "addmv", "c", "m", "v", alpha=1.5))
case("addr", {"c": normal(3, 4, seed=108), "u": normal(3, seed=109), "v": normal(4, seed=110)},
     N("y", "addr", "c", "u", "v", beta=2.0))
BATCH = {"c": normal(2, 3, 5, seed=111), "a": normal(2, 3, 4, seed=112), "b": normal(2, 4, 5, seed=113)}
case("baddbmm", BATCH, N("y", "baddbmm", "c", "a", "b", beta=0.25, alpha=0.5), N("L", "mul", "y", "y"))
case("baddbmm-broadcast-input", {**BATCH, "c": normal(5, seed=114)}, N("y", "baddbmm", "c", "a", "b"))
case("addbmm", {**BATCH, "c": normal(3, 5, seed=115)}, N("y", "addbmm", "c", "a", "b", alpha=-1.0))

# cross_entropy of class probabilities: (N, C), (C,), (N, C, d), label smoothing, class weights, each reduction; the
# target gets a gradient too (a teacher's softmax that is not detached).
PROBS = {"x": normal(4, 5, seed=116, std=2.0), "p": {"shape": [4, 5], "init": "uniform", "low": 0.0, "high": 1.0, "seed": 117}}
case("cross_entropy_probs", PROBS, N("y", "cross_entropy_probs", "x", "p"))
case("cross_entropy_probs-sum-smoothing", PROBS, N("y", "cross_entropy_probs", "x", "p", reduction="sum", label_smoothing=0.2))
case("cross_entropy_probs-none-weight", {**PROBS, "w": {"shape": [5], "init": "uniform", "low": 0.5, "high": 2.0, "seed": 118,
                                                      "requires_grad": False}},
     N("y", "cross_entropy_probs", "x", "p", "w", reduction="none"), N("L", "mul", "y", "y"))
case("cross_entropy_probs-1d", {"x": normal(5, seed=119), "p": normal(5, seed=120)}, N("y", "cross_entropy_probs", "x", "p"))
case("cross_entropy_probs-spatial", {"x": normal(2, 3, 4, seed=121), "t": normal(2, 3, 4, seed=122)},
     N("p", "softmax", "t", dim=1), N("y", "cross_entropy_probs", "x", "p", label_smoothing=0.1))

# binary cross entropy with element weights (broadcast) and, of logits, positive-class weights (a weight left out
# before a pos_weight is the number 1.0, as a program's call fills it in).
BIN = {"x": normal(5, 3, seed=123, std=2.0), "y": {"shape": [5, 3], "init": "uniform", "low": 0.0, "high": 1.0, "seed": 124}}
W = {"w": {"shape": [5, 1], "init": "uniform", "low": 0.2, "high": 2.0, "seed": 125, "requires_grad": False},
     "pw": {"shape": [3], "init": "uniform", "low": 0.5, "high": 4.0, "seed": 126, "requires_grad": False}}
case("bce_logits-pos_weight", {**BIN, **W}, N("L", "binary_cross_entropy_with_logits", "x", "y", 1.0, "pw"))
case("bce_logits-weight-pos_weight-sum", {**BIN, **W},
     N("L", "binary_cross_entropy_with_logits", "x", "y", "w", "pw", reduction="sum"))
case("bce_logits-weight-none", {**BIN, **W}, N("l", "binary_cross_entropy_with_logits", "x", "y", "w", reduction="none"),
     N("L", "mul", "l", "l"))
case("bce-weight", {**BIN, **W}, N("p", "sigmoid", "x"), N("L", "binary_cross_entropy", "p", "y", "w"))

# at::norm (what torch's composites call): as norm, over a dim, all dims, p=1 and inf.
case("at_norm-dim", {"x": normal(3, 4, seed=127)}, N("y", "at_norm", "x", p=2.0, dim=1, keepdim=True))
case("at_norm-all-p1", {"x": normal(3, 4, seed=128)}, N("y", "at_norm", "x", p=1.0))
case("at_norm-inf", {"x": normal(2, 5, seed=129)}, N("y", "at_norm", "x", p=float("inf"), dim=[1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("inputs", "nodes", "kw"), CASES)
def test_op(inputs: dict[str, Any], nodes: list[dict[str, Any]], kw: dict[str, Any], dtype: str) -> None:
    check(inputs, nodes, dtype, **kw)


@pytest.mark.parametrize(("inputs", "node", "words"), [
    ({"x": normal(2, 5)}, N("y", "glu", "x"), "halving dimension must be even"),
    ({"x": normal(2, 4)}, N("y", "glu", "x", dim=2), "out of range"),
    ({"x": normal(2, 4)}, N("y", "rms_norm", "x", normalized_shape=[3]), "normalized_shape=[3]"),
    ({"x": normal(2, 4)}, N("y", "rms_norm", "x", normalized_shape=4), "must be a tuple of ints, not int"),
    ({"x": normal(2, 4), "w": normal(3)}, N("y", "rms_norm", "x", "w", normalized_shape=[4]), "weight shape [3]"),
    ({"c": normal(2, 3), "a": normal(2, 4), "b": normal(3, 3)}, N("y", "addmm", "c", "a", "b"), "cannot be multiplied"),
    ({"c": normal(4, 3), "a": normal(2, 4), "b": normal(4, 3)}, N("y", "addmm", "c", "a", "b"), "does not broadcast"),
    ({"c": normal(2), "a": normal(2, 4, 1), "b": normal(4)}, N("y", "addmv", "c", "a", "b"), "must be 2-D"),
    ({"c": normal(3, 5), "a": normal(2, 3, 4), "b": normal(3, 4, 5)}, N("y", "addbmm", "c", "a", "b"), "batch2"),
    ({"x": normal(4, 5), "p": normal(4)}, N("y", "cross_entropy_probs", "x", "p"), "must have the input's shape [4, 5]"),
    ({"x": normal(4, 5), "p": {"shape": [4, 5], "init": "randint", "low": 0, "high": 2, "dtype": "int64"}},
     N("y", "cross_entropy_probs", "x", "p"), "this op needs floating point tensors"),
    ({"x": normal(5, 3), "t": normal(5, 3), "w": {**normal(3, 3), "requires_grad": False}},
     N("y", "binary_cross_entropy_with_logits", "x", "t", "w"), "does not broadcast"),
    ({"x": normal(5, 3), "t": normal(5, 3), "w": normal(3)}, N("y", "binary_cross_entropy_with_logits", "x", "t", "w"),
     "not differentiable with respect to 'weight', and 'w' requires grad"),
    ({"x": normal(5, 3), "t": {"value": [0, 1, 2, 0, 1], "dtype": "int64"}, "w": normal(3)},
     N("y", "cross_entropy", "x", "t", "w"), "not differentiable with respect to 'weight'"),
    ({"x": normal(5, 3), "t": normal(5, 3), "pw": normal(3)}, N("y", "binary_cross_entropy_with_logits", "x", "t", 2.0, "pw"),
     "must be a tensor"),
])
def test_errors_name_the_node(inputs: dict[str, Any], node: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(inputs=inputs, nodes=[node]))
    assert info.value.node == "y" and words in str(info.value), str(info.value)


LLAMA_BLOCK = """
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class FeedForward(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm = nn.RMSNorm(d, eps=1e-6)
        self.up = nn.Linear(d, 4 * d, bias=False)
        self.glu = nn.GLU(dim=-1)
        self.down = nn.Linear(2 * d, d, bias=False)

    def forward(self, x):
        return x + self.down(self.glu(self.up(self.norm(x))))


ff = FeedForward(6)
x = torch.randn(2, 3, 6, requires_grad=True)
y = ff(x)
h = F.rms_norm(y, (6,))
loss = (h * torch.arange(6.0)).sum()
loss.backward()
"""


def test_rms_norm_and_glu_modules_match_torch(tmp_path: Path) -> None:
    """nn.RMSNorm (its weight named ff.norm.weight), nn.GLU and F.rms_norm with torch's default eps: torch's numbers,
    and the grad_fn names torch's CPU run records (rms_norm runs as separate ops there: the last is a MulBackward0)."""
    t = traced(LLAMA_BLOCK, engines=["torch", "reference", "numeric"])
    g = in_torch(LLAMA_BLOCK, tmp_path)
    same_as_torch(t, g, ["x", "y", "h", "loss", "ff"])
    assert t.result.comparison.verdict == "agree"
    fns = {name: n.grad_fn for name, n in t.result.nodes.items()}
    assert fns["ff.norm.out"] == type(g["ff"].norm(g["x"]).grad_fn).__name__ == "MulBackward0"
    assert fns["ff.glu.out"] == "GluBackward0"
    assert fns["h"] == type(g["h"].grad_fn).__name__
    assert t.result.nodes["ff.norm.weight"].is_leaf


ADDMM = """
import torch

torch.manual_seed(0)
bias = torch.randn(3, requires_grad=True)
A = torch.randn(2, 4, requires_grad=True)
B = torch.randn(4, 3, requires_grad=True)
y = torch.addmm(bias, A, B, beta=0.5, alpha=2.0)
z = bias.addmm(A, B)
M = torch.randn(5, 2, 4, requires_grad=True)
N = torch.randn(5, 4, 3, requires_grad=True)
w = torch.baddbmm(torch.zeros(5, 2, 3), M, N, alpha=0.5)
s = torch.addbmm(y, M, N)
v = torch.addmv(bias[:2], A, torch.randn(4))
r = torch.addr(A, torch.randn(2), torch.randn(4), alpha=3.0)
loss = y.sum() + z.pow(2).sum() + w.pow(2).sum() + s.sin().sum() + v.prod() + r.tanh().sum()
loss.backward()
"""


def test_addmm_family_matches_torch(tmp_path: Path) -> None:
    """Functions and methods, keyword beta/alpha: torch's values, grads and grad_fn names."""
    t = traced(ADDMM)
    g = in_torch(ADDMM, tmp_path)
    same_as_torch(t, g, ["bias", "A", "B", "M", "N", "y", "z", "w", "s", "v", "r", "loss"])
    fns = {name: n.grad_fn for name, n in t.result.nodes.items()}
    for name in ("y", "z", "w", "s", "v", "r"):
        assert fns[name] == type(g[name].grad_fn).__name__, name
    assert [fns[k] for k in ("y", "w", "s", "v", "r")] == ["AddmmBackward0", "BaddbmmBackward0", "AddbmmBackward0",
                                                          "AddmvBackward0", "AddrBackward0"]


def test_rms_norm_default_eps_is_the_dtypes_epsilon() -> None:
    """eps None: float32's epsilon in a float32 program, float64's in a float64 one (values near 0 show it)."""
    for dtype, eps in (("float32", np.finfo(np.float32).eps), ("float64", np.finfo(np.float64).eps)):
        t = traced("import torch\nimport torch.nn.functional as F\nx = torch.full((4,), 1e-4, requires_grad=True)\n"
                   "y = F.rms_norm(x, [4])\ny.sum().backward()\n", dtype=dtype)
        want = 1e-4 / np.sqrt(1e-8 + eps)
        np.testing.assert_allclose(t.arrays["torch/value/y"], want, rtol=1e-5)
        np.testing.assert_allclose(t.arrays["reference/value/y"], want, rtol=1e-5)


def test_rms_norm_and_glu_layers_in_a_model_spec() -> None:
    """The layer types rms_norm and glu in a model spec: torch's nn.RMSNorm weight (ones), named as the state_dict,
    and all three engines agree."""
    from services.trace import trace

    spec = TraceSpec.model_validate({
        "inputs": {"x": {"shape": [4, 6], "init": "normal", "seed": 3}}, "dtype": "float64",
        "engines": ["torch", "reference", "numeric"],
        "model": {"input": "x", "layers": [{"type": "linear", "name": "fc", "in_features": 6, "out_features": 8},
                                            {"type": "glu", "name": "gate"},
                                            {"type": "rms_norm", "name": "norm", "normalized_shape": 4, "eps": 1e-6},
                                            {"type": "tanh"}],
                  "loss": {"type": "mean"}},
    })
    t = trace(spec)
    assert t.result.comparison.verdict == "agree" and "numeric" in t.result.engines
    assert {"fc.weight", "norm.weight"} <= set(t.result.parameters)
    np.testing.assert_array_equal(t.arrays["torch/value/norm.weight"], np.ones(4))
    assert t.result.nodes["gate.out"].shape == [4, 4] and t.result.nodes["gate.out"].grad_fn == "GluBackward0"


SOFT_TARGETS = """
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(4, 5, requires_grad=True)
y = torch.randint(0, 5, (4,))
lam = 0.7
perm = torch.randperm(4)
soft = lam * F.one_hot(y, 5).float() + (1 - lam) * F.one_hot(y[perm], 5).float()
l1 = F.cross_entropy(x, soft)
l2 = nn.CrossEntropyLoss(label_smoothing=0.1)(x * 2, soft)
t = torch.randn(4, 5, requires_grad=True)
l3 = F.cross_entropy(x, target=F.softmax(t, dim=1), reduction="sum", weight=torch.rand(5))
img = torch.randn(2, 3, 4, 4, requires_grad=True)
l4 = F.cross_entropy(img, torch.softmax(torch.randn(2, 3, 4, 4), 1), reduction="none").sum()
l5 = F.cross_entropy(x, y)
loss = l1 + l2 + l3 + l4 + l5
loss.backward()
"""


def test_cross_entropy_of_probabilities_matches_torch(tmp_path: Path) -> None:
    """Mixup's soft labels, nn.CrossEntropyLoss with label smoothing, a teacher's softmax (its logits get a grad),
    weights, per-pixel probabilities: torch's numbers and grad_fn names; class indices still take cross_entropy."""
    t = traced(SOFT_TARGETS)
    g = in_torch(SOFT_TARGETS, tmp_path)
    same_as_torch(t, g, ["x", "t", "img", "l1", "l2", "l3", "l4", "l5", "loss"])
    nodes = t.result.nodes
    assert [nodes[k].op for k in ("l1", "l2", "l3", "l5")] == ["cross_entropy_probs"] * 3 + ["cross_entropy"]
    for k in ("l1", "l2", "l3", "l5"):
        assert nodes[k].grad_fn == type(g[k].grad_fn).__name__, k
    assert t.result.comparison.verdict == "agree"


WEIGHTED_BCE = """
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(6, 3, requires_grad=True)
t = (torch.rand(6, 3) > 0.7).float()
pw = torch.tensor([1.0, 3.0, 0.5])
w = torch.rand(6, 1)
l1 = nn.BCEWithLogitsLoss(pos_weight=pw)(x, t)
l2 = F.binary_cross_entropy_with_logits(x * 2, t, w, pos_weight=pw, reduction="sum")
l3 = nn.BCELoss(weight=w)(torch.sigmoid(x), t)
l4 = F.binary_cross_entropy(torch.sigmoid(x), t, weight=torch.rand(3), reduction="none").mean()
l5 = nn.BCEWithLogitsLoss(weight=torch.rand(3))(x, t)
loss = l1 + l2 + l3 + l4 + l5
loss.backward()
"""


def test_binary_cross_entropy_weights_match_torch(tmp_path: Path) -> None:
    """nn.BCEWithLogitsLoss(pos_weight=...) (imbalanced classes), weight= on both losses, functional and module forms:
    torch's numbers and grad_fn names."""
    t = traced(WEIGHTED_BCE)
    g = in_torch(WEIGHTED_BCE, tmp_path)
    same_as_torch(t, g, ["x", "l1", "l2", "l3", "l4", "l5", "loss"])
    for k in ("l1", "l2", "l3", "l5"):
        assert t.result.nodes[k].grad_fn == type(g[k].grad_fn).__name__, k
    assert t.result.comparison.verdict == "agree"


def test_cross_entropy_arguments_run_in_python_s_order(tmp_path: Path) -> None:
    """F.cross_entropy's arguments are evaluated once each, left to right, as Python does: a dropout in the input draws
    before the target's randint and the weight's rand (torch's numbers), and no argument makes two nodes."""
    program = """
import torch
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(4, 3, requires_grad=True)
loss = F.cross_entropy(F.dropout(x, 0.5), torch.randint(0, 3, (4,)), weight=torch.rand(3) + 0.5)
soft = F.cross_entropy(F.dropout(x, 0.5), torch.rand(4, 3).softmax(-1), label_smoothing=0.1)
total = loss + soft
total.backward()
"""
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "loss", "soft", "total"])
    ops = [n.op for n in t.result.nodes.values()]
    assert (ops.count("dropout"), ops.count("add"), ops.count("softmax"), ops.count("input")) == (2, 2, 1, 6)
    assert t.result.nodes["loss"].op == "cross_entropy" and t.result.nodes["soft"].op == "cross_entropy_probs"


GQA = """
import torch
import torch.nn.functional as F

torch.manual_seed(0)
B, T, Hq, Hkv, D = 2, 5, 4, 2, 8
q = torch.randn(B, T, Hq, D, requires_grad=True)
k = torch.randn(B, T, Hkv, D, requires_grad=True)
v = torch.randn(B, T, Hkv, D, requires_grad=True)
o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, enable_gqa=True)
y = F.dropout(o, 0.1)
m = torch.rand(T, T) > 0.3
o2 = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=m, enable_gqa=True)
o3 = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=0.1, is_causal=True,
                                    enable_gqa=True)
loss = (y * y).sum() + o2.sin().sum() + o3.tanh().sum()
loss.backward()
"""


def test_grouped_query_attention_matches_torch(tmp_path: Path) -> None:
    """F.scaled_dot_product_attention(..., enable_gqa=True) (Llama 3's grouped heads): torch's numbers; the result has
    the query's memory layout as torch's CPU flash kernel gives it, so a dropout on it draws torch's mask; with
    dropout_p, torch's math step by step (each key/value head repeated for its group, then the weights' dropout)."""
    t = traced(GQA)
    same_as_torch(t, in_torch(GQA, tmp_path), ["q", "k", "v", "o", "y", "o2", "o3", "loss"])
    assert t.result.comparison.verdict == "agree"


METRIC_LOSSES = """
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
emb = nn.Linear(6, 4)
x = torch.randn(3, 6)
a, p, n = emb(x), emb(x + 0.1), emb(-x)
l1 = nn.TripletMarginLoss(margin=0.3, swap=True)(a, p, n)
l2 = F.triplet_margin_loss(a, p, n, p=1, reduction="sum")
d = nn.PairwiseDistance(p=1.0)(a, p)
d2 = F.pairwise_distance(a, n, keepdim=True)
r = nn.MarginRankingLoss(margin=0.1, reduction="sum")(a[:, 0], p[:, 0], torch.tensor([1.0, -1.0, 1.0]))
r2 = F.margin_ranking_loss(a[:, 1], n[:, 1], torch.tensor([-1.0, 1.0, 1.0]))
loss = l1 + l2 + d.mean() + d2.sum() + r + r2
loss.backward()
"""


def test_metric_learning_losses_match_torch(tmp_path: Path) -> None:
    """Triplet margin loss (swap, p=1, reductions), pairwise distance and margin ranking loss, as functions and
    modules: torch composes them of other ops, and so does gradtrace (the same grad_fns), with torch's numbers."""
    t = traced(METRIC_LOSSES)
    g = in_torch(METRIC_LOSSES, tmp_path)
    same_as_torch(t, g, ["emb", "l1", "l2", "d", "d2", "r", "r2", "loss"])
    for k in ("l1", "l2", "d", "d2", "r", "r2"):
        assert t.result.nodes[k].grad_fn == type(g[k].grad_fn).__name__, k
    assert t.result.comparison.verdict == "agree"


def test_probability_targets_weight_grad_promotion_and_ignore_index(tmp_path: Path) -> None:
    """Class weights that require grad get torch's gradient (its composite differentiates them), a float64 target
    promotes the loss to float64 as torch's, ignore_index=-100 (torch's default) is accepted and another refused."""
    program = """
import torch
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(4, 3, requires_grad=True)
w = torch.rand(3, requires_grad=True)
l = F.cross_entropy(x, torch.softmax(torch.randn(4, 3), 1), weight=w, label_smoothing=0.1, ignore_index=-100)
l2 = F.cross_entropy(x, torch.softmax(torch.randn(4, 3), 1).double())
loss = l + l2
loss.backward()
"""
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "w", "l", "l2", "loss"])
    assert t.result.nodes["l2"].dtype == "float64" and t.result.comparison.verdict == "agree"
    with pytest.raises(SpecError, match="ignore_index is not supported for floating point target"):
        compile_spec(TraceSpec(program=program.replace("ignore_index=-100", "ignore_index=2")))


MIXED_BCE = """
import torch
import torch.nn.functional as F
torch.manual_seed(0)
x = torch.randn(4, dtype=torch.float64, requires_grad=True)
t = torch.rand(4)
a = F.binary_cross_entropy_with_logits(x, t)
x2 = torch.randn(4, requires_grad=True)
t2 = torch.rand(4, dtype=torch.float64, requires_grad=True)
w = torch.rand(4, dtype=torch.float64)
b = F.binary_cross_entropy_with_logits(x2, t2, pos_weight=w)
p = torch.sigmoid(torch.randn(4, requires_grad=True))
c = F.binary_cross_entropy(p, torch.rand(4), weight=w)
loss = a + b + c
loss.backward()
"""


def test_binary_cross_entropy_with_mixed_float_dtypes_as_torch(tmp_path: Path) -> None:
    """With logits the loss takes the target's dtype (torch multiplies into (1 - target) in place): float64 logits
    and a float32 target give a float32 loss, a float64 grad; a float64 weight leaves a float32 loss float32.
    Probabilities and a target of another dtype are refused, as torch refuses them."""
    t = traced(MIXED_BCE)
    g = in_torch(MIXED_BCE, tmp_path)
    same_as_torch(t, g, ["x", "t", "a", "x2", "t2", "b", "c", "loss"])
    assert [t.result.nodes[k].dtype for k in ("a", "b", "c")] == ["float32", "float64", "float32"]
    assert t.result.comparison.verdict == "agree"
    with pytest.raises(SpecError, match="found dtype float64 for target but expected float32"):
        compile_spec(TraceSpec(program="import torch\nimport torch.nn.functional as F\np = torch.rand(3, requires_grad=True)\n"
                                       "F.binary_cross_entropy(p, torch.rand(3, dtype=torch.float64)).backward()\n"))
