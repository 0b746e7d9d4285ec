"""d2l.ai's PyTorch code as pasted. Lazy modules as d2l writes its models (nn.LazyLinear(10), nn.LazyConv2d(6, 5)): the first call reads the input
size off its input and draws the parameters then, in the program's order of draws; and a write into a leaf after an
operation read it (d2l's dummy forward, then its init) keeps the earlier value for that operation (`w@0`).
Every value and grad is compared with real torch running the same text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

D2L_LENET = """
import torch
from torch import nn
from torch.nn import functional as F

torch.manual_seed(1)


def init_cnn(module):
    if type(module) == nn.Linear or type(module) == nn.Conv2d:
        nn.init.xavier_uniform_(module.weight)


class LeNet(nn.Module):
    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(
            nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.LazyLinear(120), nn.Sigmoid(),
            nn.LazyLinear(84), nn.Sigmoid(),
            nn.LazyLinear(num_classes))

    def forward(self, X):
        return self.net(X)

    def apply_init(self, inputs, init=None):
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)


model = LeNet()
model.apply_init([torch.randn(1, 1, 28, 28)], init_cnn)
X = torch.randn(2, 1, 28, 28)
y = torch.tensor([1, 2])
loss = F.cross_entropy(model(X), y)
loss.backward()
"""


def test_d2l_lenet_with_lazy_modules_and_init_after_a_dummy_forward_equals_torch(tmp_path: Path) -> None:
    t = traced(D2L_LENET)
    g = in_torch(D2L_LENET, tmp_path)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, g, ["model", "X", "loss"])
    # parameters under torch's names; the values the dummy forward read are their own leaves, with no grad
    assert sorted(t.result.parameters) == sorted(f"model.{k}" for k, _ in g["model"].named_parameters())
    assert t.result.nodes["model.net.0.weight@0"].grad is None
    assert t.result.nodes["model.net.0.weight"].grad is not None


@pytest.mark.parametrize("program", [
    # draws at the first call: X is drawn before the layers' weights
    "net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(1))\nX = torch.rand(size=(2, 4))\n"
    "out = net(X)\nout.sum().backward()\n",
    # a module called twice draws once; BatchNorm reads num_features; Flatten first
    "m = nn.Sequential(nn.Flatten(), nn.LazyLinear(6), nn.LazyBatchNorm1d(), nn.ReLU(), nn.LazyLinear(3))\n"
    "a = torch.randn(4, 2, 3)\nb = m(a)\nc = m(a * 2)\nloss = (b - c).pow(2).mean() + b.sum()\nloss.backward()\n",
    # 1-d convolutions and transposed ones, unbatched input
    "conv = nn.LazyConv1d(4, 3)\na = torch.randn(2, 3, 8)\nb = conv(a)\nup = nn.LazyConvTranspose2d(2, 2, stride=2)\n"
    "c = torch.randn(3, 4, 4, requires_grad=True)\nd = up(c)\nloss = b.sum() + (d * d).mean()\nloss.backward()\n",
    # a copy before the first call draws its own parameters at its own first call
    "import copy\nlin = nn.LazyLinear(3)\ntwin = copy.deepcopy(lin)\nx = torch.randn(2, 5)\ny = lin(x)\nz = twin(x)\n"
    "loss = (y - z).pow(2).sum()\nloss.backward()\n",
    # isinstance / type / hasattr as torch answers them before and after the first call
    "lin = nn.LazyLinear(3, bias=False)\nassert isinstance(lin, nn.Linear) and type(lin) == nn.LazyLinear\n"
    "assert hasattr(lin, 'weight') and lin.out_features == 3\nx = torch.randn(2, 5)\ny = lin(x)\n"
    "assert type(lin) == nn.Linear and not isinstance(lin, nn.LazyLinear) and lin.in_features == 5\n"
    "y.sum().backward()\n",
])
def test_lazy_modules_equal_torch(program: str, tmp_path: Path) -> None:
    program = "import torch\nfrom torch import nn\ntorch.manual_seed(0)\n" + program
    t = traced(program)
    g = in_torch(program, tmp_path)
    names = [k for k, v in g.items() if not k.startswith("_") and hasattr(v, "requires_grad") or hasattr(v, "named_parameters")]
    same_as_torch(t, g, names)
    assert t.result.comparison.verdict == "agree"


@pytest.mark.parametrize(("program", "needle"), [
    ("lin = nn.LazyLinear(3)\nnn.init.zeros_(lin.weight)\n", "lin.weight: an nn.LazyLinear makes its parameters"),
    ("lin = nn.LazyLinear(3, in_features=4)\n", "nn.LazyLinear takes no in_features"),
    ("conv = nn.LazyConv2d(4, 3, groups=2)\ny = conv(torch.randn(1, 3, 5, 5))\n", "must be divisible by groups"),
    ("conv = nn.LazyConv2d(4, 3)\ny = conv(torch.randn(5, 5))\n", "expected 3D (unbatched) or 4D (batched) input"),
    ("conv = nn.LazyConv2d(4)\n", "nn.LazyConv2d: the argument 'kernel_size' is required"),
    ("net = nn.Sequential(nn.LazyLinear(4), nn.ReLU())\nfor p in net[0].parameters():\n    p.requires_grad = False\n",
     "makes its parameters at its first call: read, count or freeze them after it"),
])
def test_lazy_modules_refused_as_torch_fails(program: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program="import torch\nfrom torch import nn\n" + program))
    assert needle in str(info.value), str(info.value)


def test_a_leaf_written_after_a_use_keeps_the_earlier_value_for_that_use(tmp_path: Path) -> None:
    """W was computed from base before base changed (torch saw the old values); W's value and grad are torch's."""
    program = ("import torch\ntorch.manual_seed(0)\nbase = torch.randn(3)\nW = base * 2\nwith torch.no_grad():\n"
               "    base += 1\nW.requires_grad_()\nv = base * W\nv.sum().backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["base", "W", "v"])
    np.testing.assert_allclose(t.arrays["torch/value/base@0"], g["base"].numpy() - 1, rtol=1e-6)


def test_a_write_into_a_leaf_that_backward_reaches_through_an_earlier_use_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program="import torch\nfrom torch import nn\nlin = nn.Linear(2, 2)\nx = torch.ones(1, 2)\n"
                                       "y = lin(x)\nnn.init.zeros_(lin.weight)\n(y + lin(x)).sum().backward()\n"))
    assert "'lin.weight' is written after an operation used it (line 6), and backward() reaches that operation" in str(info.value)


D2L_BATCH_NORM = """
import torch
from torch import nn
torch.manual_seed(0)


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if not torch.is_grad_enabled():
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            mean = X.mean(dim=(0, 2, 3), keepdim=True)
            var = ((X - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        X_hat = (X - mean) / torch.sqrt(var + eps)
        moving_mean = (1.0 - momentum) * moving_mean + momentum * mean
        moving_var = (1.0 - momentum) * moving_var + momentum * var
    Y = gamma * X_hat + beta
    return Y, moving_mean.data, moving_var.data


class BatchNorm(nn.Module):
    def __init__(self, num_features, num_dims):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)

    def forward(self, X):
        if self.moving_mean.device != X.device:
            self.moving_mean = self.moving_mean.to(X.device)
            self.moving_var = self.moving_var.to(X.device)
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var, eps=1e-5, momentum=0.1)
        return Y


