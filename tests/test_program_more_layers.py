"""Layers and functions that pasted tutorial code uses and gradtrace once refused, each traced against real torch:
the numbers, names and grad_fn torch gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_program_pytorch import in_torch, same_as_torch, traced

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"


def test_adaptive_max_pooling_as_text_cnns_and_detectors_write_it(tmp_path: Path) -> None:
    """nn.AdaptiveMaxPool2d / 1d and F.adaptive_max_pool2d / 1d (windows that overlap, ties in a row of numbers):
    torch's values and gradients, grad_fn AdaptiveMaxPool2DBackward0 (the 1-d ones are the 2-d pool between an
    unsqueeze and a squeeze, as torch runs them)."""
    program = (HEAD + "x = torch.randn(2, 3, 7, 5, requires_grad=True)\n"
               "s = torch.tensor([[[1., 3., 3., 2., 5., 5.]]], requires_grad=True)\n"
               "y = nn.AdaptiveMaxPool2d((3, 2))(x)\nz = F.adaptive_max_pool2d(x, 1).flatten(1)\n"
               "w = nn.AdaptiveMaxPool1d(4)(s)\nv = F.adaptive_max_pool1d(s, 1)\n"
               "loss = (y * y).sum() + z.sum() * 2 + (w * torch.arange(4.)).sum() + v.sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "s", "y", "z", "w", "v", "loss"], exact=True)
    assert t.result.nodes["y"].grad_fn == type(g["y"].grad_fn).__name__ == "AdaptiveMaxPool2DBackward0"


def test_prelu_as_vision_code_writes_it(tmp_path: Path) -> None:
    """nn.PReLU(channels) after a conv and nn.PReLU() after a linear layer in an nn.Sequential, F.prelu, torch.prelu and
    Tensor.prelu: torch's numbers, the weights named net.1.weight and net.4.weight with torch's grads (PreluKernelBackward0)."""
    program = (HEAD + "net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.PReLU(4), nn.Flatten(), nn.Linear(16, 3), nn.PReLU())\n"
               "x = torch.randn(2, 2, 4, 4)\ny = net(x)\na = torch.randn(5, requires_grad=True)\n"
               "w = torch.tensor([0.1], requires_grad=True)\nb = F.prelu(a, w)\n"
               "c = torch.prelu(a.view(1, 5), torch.full((5,), 0.2, requires_grad=True))\nd = a.prelu(w)\n"
               "loss = y.pow(2).sum() + b.sum() + c.sum() + (d * d).sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["net", "x", "y", "a", "w", "b", "c", "d", "loss"])
    assert {"net.1.weight", "net.4.weight"} <= set(t.result.nodes)
    assert t.result.nodes["y"].grad_fn == type(g["y"].grad_fn).__name__ == "PreluKernelBackward0"


def test_cdist_as_metric_learning_and_kernels_write_it(tmp_path: Path) -> None:
    """torch.cdist with p 2, 1, 3 and inf, 40 points against 30 (torch's matmul form), a batch against a matrix, an RBF
    kernel and a self-distance matrix computed exactly (compute_mode 'donot_use_mm_for_euclid_dist': a zero
    diagonal): torch's values and grads, grad_fn as torch prints it (CdistBackward0; ViewBackward0 over the matmul form)."""
    program = (HEAD + "a = torch.randn(6, 3, requires_grad=True)\nb = torch.randn(4, 3, requires_grad=True)\n"
               "d2 = torch.cdist(a, b)\nd1 = torch.cdist(a, b, p=1)\ndinf = torch.cdist(a, b, p=float('inf'))\n"
               "d3 = torch.cdist(a, b, 3)\nemb = torch.randn(40, 8, requires_grad=True)\ndm = torch.cdist(emb, emb[10:] + 0.5)\n"
               "bat = torch.cdist(a.unsqueeze(0).expand(2, 6, 3), b, compute_mode='use_mm_for_euclid_dist')\n"
               "k = torch.exp(-torch.cdist(a, a, compute_mode='donot_use_mm_for_euclid_dist') ** 2 / 2)\n"
               "loss = d2.sum() + d1.pow(2).sum() + dinf.sum() + d3.sum() + (dm * torch.rand(40, 30)).sum() + bat.sum() + k.sum()\n"
               "loss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["a", "b", "d2", "d1", "dinf", "d3", "emb", "dm", "bat", "k", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("d2", "dm")] == [type(g[k].grad_fn).__name__ for k in ("d2", "dm")] == [
        "CdistBackward0", "ViewBackward0"]
    assert any("cdist with p=2 and more than 25 rows" in n for n in t.result.notes)


def test_cdist_self_distances_in_the_matmul_form_are_noted() -> None:
    """A 40-point self-distance matrix by torch's matmul form: its zero diagonal is rounding noise in torch (~1e-3), and
    in the reference computed alike; the note says so and names the exact compute_mode."""
    t = traced(HEAD + "e = torch.randn(40, 8, requires_grad=True)\nd = torch.cdist(e, e)\nd.sum().backward()\n",
               engines=["torch", "reference"])
    diag = np.diagonal(t.arrays["torch/value/d"])
    assert 0 < np.abs(diag).max() < 0.05
    assert [n for n in t.result.notes if "donot_use_mm_for_euclid_dist" in n]


def test_activation_modules_as_torchvision_and_tutorials_write_them(tmp_path: Path) -> None:
    """nn.Hardswish, Hardsigmoid (torchvision's SqueezeExcitation), Mish, SELU, LogSigmoid, Softsign, Softplus(beta),
    CELU, Hardshrink, Softshrink, Threshold in an nn.Sequential, and F.selu / celu / hardshrink / softshrink /
    threshold at their cuts: torch's numbers and grad_fns."""
    program = (HEAD + "x = torch.randn(4, 6, requires_grad=True)\n"
               "z = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)\n"
               "mods = nn.Sequential(nn.Linear(6, 6), nn.Hardswish(), nn.Linear(6, 6), nn.Hardsigmoid(), nn.Linear(6, 6),\n"
               "                     nn.Mish(), nn.Linear(6, 6), nn.SELU(), nn.Linear(6, 6), nn.LogSigmoid(), nn.Softsign(),\n"
               "                     nn.Softplus(beta=2.0), nn.CELU(0.5), nn.Hardshrink(0.3), nn.Softshrink(), nn.Threshold(0.1, -1.0))\n"
               "y = mods(x)\ns = F.selu(z)\nc = F.celu(z, alpha=2.0)\nh = F.hardshrink(z)\nk = F.softshrink(z, 0.5)\n"
               "r = F.threshold(z, 0.5, 20.0)\nloss = y.pow(2).sum() + (s + c + h + k + r).sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "z", "mods", "y", "s", "c", "h", "k", "r", "loss"])
    assert [t.result.nodes[k].grad_fn for k in "schkr"] == [type(g[k].grad_fn).__name__ for k in "schkr"]


GP_LIKELIHOOD = HEAD + """import math
X = torch.linspace(0, 1, 8).unsqueeze(1)
y = torch.sin(6 * X).squeeze(1) + 0.1 * torch.randn(8)
log_ls = torch.tensor(0.0, requires_grad=True)
log_sf = torch.tensor(0.0, requires_grad=True)
log_sn = torch.tensor(-2.0, requires_grad=True)
d2 = (X - X.T) ** 2
K = log_sf.exp() ** 2 * torch.exp(-0.5 * d2 / log_ls.exp() ** 2) + log_sn.exp() ** 2 * torch.eye(8)
L = torch.linalg.cholesky(K)
alpha = torch.cholesky_solve(y.unsqueeze(1), L)
nll = 0.5 * (y.unsqueeze(1) * alpha).sum() + torch.log(torch.diagonal(L)).sum() + 0.5 * 8 * math.log(2 * math.pi)
v = torch.linalg.solve_triangular(L, y.unsqueeze(1), upper=False)
sign, logabsdet = torch.linalg.slogdet(K)
ld = torch.logdet(K)
L2 = torch.cholesky(K)
U = torch.linalg.cholesky(K, upper=True)
w = torch.linalg.solve_triangular(U, y.unsqueeze(0), upper=True, left=False)
loss = nll + v.pow(2).sum() + logabsdet + ld + L2.sum() + U.sum() + w.sum()
loss.backward()
"""


def test_a_gaussian_process_marginal_likelihood_as_torch(tmp_path: Path) -> None:
    """A GP tutorial's negative log marginal likelihood: cholesky, cholesky_solve, solve_triangular (both sides),
    slogdet, logdet (where over slogdet, as ATen composes it), the deprecated torch.cholesky: torch's numbers, the
    hyperparameters' gradients checked by finite differences, grad_fns as torch prints them. In float64, as GP code
    runs (gpytorch's default): in float32, torch's rounding through the Cholesky factor reaches 1.3e-4 relative on
    log_sf's gradient on some CPUs, past the float32 tolerance."""
    t = traced(GP_LIKELIHOOD, engines=["torch", "reference", "numeric"], dtype="float64")
    assert t.result.comparison.verdict == "agree"
    g = in_torch(GP_LIKELIHOOD, tmp_path, dtype="float64")
    same_as_torch(t, g, ["log_ls", "log_sf", "log_sn", "K", "L", "alpha", "nll", "v", "sign", "logabsdet", "ld", "L2", "U",
                         "w", "loss"])
    keys = ("L", "alpha", "v", "logabsdet", "ld", "L2")
    assert [t.result.nodes[k].grad_fn for k in keys] == [type(g[k].grad_fn).__name__ for k in keys]


STATISTICS = HEAD + """x = torch.randn(4, 5, requires_grad=True)
t = torch.tensor([[1., 3., 3., 2.], [5., 5., 1., 1.], [2., 2., 2., 2.]], requires_grad=True)
v, m = torch.var_mean(x, dim=1)
s, m2 = torch.std_mean(x, dim=0, unbiased=False, keepdim=True)
med = x.median()
mt = t.median()
vals, idx = t.median(dim=1)
mv = torch.median(x, 0).values
a = torch.rand(6, requires_grad=True)
lg = torch.lgamma(a + 0.5) + torch.digamma(a + 0.5) + torch.special.gammaln(a + 1)
lo = torch.logit(a * 0.9 + 0.05) + torch.logit(a, eps=0.1) + torch.erfinv(a * 1.8 - 0.9)
loss = (v * m).sum() + (s * m2).sum() + med + mt + vals.sum() + mv.sum() + lg.sum() + lo.sum()
loss.backward()
"""


def test_statistics_and_special_functions_as_torch(tmp_path: Path) -> None:
    """torch.var_mean / std_mean unpacked (VarMeanBackward0), median of all (ties share the gradient) and along a dim
    with ties (torch's CPU pick: values and indices), lgamma, digamma, gammaln, logit (with eps) and erfinv: torch's
    numbers, indices and grad_fns."""
    t = traced(STATISTICS)
    assert t.result.comparison.verdict == "agree"
    g = in_torch(STATISTICS, tmp_path)
    same_as_torch(t, g, ["x", "t", "v", "m", "s", "m2", "med", "mt", "vals", "idx", "mv", "a", "lg", "lo", "loss"])
    keys = ("v", "m", "s", "med", "vals")
    assert [t.result.nodes[k].grad_fn for k in keys] == [type(g[k].grad_fn).__name__ for k in keys]


DIFFS = HEAD + """x = torch.randn(3, 6, requires_grad=True)
d1 = torch.diff(x)
d2 = x.diff(n=2, dim=1)
d0 = torch.diff(x, dim=0)
dp = torch.diff(x, prepend=torch.zeros(3, 1), append=x[:, :1])
s = torch.randn(10, requires_grad=True)
tv = torch.diff(s).abs().sum()
p = torch.rand(4, 5, requires_grad=True)
t = torch.rand(4, 5)
kd = F.kl_div(F.log_softmax(p, 1), F.softmax(t, 1), size_average=False) / 4
loss = d1.pow(2).sum() + d2.sum() + d0.sum() + dp.pow(2).sum() + tv + kd
loss.backward()
"""


def test_diff_and_a_legacy_kl_div_as_torch(tmp_path: Path) -> None:
    """torch.diff / Tensor.diff (n, dim, prepend, append; a total-variation penalty) as ATen composes it (SubBackward0
    over slices), and RepDistiller's F.kl_div(..., size_average=False) (reduction 'sum', with a note): torch's numbers."""
    t = traced(DIFFS, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(DIFFS, tmp_path), ["x", "d1", "d2", "d0", "dp", "s", "tv", "p", "kd", "loss"])
    assert any("reduction='sum'" in n for n in t.result.notes)


def test_embedding_bag_as_the_torchtext_classification_tutorial_writes_it(tmp_path: Path) -> None:
    """The text classification tutorial's model (nn.EmbeddingBag(vocab, dim) called with `(text, offsets)`, its
    init_weights through .data), a recommender's multi-hot bag with per_sample_weights= and padding_idx, and
    F.embedding_bag in max mode: torch's numbers, parameter names and grads, grad_fn EmbeddingBagBackward0."""
    program = (HEAD + "class TextClassificationModel(nn.Module):\n"
               "    def __init__(self, vocab_size, embed_dim, num_class):\n"
               "        super(TextClassificationModel, self).__init__()\n"
               "        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=False)\n"
               "        self.fc = nn.Linear(embed_dim, num_class)\n        self.init_weights()\n\n"
               "    def init_weights(self):\n        initrange = 0.5\n"
               "        self.embedding.weight.data.uniform_(-initrange, initrange)\n"
               "        self.fc.weight.data.uniform_(-initrange, initrange)\n        self.fc.bias.data.zero_()\n\n"
               "    def forward(self, text, offsets):\n        embedded = self.embedding(text, offsets)\n"
               "        return self.fc(embedded)\n\n\n"
               "model = TextClassificationModel(20, 8, 4)\n"
               "text = torch.tensor([1, 5, 7, 2, 3, 3, 9, 11, 0, 4])\noffsets = torch.tensor([0, 3, 3, 7])\n"
               "predicted_label = model(text, offsets)\n"
               "loss = torch.nn.CrossEntropyLoss()(predicted_label, torch.tensor([0, 2, 1, 3]))\n"
               "bag = nn.EmbeddingBag(10, 3, mode='sum', padding_idx=0)\n"
               "psw = torch.rand(2, 4, requires_grad=True)\n"
               "s = bag(torch.tensor([[1, 0, 3, 3], [9, 2, 0, 0]]), per_sample_weights=psw)\n"
               "mx = F.embedding_bag(text, model.embedding.weight, offsets, mode='max')\n"
               "total = loss + s.pow(2).sum() + mx.sum()\ntotal.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["model", "bag", "psw", "predicted_label", "s", "mx", "total"])
    assert t.result.nodes["s"].grad_fn == type(g["s"].grad_fn).__name__ == "EmbeddingBagBackward0"
    assert np.all(t.arrays["torch/value/bag.weight"][0] == 0)  # padding_idx's row starts at 0, as torch's


def test_embedding_bag_in_a_model_spec_takes_its_offsets_as_a_second_input() -> None:
    """A model spec's embedding_bag layer with `inputs: [ids, offsets]`: torch's init under the model's seed, loss and
    the weight's gradient equal nn.EmbeddingBag's."""
    import torch

    from services.trace import trace
    from shared.spec import TraceSpec

    ids, offs, labels = [1, 5, 2, 2, 0, 3], [0, 2, 2], [0, 1, 1]
    spec = {"inputs": {"ids": {"value": ids, "dtype": "int64"}, "offs": {"value": offs, "dtype": "int64"},
                       "labels": {"value": labels, "dtype": "int64"}},
            "model": {"input": "ids", "layers": [
                {"type": "embedding_bag", "name": "emb", "num_embeddings": 6, "embedding_dim": 4, "mode": "sum",
                 "inputs": ["ids", "offs"]},
                {"type": "linear", "name": "fc", "in_features": 4, "out_features": 2}],
                "loss": {"type": "cross_entropy", "target": "labels"}}}
    t = trace(TraceSpec.model_validate(spec), inline_limit=10**6)
    assert t.result.comparison.verdict == "agree"
    torch.manual_seed(0)
    emb, fc = torch.nn.EmbeddingBag(6, 4, mode="sum"), torch.nn.Linear(4, 2)
    loss = torch.nn.functional.cross_entropy(fc(emb(torch.tensor(ids), torch.tensor(offs))), torch.tensor(labels))
    loss.backward()
    np.testing.assert_allclose(t.arrays["torch/grad/emb.weight"], emb.weight.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(t.arrays["torch/value/loss"], loss.detach().numpy(), rtol=1e-6)


def test_embedding_bag_offsets_known_now_are_checked_at_compile() -> None:
    """offsets that torch refuses (not starting at 0) or turns into garbage gradients (include_last_offset=True with a
    last offset short of the input's length): refused at compile, naming the node and line."""
    import pytest

    from services.compiler import compile_spec
    from services.errors import SpecError
    from shared.spec import TraceSpec

    base = HEAD + "w = torch.randn(10, 3, requires_grad=True)\ni = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9])\n"
    for offsets, last, match in (("[0, 4, 6]", True, "must be the input's length"), ("[1, 4]", False, "has to be 0")):
        program = base + f"out = F.embedding_bag(i, w, torch.tensor({offsets}), include_last_offset={last})\n"
        with pytest.raises(SpecError, match=match) as info:
            compile_spec(TraceSpec(program=program + "out.sum().backward()\n"))
        assert info.value.line == 7


def test_count_and_margin_losses_and_nan_reductions_as_torch(tmp_path: Path) -> None:
    """nn.PoissonNLLLoss / F.poisson_nll_loss (log_input, full's Stirling term), nn.SoftMarginLoss (its own backward),
    nn.MultiLabelSoftMarginLoss (class weights), torch.nansum / nanmean and the method: torch's numbers and grad_fns,
    composed of the ops torch composes them of."""
    program = (HEAD + "x = torch.randn(6, 4, requires_grad=True)\n"
               "counts = torch.tensor([[0., 1., 3., 2.], [5., 0., 1., 1.], [2., 2., 0., 7.], [1., 0., 0., 1.], "
               "[3., 4., 1., 0.], [0., 0., 2., 9.]])\n"
               "y = torch.tensor([[1., -1., 1., 1.], [-1., -1., 1., -1.], [1., 1., 1., -1.], [-1., 1., -1., 1.], "
               "[1., 1., -1., -1.], [1., -1., 1., 1.]])\nlabels = (y > 0).float()\n"
               "l1 = nn.PoissonNLLLoss()(x, counts)\nl2 = F.poisson_nll_loss(x, counts, full=True, reduction='sum')\n"
               "l3 = F.poisson_nll_loss(x.exp(), counts, log_input=False, reduction='none')\n"
               "l4 = nn.SoftMarginLoss()(x, y)\nl5 = F.soft_margin_loss(x * 3, y, reduction='sum')\n"
               "l6 = nn.MultiLabelSoftMarginLoss(weight=torch.tensor([1.0, 2.0, 0.5, 1.0]))(x, labels)\n"
               "l7 = F.multilabel_soft_margin_loss(x, labels, reduction='none')\n"
               "xn = torch.where(labels > 0, x, torch.full_like(x, float('nan')))\n"
               "m1 = torch.nanmean(xn, dim=1)\nm2 = xn.nanmean()\ns1 = torch.nansum(xn, 0, keepdim=True)\n"
               "loss = l1 + l2 + l3.mean() + l4 + l5 + l6 + l7.sum() + m1.sum() + m2 + s1.sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    names = ["x", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "m1", "m2", "s1", "loss"]
    same_as_torch(t, g, names)
    for name in names[1:]:
        assert t.result.nodes[name].grad_fn == type(g[name].grad_fn).__name__, name