net = nn.Sequential(nn.LazyConv2d(6, kernel_size=5), BatchNorm(6, num_dims=4), nn.Sigmoid(),
                    nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(), nn.LazyLinear(10))
X = torch.randn(2, 1, 12, 12)
with torch.no_grad():
    warm = net(X)
loss = net(X).pow(2).sum()
loss.backward()
"""


def test_d2l_batch_norm_from_scratch_tests_torch_is_grad_enabled(tmp_path: Path) -> None:
    """The no_grad call takes the moving statistics' branch (torch.is_grad_enabled() is False there), the training
    call the batch's: every value and grad is torch's."""
    t = traced(D2L_BATCH_NORM)
    g = in_torch(D2L_BATCH_NORM, tmp_path)
    same_as_torch(t, g, ["net", "X", "warm", "loss"])
    assert t.result.comparison.verdict == "agree"


def test_d2l_linear_regression_from_scratch_names_what_init_params_returns(tmp_path: Path) -> None:
    """`def init_params(): ... return [w, b]` then `w, b = init_params()`: the leaves are w and b, as the caller
    names them (a list returned, as a tuple is)."""
    program = ("import torch\ntorch.manual_seed(0)\ndef init_params():\n"
               "    w = torch.normal(0, 0.01, size=(3, 1), requires_grad=True)\n    b = torch.zeros(1, requires_grad=True)\n"
               "    return [w, b]\nw, b = init_params()\nX = torch.randn(4, 3)\ny_hat = X @ w + b\n"
               "l = ((y_hat - torch.ones(4, 1)) ** 2 / 2).sum()\nl.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["w", "b", "X", "y_hat", "l"])


def test_d2l_my_sequential_registers_modules_by_index(tmp_path: Path) -> None:
    """d2l 6.1's MySequential: `self.add_module(str(idx), module)` and `for module in self.children()`: parameters
    named net.0.weight as torch names them."""
    program = ("import torch\nfrom torch import nn\n\n\nclass MySequential(nn.Module):\n    def __init__(self, *args):\n"
               "        super().__init__()\n        for idx, module in enumerate(args):\n            self.add_module(str(idx), module)\n\n"
               "    def forward(self, X):\n        for module in self.children():\n            X = module(X)\n        return X\n\n\n"
               "torch.manual_seed(0)\nnet = MySequential(nn.Linear(4, 8), nn.ReLU(), nn.LazyLinear(2))\nX = torch.rand(2, 4)\n"
               "out = net(X)\nout.sum().backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["net", "X", "out"])
    assert sorted(t.result.parameters) == ["net.0.bias", "net.0.weight", "net.2.bias", "net.2.weight"]
