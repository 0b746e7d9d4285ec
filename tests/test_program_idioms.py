"""Idioms from tutorials and notebooks that once traced with other numbers than torch's, or were refused: each
program is run by real torch too (our own test text), and every named tensor's value and grad must match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec


def check(program: str, names: list[str], tmp_path: Path) -> None:
    """Trace the program, run it in torch, and compare the named tensors (values and leaf grads)."""
    t = traced(program)
    assert t.result.comparison.verdict == "agree", [p.failures for p in t.result.comparison.pairs]
    same_as_torch(t, in_torch(program, tmp_path), names)


def refused(program: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program=program))
    return info.value


def test_in_place_arithmetic_by_a_tensor_on_a_tensor_needing_no_grad(tmp_path: Path) -> None:
    """`acc = torch.zeros(4); acc.add_(x[0])` (as `acc += x[0]`) and a buffer's running average under no_grad,
    `self.running_mean.mul_(0.9).add_(m, alpha=0.1)`: the op, in place, as torch runs it (were refused)."""
    program = ("import torch\nimport torch.nn as nn\n\n\nclass Norm(nn.Module):\n    def __init__(self, d):\n"
               "        super().__init__()\n        self.register_buffer('running_mean', torch.zeros(d))\n\n"
               "    def forward(self, x):\n        m = x.mean(0)\n        with torch.no_grad():\n"
               "            self.running_mean.mul_(0.9).add_(m, alpha=0.1)\n        return x - m + self.running_mean\n\n\n"
               "torch.manual_seed(0)\nnorm = Norm(4)\nx = torch.randn(6, 4, requires_grad=True)\nacc = torch.zeros(4)\n"
               "acc.add_(x[0])\nacc.mul_(x[1])\ny = norm(x)\ny2 = norm(x * 2)\nloss = y.pow(2).sum() + y2.sum() + acc.sum()\n"
               "loss.backward()\n")
    check(program, ["x", "acc", "y", "y2", "loss"], tmp_path)


# ---- .data: the same numbers, cut from the graph --------------------------------------------------


@pytest.mark.parametrize("program", [
    "w = torch.randn(3, requires_grad=True)\nx = w.data * 2\nloss = (w * x).sum()\nloss.backward()\n",
    "w = torch.tensor([1.0, 2.0], requires_grad=True)\ntarget = w.data ** 2\nloss = ((w ** 2 - target - 1.0) ** 2).sum()\n"
    "loss.backward()\n",
    "w = torch.tensor(1.0, requires_grad=True)\ny = torch.tensor(2.0, requires_grad=True)\nz = w * y\nz2 = z.data * w\n"
    "z2.backward()\n",
])
def test_data_is_cut_from_the_graph(program: str, tmp_path: Path) -> None:
    """`.data` once stood for the tensor itself: gradients flowed through it (w.grad twice torch's)."""
    check("import torch\ntorch.manual_seed(0)\n" + program, ["w"], tmp_path)


def test_writes_through_data_still_set_the_leaf(tmp_path: Path) -> None:
    program = (
        "import torch\nimport torch.nn as nn\ntorch.manual_seed(1)\nlin = nn.Linear(3, 3)\nw = torch.randn(3, requires_grad=True)\n"
        "u = torch.zeros(3, requires_grad=True)\nwith torch.no_grad():\n    lin.weight.data.fill_(0.5)\n    nn.init.zeros_(lin.bias.data)\n"
        "    w.data.copy_(torch.ones(3))\n    u.data.copy_(w.data)\n    u.data *= 3\n"
        "loss = (lin(w) * w.data + u).sum()\nloss.backward()\n"
    )
    check(program, ["lin", "w", "u", "loss"], tmp_path)


def test_linspace_with_positional_steps(tmp_path: Path) -> None:
    """`torch.linspace(-2, 2, 9)` crashed the compiler (a KeyError: it looked for steps= among the keywords)."""
    program = ("import torch\nx = torch.linspace(-2, 2, 9, requires_grad=True)\ny = torch.where(x > 0, x ** 2, -x)\n"
               "z = torch.clamp(y, min=0.5, max=3.0)\n(z + x.clamp(-1, 1)).sum().backward()\n")
    check(program, ["x", "y", "z"], tmp_path)


# ---- x += ... changes the tensor in place ---------------------------------------------------------


def test_in_place_add_changes_every_name_of_the_tensor(tmp_path: Path) -> None:
    """`b = a; b += 1` changes a as well (torch: one tensor, two names); it once rebound b alone (x.grad [4, 8])."""
    program = ("import torch\nx = torch.tensor([1.0, 2.0], requires_grad=True)\na = x * 2\nb = a\nparts = [a, x]\nb += 1\n"
               "loss = (a * parts[0] * x).sum()\nloss.backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    assert t.result.nodes["x"].grad.data == g["x"].grad.tolist() == [21.0, 65.0]
    same_as_torch(t, g, ["x", "loss"])


def test_accumulating_in_place(tmp_path: Path) -> None:
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(3, requires_grad=True)\nh = x * 2\n"
               "h += torch.randn(3)\nloss = 0\nfor i in range(3):\n    loss += (h * x[i]).sum()\nloss.backward()\n")
    check(program, ["x", "h", "loss"], tmp_path)


@pytest.mark.parametrize(("program", "needles"), [
    ("w = torch.tensor([1.0, 2.0], requires_grad=True)\nw += 1\n(w * w).sum().backward()\n",
     ["leaf tensor that requires grad", "w = w + ..."]),
    ("w = torch.ones(3, requires_grad=True)\nwith torch.no_grad():\n    w -= 0.1 * w\n(w * 2).sum().backward()\n",
     ["in-place update of 'w'", "optimizer's step"]),  # torch allows it under no_grad: a training step is not traced
    ("x = torch.ones(2, 3, requires_grad=True)\ny = x * 2\nr = y[0]\nr += 1\n(y * r).sum().backward()\n",
     ["view of 'y'", "getitem"]),
    ("x = torch.ones(2, 3, requires_grad=True)\ny = x * 2\nv = y.transpose(0, 1)\nv *= 3\n"
     "v.sum().backward()\n", ["view of 'y'"]),
    ("x = torch.ones(3, requires_grad=True)\ny = x * 2\ny += torch.ones(2, 3)\ny.sum().backward()\n",
     ["shape [3]", "[2, 3]"]),
    ("x = torch.ones(3, requires_grad=True)\ni = torch.tensor([1, 2, 3])\ni += x\n(x * 2).sum().backward()\n",
     ["int64"]),
    ("x = torch.ones(3, requires_grad=True)\ny = x * 2\ny += torch.ones(3, dtype=torch.float64)\ny.sum().backward()\n",
     ["float32", "float64"]),
])
def test_in_place_changes_torch_refuses_or_gradtrace_cannot_follow_are_named(program: str, needles: list[str]) -> None:
    e = refused("import torch\n" + program)
    for needle in needles:
        assert needle in str(e), str(e)
    assert e.line is not None


# ---- int64 and bool tensors: casts, shape ops, arithmetic with torch's promotion ---------------------


def test_int_and_bool_tensors_cast_reshape_and_promote_as_in_torch(tmp_path: Path) -> None:
    """Accuracy masks, BCE targets, class indices reshaped for cross_entropy and gather: all once refused
    ("input is int64; this op needs floating point tensors", "a bool tensor; cast it first (.float())")."""
    program = (
        "import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nx = torch.randn(4, 3, requires_grad=True)\n"
        "idx = torch.randint(0, 3, (4,))\nm = (x > 0).float()\ny = torch.randint(0, 2, (4,)).float()\n"
        "g = x.gather(1, idx.unsqueeze(1))\nt = idx.view(2, 2).reshape(-1)\nk = torch.tensor([1, 2, 3])\n"
        "ramp = torch.arange(3) * 0.5 + torch.arange(3) / 2\nshift = (idx + 1) * 2\nhits = (x >= 0.5).sum()\n"
        "loss = F.cross_entropy(x, t) + (g * m[:, :1]).sum() + (x[:, 0] - y).pow(2).mean() + (x * k).sum()"
        " + (x * ramp).sum() + (x[:, 0] * shift).sum() + hits * 0.0\nloss.backward()\n"
    )
    t = traced(program)
    g = in_torch(program, tmp_path)
    want = {"m": "float32", "y": "float32", "t": "int64", "ramp": "float32", "shift": "int64", "hits": "int64",
            "loss": "float32"}
    assert {k: t.result.nodes[k].dtype for k in want} == want == {k: str(g[k].dtype)[6:] for k in want}
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, g, ["x", "m", "y", "g", "t", "ramp", "shift", "hits", "loss"])


def test_backward_of_a_one_element_tensor(tmp_path: Path) -> None:
    """torch's backward() takes any one-element tensor (a micrograd neuron's [1]-shaped output)."""
    program = ("import torch\nx = torch.tensor([2.0], requires_grad=True)\nw = torch.tensor([[-3.0]], requires_grad=True)\n"
               "o = torch.tanh(x @ w + 1.0)\no.backward()\n")
    t = traced(program)
    assert t.result.nodes["o"].shape == [1] and t.result.output == "o"
    same_as_torch(t, in_torch(program, tmp_path), ["x", "w", "o"])


@pytest.mark.parametrize(("program", "needle"), [
    ("k = torch.arange(3) ** torch.arange(3)\n(torch.ones(3, requires_grad=True) * k).sum().backward()\n", "pow of int64"),
    ("k = torch.arange(3) ** -1\n(torch.ones(3, requires_grad=True) * k).sum().backward()\n", "pow of int64"),
    ("x = torch.ones(3, requires_grad=True)\nc = torch.cat([x, torch.arange(3)])\nc.sum().backward()\n",
     "cat of float32 and int64"),
    ("x = torch.ones(3, requires_grad=True)\nm = (x > 0).mean()\n(x * m).sum().backward()\n", "bool tensor"),
])
def test_int_tensors_where_gradtrace_or_torch_refuse(program: str, needle: str) -> None:
    assert needle in str(refused("import torch\n" + program))


# ---- names and methods from notebooks --------------------------------------------------------------


def test_argmax_accuracy_t_clone_and_numpy_argument_names(tmp_path: Path) -> None:
    """`logits.argmax(dim=1)` for accuracy, `W.t()`, `x.clone()`, makemore's `counts.sum(1, keepdims=True)` and
    `sum(axis=...)`: each once an unknown method or argument."""
    program = (
        "import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nlogits = torch.randn(8, 3, requires_grad=True)\n"
        "y = torch.randint(0, 3, (8,))\nW = torch.randn(4, 3, requires_grad=True)\nacc = (logits.argmax(dim=1) == y).float().mean()\n"
        "pick = torch.argmin(logits, 1, keepdim=True)\nh = logits @ W.t()\nc = h.clone()\n"
        "p = c.exp() / c.exp().sum(1, keepdims=True)\nloss = F.cross_entropy(logits, y) + p.sum(axis=0).mean()"
        " + acc * 0.0 + logits.gather(1, pick).sum()\nloss.backward()\n"
    )
    t = traced(program)
    g = in_torch(program, tmp_path)
    assert {k: t.result.nodes[k].grad_fn for k in ("h#1", "c")} == {"h#1": "TBackward0", "c": "CloneBackward0"}
    assert t.result.nodes["pick"].dtype == "int64" and t.result.nodes["acc"].value.data == g["acc"].item()
    same_as_torch(t, g, ["logits", "W", "acc", "pick", "h", "c", "p", "loss"])


# ---- a tensor computed from tensors that require no grad is a leaf: it may be made to require grad ----------


def test_scaled_initialisations_become_leaves_that_require_grad(tmp_path: Path) -> None:
    """`W1 = torch.randn(8, 32) * 0.1; W1.requires_grad_()` (the lectures' scaled init) was refused: "'W1' is not a
    leaf tensor". In torch it is a leaf; its value comes from torch after the draws before it."""
    program = (
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(1337)\nX = torch.randn(16, 8)\n"
        "Y = torch.randint(0, 4, (16,))\nW1 = torch.randn(8, 32) * 0.1\nW1.requires_grad_()\n"
        "b1 = nn.Parameter(torch.zeros(32) + 0.5)\nA = torch.randn(32, 4)\nW2 = (A * 0.2 + 0.01).tanh()\n"
        "W2.requires_grad = True\nb2 = torch.zeros(4, requires_grad=True)\nh = torch.tanh(X @ W1 + b1)\n"
        "logits = h @ W2 + b2 + A.sum()\nloss = F.cross_entropy(logits, Y)\nloss.backward()\n"
    )
    t = traced(program)
    g = in_torch(program, tmp_path)
    for name in ("W1", "b1", "W2", "b2"):
        assert t.result.nodes[name].is_leaf and t.result.nodes[name].requires_grad and g[name].is_leaf
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, g, ["X", "W1", "b1", "A", "W2", "b2", "h", "logits", "loss"])


def test_requires_grad_after_a_use_or_of_a_tensor_with_a_graph_is_refused() -> None:
    e = refused("import torch\nA = torch.randn(3) * 0.1\nC = A * 2\nA.requires_grad_()\n(A * C).sum().backward()\n")
    assert "already used" in str(e) and e.line == 4
    e = refused("import torch\nimport torch.nn as nn\nx = torch.ones(3, requires_grad=True)\np = nn.Parameter(x * 2)\n"
                "(p * x).sum().backward()\n")
    assert "nn.Parameter of a computed tensor that requires grad" in str(e) and e.line == 4


def test_causal_attention_mask_bce_nll_and_one_hot_as_pasted(tmp_path: Path) -> None:
    """nanoGPT's `wei.masked_fill(tril[:T, :T] == 0, float('-inf'))`, logistic regression's BCE losses, makemore's
    one_hot and nll_loss: unknown functions once. A number input of -inf is carried as "-Infinity" (it made the
    whole result unreadable: JSON has no -inf)."""
    program = (
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nT = 4\n"
        "x = torch.randn(2, T, T, requires_grad=True)\ntril = torch.tril(torch.ones(T, T))\n"
        "wei = x.masked_fill(tril[:T, :T] == 0, float('-inf'))\nwei = F.softmax(wei, dim=-1)\nup = x.triu(1).sum()\n"
        "p = torch.sigmoid(torch.randn(5, requires_grad=True))\ny = torch.randint(0, 2, (5,)).float()\n"
        "z = torch.randn(5, requires_grad=True)\nb = F.binary_cross_entropy(p, y) + F.binary_cross_entropy_with_logits(z, y)"
        " + nn.BCEWithLogitsLoss(reduction='sum')(z, y) + nn.BCELoss()(p, y)\n"
        "logp = F.log_softmax(torch.randn(3, 4, requires_grad=True), dim=1)\nt = torch.tensor([0, 3, 1])\n"
        "n = F.nll_loss(logp, t) + nn.NLLLoss(reduction='sum')(logp, t) + F.nll_loss(logp, torch.tensor([0, -100, 1]))"
        " + nn.NLLLoss(ignore_index=3)(logp, t)\noh = F.one_hot(t, num_classes=4).float()\n"
        "inf = x * float('-inf')\nloss = wei.sum() + up + b + n + (oh * logp).sum()\nloss.backward()\n"
    )
    t = traced(program)
    g = in_torch(program, tmp_path)
    assert t.result.nodes["inf"].inputs == ["x", "-Infinity"]
    assert t.result.nodes["oh"].dtype == "float32" and t.result.nodes["oh#1"].dtype == "int64"
    same_as_torch(t, g, ["x", "wei", "up", "p", "z", "b", "logp", "n", "oh", "loss"])


# ---- torch.no_grad() blocks, max/min's (values, indices), detached values under finite differences ----------


def test_no_grad_evaluation_blocks_compute_without_a_graph(tmp_path: Path) -> None:
    """Accuracy under no_grad (a module call, argmax, max(1).indices) was refused; now computed as torch does:
    values, no grad_fn, no gradient. `w += 0.5` on a leaf under no_grad changes the leaf; set_detect_anomaly
    changes nothing."""
    program = (
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nmodel = nn.Linear(4, 3)\n"
        "w = torch.randn(3, requires_grad=True)\nx = torch.randn(5, 4)\ny = torch.randint(0, 3, (5,))\n"
        "with torch.no_grad():\n    w += 0.5\n    pred = model(x).argmax(1)\n    acc = (pred == y).float().mean()\n"
        "    top = model(x).max(1).indices\n    scale = model(x).abs().mean()\n"
        "with torch.autograd.set_detect_anomaly(True):\n    out = model(x) * w * scale\n"
        "loss = F.cross_entropy(out, y) + acc * 0.0\nloss.backward()\n"
    )
    t = traced(program)
    g = in_torch(program, tmp_path)
    assert [t.result.nodes[k].grad_fn for k in ("scale", "acc", "out")] == [None, None, "MulBackward0"]
    assert not t.result.nodes["scale"].requires_grad and t.result.nodes["w"].is_leaf
    same_as_torch(t, g, ["model", "w", "pred", "acc", "top", "scale", "out", "loss"])


def test_max_over_a_dim_gives_values_and_indices_in_every_form(tmp_path: Path) -> None:
    """`torch.max(x, 1)[0]` indexed the values tensor (its first row: silently wrong); the indices were untraced."""
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(3, 4, requires_grad=True)\nv = torch.max(x, 1)[0]\n"
               "vals, idx = torch.max(x, dim=1)\nm, _ = x.min(1)\ni = x.max(dim=0).indices\nk = torch.min(x, 0)[1]\n"
               "big = torch.max(x, torch.zeros(4))\n(v.sum() + vals.sum() - m.sum() + big.sum()).backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    assert t.result.nodes["v"].shape == [3] and t.result.nodes["idx"].dtype == "int64"
    same_as_torch(t, g, ["x", "v", "vals", "idx", "m", "i", "k", "big"])


def test_detached_values_are_held_fixed_by_finite_differences() -> None:
    """With the numeric engine, x.detach() (and .data) moved with x under perturbation: 'disagree' ([2, 4] against
    torch's [1, 2])."""
    program = ("import torch\nx = torch.tensor([1.0, 2.0], requires_grad=True)\nd = x.detach()\ne = x.data\n"
               "with torch.no_grad():\n    f = x * 3\nloss = (d * x + e * x + f * x).sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    assert t.result.nodes["x"].grad.data == [5.0, 10.0]


def test_optimizer_steps_under_no_grad_are_refused_clearly() -> None:
    e = refused("import torch\nw = torch.ones(3, requires_grad=True)\nv = torch.ones(3)\nwith torch.no_grad():\n"
                "    w -= 0.1 * v\n(w * 2).sum().backward()\n")
    assert "optimizer's step" in str(e) and e.line == 5


def test_generators_draw_their_own_streams_as_torch_does(tmp_path: Path) -> None:
    """makemore's `g = torch.Generator().manual_seed(2147483647)` and `torch.randn(..., generator=g)`: an unknown
    function once. Each generator's draws are its own, interleaved with the default generator's and reseeded."""
    program = (
        "import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\na = torch.randn(3)\n"
        "g = torch.Generator().manual_seed(2147483647)\nC = torch.randn((27, 2), generator=g)\nb = torch.rand(3)\n"
        "W = torch.randn((4, 5), generator=g) * 0.2\nW.requires_grad = True\nC.requires_grad = True\n"
        "X = torch.randint(0, 27, (4, 2), generator=g)\nY = torch.randint(0, 5, (4,), generator=g)\ng.manual_seed(7)\n"
        "e = torch.rand(2, generator=g)\nh = torch.tanh(C[X].view(-1, 4) @ W)\nloss = F.cross_entropy(h, Y) + (e.sum() + a.sum() + b.sum()) * 0.0\n"
        "loss.backward()\n"
    )
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["a", "b", "C", "W", "X", "Y", "e", "h", "loss"], exact=False)
    assert t.result.notes == [] or all("not seeded" not in n for n in t.result.notes)


def test_a_generator_argument_must_be_a_generator() -> None:
    e = refused("import torch\nx = torch.randn(3, generator=5, requires_grad=True)\nx.sum().backward()\n")
    assert "generator= takes a torch.Generator" in str(e)


def test_what_torch_warns_about_runs_as_torch_runs_it_and_the_notes_say_so(tmp_path: Path) -> None:
    """F.softmax(x) without dim (torch picks one) and nn.MSELoss on [N, 1] against [N] (torch broadcasts to [N, N],
    the classic regression bug): refused once; now the numbers torch gives, and a note naming the line."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nmodel = nn.Linear(2, 1)\n"
               "x = torch.randn(4, 2)\ny = torch.randn(4)\np = F.softmax(x)\nq = F.log_softmax(torch.randn(3, requires_grad=True))\n"
               "loss = nn.MSELoss()(model(x), y) + (p * x).sum() + q.sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["model", "p", "q", "loss"])
    notes = t.result.notes
    assert any(n.startswith("line 8: F.softmax() without dim: torch chose dim=1") for n in notes), notes
    assert any(n.startswith("line 9: F.log_softmax() without dim: torch chose dim=0") for n in notes), notes
    assert any(n.startswith("line 10: mse_loss: target [4] and input [4, 1] differ in shape: torch broadcasts them to [4, 4]")
               for n in notes), notes


def test_amax_prod_norm_repeat_dot_as_pasted(tmp_path: Path) -> None:
    program = (
        "import torch\ntorch.manual_seed(0)\nx = torch.randn(3, 4, requires_grad=True)\n"
        "z = torch.tensor([[1., 2., 2.], [0., 3., -1.]], requires_grad=True)\n"
        "a = x.amax(1).sum() + torch.amin(x, dim=(0, 1)) + z.amax() + z.amax(dim=1).sum()\n"
        "p = z.prod() + z.prod(1).sum() + x.prod(dim=0, keepdim=True).sum()\n"
        "n = x.norm() + z.norm(dim=1).sum() + torch.norm(x, 1) + torch.zeros(3, requires_grad=True).norm()\n"
        "r = x.repeat(2, 1, 3).sum() + (z.repeat(2, 2) * torch.arange(24.).view(4, 6)).sum()\n"
        "d = torch.dot(x[0], x[1]) + x[2].dot(x[0])\nloss = a + p + n + r + d\nloss.backward()\n"
    )
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    fns = {n.op: n.grad_fn for n in t.result.nodes.values() if n.op in ("amax", "norm", "dot", "repeat")}
    assert fns == {"amax": "AmaxBackward0", "norm": "LinalgVectorNormBackward0", "dot": "DotBackward0",
                   "repeat": "RepeatBackward0"}
    same_as_torch(t, in_torch(program, tmp_path), ["x", "z", "a", "p", "n", "r", "d", "loss"])


def test_cross_entropy_label_smoothing_and_ignore_index(tmp_path: Path) -> None:
    """Both refused once. Label smoothing made torch's loss a small graph of its own (two paths into one
    log_softmax): the torch engine counted that gradient twice on the edge logits -> l2 ('disagree')."""
    program = (
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
        "logits = torch.randn(4, 5, requires_grad=True)\ny = torch.tensor([1, 0, 4, 2])\npad = torch.tensor([1, -100, 4, -100])\n"
        "l1 = F.cross_entropy(logits, y, reduction='sum')\nl2 = F.cross_entropy(logits, y, label_smoothing=0.1)\n"
        "l3 = nn.CrossEntropyLoss(ignore_index=0)(logits, y)\nl4 = F.cross_entropy(logits, pad)\n"
        "l5 = nn.CrossEntropyLoss(label_smoothing=0.2, ignore_index=-100, reduction='none')(logits, pad)\n"
        "(l1 + l2 + l3 + l4 + l5.sum()).backward()\n"
    )
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree", [p.failures for p in t.result.comparison.pairs]
    edge = next(e for e in t.result.edges if (e.src, e.dst) == ("logits", "l2"))
    np.testing.assert_allclose(edge.grad.data, edge.engines["reference"].data, rtol=1e-5)
    same_as_torch(t, in_torch(program, tmp_path), ["logits", "l1", "l2", "l3", "l4", "l5"])


def test_in_place_methods_on_computed_tensors_and_the_micrograd_lecture(tmp_path: Path) -> None:
    """`y.add_(1); y.relu_()` (refused once: "in-place .add_() ... is not traced") and the lecture's neuron verbatim,
    torch.Tensor([...]).double() and o.data.item() in a print included."""
    program = ("import torch\nx = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)\ny = x * 2\nz = y\ny.add_(1)\n"
               "w = y.mul_(0.5)\ny.relu_()\n(y.sum() + z.sum() + w.sum()).backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    # w is y (torch returns the tensor itself): the nodes are y's bindings
    assert [t.result.nodes[k].grad_fn for k in ("y@2", "y@3", "y")] == ["AddBackward0", "MulBackward0", "ReluBackward0"]
    assert t.result.nodes["x"].grad.data == g["x"].grad.tolist() == [3.0, 0.0, 3.0]
    lecture = ("import torch\nx1 = torch.Tensor([2.0]).double();  x1.requires_grad = True\n"
               "x2 = torch.Tensor([0.0]).double();  x2.requires_grad = True\nw1 = torch.Tensor([-3.0]).double(); w1.requires_grad = True\n"
               "w2 = torch.Tensor([1.0]).double();  w2.requires_grad = True\n"
               "b = torch.Tensor([6.8813735870195432]).double(); b.requires_grad = True\nn = x1*w1 + x2*w2 + b\no = torch.tanh(n)\n"
               "print(o.data.item())\no.backward()\nprint('x2', x2.grad.item())\n")
    t = traced(lecture)
    assert t.result.nodes["o"].dtype == "float64" and t.result.nodes["x1"].is_leaf
    same_as_torch(t, in_torch(lecture, tmp_path), ["x1", "x2", "w1", "w2", "b", "n", "o"])


def test_in_place_methods_torch_refuses_are_refused() -> None:
    e = refused("import torch\nw = torch.ones(3, requires_grad=True)\nw.mul_(2)\nw.sum().backward()\n")
    assert "leaf tensor that requires grad" in str(e) and "`.mul_()`" in str(e)
    e = refused("import torch\nx = torch.ones(2, 3, requires_grad=True)\ny = x * 2\ny[0].relu_()\ny.sum().backward()\n")
    assert "view of 'y'" in str(e)
    # torch.Tensor(2, 3) / torch.FloatTensor(n, m) are uninitialised memory, as torch.empty (zeros here): a GCN's
    # `Parameter(torch.FloatTensor(n, m))` then `.data.uniform_(-stdv, stdv)` traces (tests/test_program_python.py)


def test_functional_inplace_argument(tmp_path: Path) -> None:
    """F.relu(h, inplace=True) (refused once: "argument 'inplace': Extra inputs are not permitted") is h.relu_():
    a name bound to h sees it; inplace=False is the plain call."""
    program = ("import torch\nimport torch.nn.functional as F\nx = torch.tensor([-1.0, 2.0, -3.0], requires_grad=True)\n"
               "h = x * 3\ng = h\nh = F.relu(h, inplace=True)\nk = F.leaky_relu(x * 2, 0.1, inplace=False)\n"
               "(h.sum() + g.sum() + k.sum()).backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    assert t.result.nodes["x"].grad.data == g["x"].grad.tolist()
    same_as_torch(t, g, ["x", "h", "k"])


# ---- found by an adversarial review: each once gave other numbers than torch -------------------------------


@pytest.mark.parametrize(("program", "needle"), [
    # a write into a leaf after a use that backward() reaches: torch's backward there sees the new values
    ("w = torch.ones(3, requires_grad=True)\nm = (w * 2).sum()\nwith torch.no_grad():\n    w *= 2\n(m * w).sum().backward()\n",
     "'w' is written after an operation used it"),
    ("w = torch.ones(3, requires_grad=True)\ny = w + 1\nw.data.fill_(2.0)\n(y * w).sum().backward()\n", "written after"),
    # in place under no_grad or through .data on a tensor that requires grad: torch keeps its graph, new values
    ("x = torch.ones(3, requires_grad=True)\ny = x * 2\nwith torch.no_grad():\n    y += 1\n(y * x).sum().backward()\n",
     "which requires grad, under torch.no_grad()"),
    ("x = torch.ones(3, requires_grad=True)\ny = x * 2\ny.data.mul_(3)\n(y * x).sum().backward()\n", "through .data"),
    ("w = torch.ones(3, requires_grad=True)\nwith torch.no_grad():\n    w.pow_(2)\n(w * 2).sum().backward()\n",
     "in-place .pow_() on the leaf 'w'"),
    # a view a name still holds would see the change in torch
    ("x = torch.ones(2, 3, requires_grad=True)\ny = x * 2\nr = y[0]\ny += 10\n(r * 2).sum().backward()\n", "'r' is a view of it"),
    ("x = torch.ones(2, 3, requires_grad=True)\ny = x * 2\nv = y.view(-1)\nt = v[1:]\ny.mul_(2)\nt.sum().backward()\n",
     "is a view of it"),
])
def test_in_place_changes_gradtrace_cannot_follow_are_refused(program: str, needle: str) -> None:
    e = refused("import torch\n" + program)
    assert needle in str(e), str(e)


def test_all_ignored_targets_and_int_casts_under_finite_differences(tmp_path: Path) -> None:
    """cross_entropy with every target ignored: torch's gradient is 0 (the reference's was NaN: 'disagree'); an
    int64's .float() in the float64 finite-difference pass stayed int64 (its mean truncated: 'disagree')."""
    program = ("import torch\nx = torch.randn(3, 4, requires_grad=True)\nn = torch.tensor([1, 2])\n"
               "m = (x[0, :2] * n.float()).mean() + n.float().mean() * x.sum()\nm.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree", [p.failures for p in t.result.comparison.pairs]
    ce = traced("import torch\nimport torch.nn.functional as F\nx = torch.randn(3, 4, requires_grad=True)\n"
                "l = F.cross_entropy(x, torch.tensor([-100, -100, -100]))\nl.backward()\n")
    assert ce.result.comparison.verdict == "agree" and ce.result.nodes["x"].grad.data == [[0.0] * 4] * 3


def test_finite_differences_past_the_cone_limit_hold_detached_values(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.engines.numeric as numeric

    monkeypatch.setattr(numeric, "CONE_WORK", 0)  # every evaluation a pass over the nodes that require grad
    t = traced("import torch\nx = torch.tensor([1.0, 2.0], requires_grad=True)\nd = x.detach()\n(d * x).sum().backward()\n",
               engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree" and t.result.nodes["x"].grad.data == [1.0, 2.0]


def test_promotion_to_the_default_float_follows_the_specs_dtype(tmp_path: Path) -> None:
    """In a float64 spec (torch.set_default_dtype(torch.float64) in the user's run) `n * 0.1` of an int64 n is
    float64, as are the computed leaves made of such values; it was float32."""
    program = ("import torch\nx = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)\nn = torch.tensor([1, 2, 3])\na = n * 0.1\n"
               "b = n / 3\nc = (x > 0) * 0.1\nd = torch.tensor([1, 2, 3], dtype=torch.float32)\ne = n * d\n"
               "W = n * 0.5 + 0.25\nW.requires_grad_()\nloss = (x * a + x * b + x * c + x * e + x * W).sum()\nloss.backward()\n")
    t = traced(program, dtype="float64")
    g = in_torch(program, tmp_path, "float64")
    for k in ("a", "b", "c", "e", "W", "loss"):
        assert t.result.nodes[k].dtype == str(g[k].dtype)[6:], k
    same_as_torch(t, g, ["x", "a", "b", "c", "e", "W", "loss"])


def test_channel_dropout_and_randperm_draw_as_torch(tmp_path: Path) -> None:
    """nn.Dropout2d / F.dropout1d / F.dropout3d zero whole channels from one (N, C, 1, ...) draw (unbatched inputs as a
    batch of one; dropout2d's 3-d input as (N, C, L), as torch's), and torch.randperm's shuffle is torch's, the draws
    after it too."""
    program = (
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
        "conv = nn.Conv2d(2, 3, 3)\ndrop = nn.Dropout2d(0.3)\nx = torch.randn(2, 2, 6, 6, requires_grad=True)\n"
        "h = drop(F.relu(conv(x)))\nperm = torch.randperm(5)\ns = torch.randn(3, 5, requires_grad=True)\n"
        "a = F.dropout1d(s[:, perm], 0.4)\nb = nn.Dropout1d(0.2)(torch.randn(2, 3, 4, requires_grad=True) * 2)\n"
        "c = F.dropout3d(torch.randn(3, 2, 2, 2, requires_grad=True), p=0.5)\n"
        "d = F.dropout2d(torch.randn(2, 3, 4, requires_grad=True), 0.5)\n"
        "loss = h.sum() + a.pow(2).sum() + b.sum() + c.sum() + d.sum()\nloss.backward()\n"
    )
    check(program, ["conv", "x", "h", "s", "a", "b", "c", "d", "loss"], tmp_path)
    t = traced(program)
    assert t.result.nodes["h"].grad_fn == "MulBackward0"  # torch's feature dropout: input * noise
    assert "dropout1d: Expected 2D or 3D input" in str(refused("import torch\nimport torch.nn.functional as F\n"
                                                                "y = F.dropout1d(torch.randn(2, 2, 2, 2), 0.5)\n"))


def test_class_weights_in_cross_entropy_and_nll_loss(tmp_path: Path) -> None:
    """F.cross_entropy(x, t, weight=w), nn.CrossEntropyLoss(weight=..., label_smoothing=...) and nn.NLLLoss(w)
    (positional, as torch's first parameter): the weighted mean divides by the targets' weights, as torch's."""
    program = (
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
        "x = torch.randn(6, 3, requires_grad=True)\nt = torch.tensor([0, 2, 1, 2, 1, 0])\nw = torch.tensor([1.0, 3.0, 0.5])\n"
        "a = F.cross_entropy(x, t, weight=w)\ncrit = nn.CrossEntropyLoss(weight=torch.tensor([0.2, 1.0, 2.0]), label_smoothing=0.1)\n"
        "b = crit(x, t)\nc = nn.NLLLoss(w, reduction='sum')(F.log_softmax(x, dim=1), t)\nloss = a + b + c\nloss.backward()\n"
    )
    check(program, ["x", "a", "b", "c", "loss"], tmp_path)
    assert "weight must hold one value per class" in str(refused(program.replace("[1.0, 3.0, 0.5]", "[1.0, 3.0]")))


def test_loss_weights_drawn_once_dropout3d_unbatched_and_zero_weights(tmp_path: Path) -> None:
    """`nn.CrossEntropyLoss(weight=torch.rand(3) + 0.5)` draws once (the draws after it are torch's); Dropout3d
    unsqueezes any input but a 5-d one, as torch; class weights summing to 0 over the targets give NaN, as torch."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "crit = nn.CrossEntropyLoss(weight=torch.rand(3) + 0.5)\nx = torch.randn(4, 3, requires_grad=True)\n"
               "t = torch.tensor([0, 2, 1, 1])\nv = torch.randn(3, 4, 5, requires_grad=True)\nd = nn.Dropout3d(0.5)(v * 1.0)\n"
               "loss = crit(x, t) + d.sum()\nloss.backward()\n")
    check(program, ["x", "v", "d", "loss"], tmp_path)
    t = traced("import torch\nimport torch.nn.functional as F\nx = torch.randn(3, 3, requires_grad=True)\n"
               "l = F.cross_entropy(x, torch.tensor([0, 1, 0]), weight=torch.tensor([0.0, 0.0, 1.0]))\nl.backward()\n")
    assert t.result.comparison.verdict == "agree" and np.isnan(t.arrays["torch/grad/x"]).all()
    t = traced("import torch\nimport torch.nn.functional as F\nx = torch.randn(3, 3, requires_grad=True)\n"
               "l = F.cross_entropy(x, torch.tensor([1, 1, 1]), weight=torch.tensor([1.0, 0.0, 2.0]), label_smoothing=0.2)\n"
               "l.backward()\n")
    assert t.result.comparison.verdict == "agree" and np.isnan(t.arrays["torch/value/l"])  # with smoothing too


AUTOGRAD_GRAD = """
import torch
from torch import autograd

x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
w = torch.tensor(0.5, requires_grad=True)
y = (w * x ** 3).sum()
dy_dx, dy_dw = torch.autograd.grad(y, [x, w], retain_graph=True)
print(dy_dx, dy_dw)
"""


def test_autograd_grad_is_traced_as_backward(tmp_path: Path) -> None:
    """`dy_dx, dy_dw = torch.autograd.grad(y, [x, w])`: one backward pass from y; the inputs' grads in the result are
    what torch.autograd.grad returns (3 w x**2 and sum(x**3)), and a note says how it was traced."""
    t = traced(AUTOGRAD_GRAD)
    g = in_torch(AUTOGRAD_GRAD, tmp_path)
    np.testing.assert_allclose(t.arrays["torch/grad/x"], g["dy_dx"].numpy())
    np.testing.assert_allclose(t.arrays["torch/grad/x"], [1.5, 6.0, 13.5])
    np.testing.assert_allclose(t.arrays["reference/grad/w"], g["dy_dw"].numpy())
    assert t.result.output == "y" and any("torch.autograd.grad is traced as backward()" in n for n in t.result.notes)


def test_autograd_grad_of_parameters_with_grad_outputs(tmp_path: Path) -> None:
    """`autograd.grad([out], model.parameters(), grad_outputs=[v])` (from torch import autograd): the parameters'
    grads are torch's."""
    program = """
import torch
import torch.nn as nn
from torch import autograd

torch.manual_seed(0)
model = nn.Linear(3, 2)
x = torch.randn(4, 3)
out = model(x)
grads = autograd.grad([out], model.parameters(), grad_outputs=[torch.full((4, 2), 0.5)])
"""
    t = traced(program)
    g = in_torch(program, tmp_path)
    for name, want in zip(("model.weight", "model.bias"), g["grads"], strict=True):
        np.testing.assert_allclose(t.arrays[f"torch/grad/{name}"], want.numpy(), rtol=1e-6)
    assert t.result.comparison.verdict == "agree"


def test_autograd_grad_refusals_and_a_manual_update_ends_the_trace() -> None:
    """create_graph=True (higher order) and a tensor that does not require grad are refused, naming what; a manual
    gradient step after it ends the trace at that backward with a note."""
    e = refused("import torch\nx = torch.tensor(1.0, requires_grad=True)\ny = x ** 3\n"
                "g, = torch.autograd.grad(y, x, create_graph=True)\n(g ** 2).backward()\n")
    assert e.line == 4 and "create_graph=True" in e.message
    e = refused("import torch\nx = torch.tensor(1.0, requires_grad=True)\nc = torch.tensor(2.0)\ny = x * c\n"
                "g = torch.autograd.grad(y, [x, c])\n")
    assert e.line == 5 and "does not require grad" in e.message
    e = refused("import torch\nx = torch.tensor(1.0, requires_grad=True)\nw = torch.tensor(2.0, requires_grad=True)\n"
                "y = x * 3\ng = torch.autograd.grad(y, [x, w])\n")
    assert e.line == 5 and "at index 1 appears to not have been used" in e.message
    assert traced("import torch\nx = torch.tensor(1.0, requires_grad=True)\nw = torch.tensor(2.0, requires_grad=True)\n"
                  "y = x * 3\ng = torch.autograd.grad(y, [x, w], allow_unused=True)\n").result.output == "y"
    e = refused("import torch\nx = torch.tensor(1.0, requires_grad=True)\ny = x * 3\ng = torch.autograd.grad(y, [])\n")
    assert e.line == 4 and "cannot be empty" in e.message
    t = traced("import torch\nx = torch.tensor(2.0, requires_grad=True)\nfor step in range(3):\n"
               "    y = x ** 2 + 3 * x + 1\n    g = torch.autograd.grad(y, x)[0]\n    x = x - 0.1 * g\n")
    assert float(t.arrays["torch/grad/x"]) == 7.0 and float(t.arrays["torch/value/y"]) == 11.0
    assert any("the trace ends at the backward() of line 5" in n for n in t.result.notes)


WHILE_LOOPS = """
import torch

torch.manual_seed(0)
x = torch.randn(3, requires_grad=True)
n = x.size(0)
h = x
i = 0
while i < n:
    h = h * 2 + i
    i = i + 1
k = 10
while k > 1 and k % 2 == 0 or k > 7:
    h = h.sin()
    k //= 2
step = 0
while step < 5:
    loss = (h * (step + 1)).sum()
    loss.backward()
    step += 1
"""


def test_while_loops_on_counted_ints_unroll(tmp_path: Path) -> None:
    """`while i < n:` (n a tensor's size), and/or/% conditions, and a training-style while loop (the trace ends at its
    second backward, as a for loop's): torch's numbers, the loop's last binding takes the bare name."""
    t = traced(WHILE_LOOPS)
    g = in_torch(WHILE_LOOPS.replace("    loss.backward()\n", "    if step == 0:\n        loss.backward()\n"), tmp_path)
    same_as_torch(t, g, ["x", "h"])
    assert [n.op for name, n in t.result.nodes.items() if name.startswith("h")].count("sin") == 1
    assert float(t.arrays["torch/value/loss"]) == pytest.approx(float(g["h"].detach().sum()), rel=1e-6)
    assert any("the trace ends at the backward()" in note for note in t.result.notes)


@pytest.mark.parametrize(("program", "line", "words"), [
    ("x = torch.tensor(1.0, requires_grad=True)\nwhile x > 0.5:\n    x = x * 0.5\n", 3, "depends on the data"),
    ("i = 0\nwhile i < 3:\n    y = torch.ones(1)\n", 3, "does its condition ever become false?"),
    ("s = [1]\nwhile len(s) > 0:\n    y = torch.ones(1)\n", 3, "does its condition ever become false?"),
    ("i = 0\nwhile i < 3:\n    i += 1\nelse:\n    i = 0\n", 6, "else clause is not allowed"),
])
def test_while_loops_refused_with_the_reason(program: str, line: int, words: str) -> None:
    e = refused("import torch\n" + program)
    assert e.line == line and words in e.message, e.message


FUNCTIONAL_BATCH_NORM = """
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class FunctionalBN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=True, momentum=0.3)


bn = FunctionalBN(3)
x = torch.randn(8, 3, 2, requires_grad=True)
w = torch.randn(3, requires_grad=True)
rm = torch.zeros(3)
rv = torch.ones(3)
y = F.batch_norm(x, rm, rv, w, training=True)
z = F.batch_norm(x * 2, rm, rv, w, eps=1e-3)
u = F.batch_norm(x, None, None, training=True)
v = bn(x.sin())
s = bn.running_mean * 1.0
loss = (y * z).sum() + (rm * rv).sum() + u.pow(3).sum() + (v * s.unsqueeze(-1)).sum()
loss.backward()
"""


def test_functional_batch_norm_names_the_updated_statistics(tmp_path: Path) -> None:
    """`training=is_training` (a name) updates rm in place as torch does: rm is the new value, rm@1 the old; a module's
    registered buffer updated by F.batch_norm in forward takes the buffer's name bn.running_mean (the buffer as
    registered: bn.running_mean@0); eval
    statistics that require grad are refused as torch refuses them."""
    program = FUNCTIONAL_BATCH_NORM.replace("training=True)\nz", "training=is_training)\nz").replace(
        "rm = torch.zeros(3)", "is_training = True\nrm = torch.zeros(3)")
    assert "training=is_training" in program and "is_training = True" in program
    check(program, ["x", "rm", "rv", "y", "s"], tmp_path)
    nodes = traced(program).result.nodes
    assert nodes["rm"].op == "batch_norm_running" and nodes["rm@1"].is_leaf
    assert nodes["bn.running_mean"].op == "batch_norm_running" and nodes["bn.running_mean@0"].is_leaf
    e = refused("import torch\nimport torch.nn.functional as F\nx = torch.randn(4, 3)\n"
                "mu = torch.zeros(3, requires_grad=True)\ny = F.batch_norm(x, mu, torch.ones(3))\n")
    assert e.line == 5 and "not differentiable with respect to 'running_mean'" in e.message


def test_functional_batch_norm_in_training_and_eval(tmp_path: Path) -> None:
    """F.batch_norm as written in functional code: training with running statistics (updated in place, as torch's:
    the names rm, rv and a module's buffer see the new values), eval with them (the default training=False), and
    training without them (MAML's form). torch's numbers; rm's last binding takes the bare name."""
    check(FUNCTIONAL_BATCH_NORM, ["x", "w", "rm", "rv", "y", "z", "u", "v", "s", "loss", "bn"], tmp_path)
    nodes = traced(FUNCTIONAL_BATCH_NORM).result.nodes
    assert nodes["rm"].op == "batch_norm_running" and nodes["rm@1"].is_leaf
    assert nodes["z"].op == "batch_norm_eval" and nodes["u"].op == "batch_norm"


@pytest.mark.parametrize(("call", "words"), [
    ("F.batch_norm(x, None, None)", "must be defined when not training"),
    ("F.batch_norm(x, rm, None, training=True)", "give both running_mean and running_var"),
    ("F.batch_norm(x, rm, rv, training=True, momentum=None)", "momentum must be a float, not None"),
    ("F.batch_norm(x, rm, rv, w) * F.batch_norm(x, rm, rv, training=True)", "an earlier eval-mode call read"),
    ("(x * rm).sum() + F.batch_norm(x, rm, rv, training=True)", "running statistics node 'y#1' read"),
    ("F.batch_norm(x, rm, rv, bias=w)", "a bias and no weight"),
    ("F.batch_norm(x, rm)", "F.batch_norm takes (input, running_mean, running_var"),
])
def test_functional_batch_norm_refusals(call: str, words: str) -> None:
    e = refused("import torch\nimport torch.nn.functional as F\nx = torch.randn(4, 3, requires_grad=True)\n"
                f"w = torch.ones(3)\nrm = torch.zeros(3)\nrv = torch.ones(3)\ny = {call}\n")
    assert e.line == 7 and words in e.message, e.message


def test_module_factory_keywords(tmp_path: Path) -> None:
    """`nn.Linear(4, 3, device=device, dtype=torch.float32)` as modern code writes modules: device is the spec's to
    decide, a dtype equal to the program's is accepted (torch's numbers), another one refused with the way out."""
    program = """
import torch
import torch.nn as nn

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)
fc = nn.Linear(4, 3, device=device, dtype=torch.float32)
norm = nn.LayerNorm(3, device=device)
x = torch.randn(2, 4, device=device)
y = (norm(fc(x)) * torch.arange(3.0)).sum()
y.backward()
"""
    check(program, ["fc", "norm", "x", "y"], tmp_path)
    e = refused(program.replace("dtype=torch.float32", "dtype=torch.float64"))
    assert e.line == 7 and "set the default dtype instead" in e.message


RUNTIME_WHILE = """
import torch
import torch.nn as nn

torch.manual_seed(0)


class ODEBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.f = nn.Linear(d, d)

    def forward(self, h, dt=0.25):
        t = 0.0
        while t < 1.0:
            h = h + dt * torch.tanh(self.f(h))
            t += dt
        return h


ode = ODEBlock(3)
x = torch.randn(2, 3, requires_grad=True)
out = ode(x)
stack = [x[0], x[1], out[0], out[1]]
while len(stack) > 1:
    top = stack[-1] * stack[-2] + stack[-1]
    stack = stack[:-2] + [top]
s = torch.tensor(0.0)
i = 0
while True:
    i += 1
    if i % 2 == 0:
        continue
    s = s + top.sum() * i
    if i >= 5:
        break
loss = s * 2
loss.backward()
"""


def test_while_loops_run_as_python_runs_them(tmp_path: Path) -> None:
    """While loops whose condition reads what the loop changes (a float time `t += dt` in an ODE block's forward, a
    list's length, `while True:` with continue and break): run iteration by iteration, torch's numbers; the last
    binding of a loop's variable takes the bare name (`top`, `s`), and the module's returned state the caller's (out)."""
    t = traced(RUNTIME_WHILE)
    check(RUNTIME_WHILE, ["ode", "x", "out", "top", "s", "loss"], tmp_path)
    nodes = t.result.nodes
    assert {"out", "top", "s", "loss"} <= set(nodes) and "s@1" in nodes
    assert sum(n.op == "tanh" for n in nodes.values()) == 4  # t = 0, 0.25, 0.5, 0.75


def test_a_while_loop_inside_a_counted_one_changes_its_counter(tmp_path: Path) -> None:
    """An inner `while True: ... break` that advances the outer loop's counter: the outer loop is not unrolled on the
    counter's old value (it runs as Python does): 12 multiplications, as in torch."""
    program = ("import torch\nx = torch.tensor(1.0, requires_grad=True)\ny = x\ni = 0\nwhile i < 10:\n    while True:\n"
               "        i += 1\n        y = y * 1.1\n        if i % 3 == 0:\n            break\ny.backward()\n")
    check(program, ["x", "y"], tmp_path)
    assert sum(n.op == "mul" for n in traced(program).result.nodes.values()) == 12


def test_batch_norm_eval_then_train_before_backward_is_refused() -> None:
    """A BatchNorm run in eval mode (its output needing a gradient) and then in training before backward: torch's
    backward of the eval call reads the running statistics the training call overwrote without a version bump, other
    numbers than its forward used; refused with the reason (was traced with the textbook gradient, not torch's). The
    eval call under torch.no_grad() is fine."""
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\nbn = nn.BatchNorm1d(3)\n"
               "x = torch.randn(5, 3, requires_grad=True)\nbn.eval()\na = bn(x)\nbn.train()\nb = bn(x)\n(a * b).sum().backward()\n")
    e = refused(program)
    assert e.line == 9 and "an earlier eval-mode call read" in e.message
    ok = program.replace("a = bn(x)", "with torch.no_grad():\n    a = bn(x)")
    assert traced(ok).result.comparison.verdict == "agree"


def test_autograd_backward_and_grad_outputs_none(tmp_path: Path) -> None:
    """torch.autograd.backward(y) is y.backward(); grad_outputs=None is torch's default: torch's grads."""
    program = ("import torch\nx = torch.tensor([1.0, 2.0], requires_grad=True)\ny = (x ** 3).sum()\n"
               "torch.autograd.backward(y)\n")
    check(program, ["x", "y"], tmp_path)
    t = traced("import torch\nx = torch.tensor([1.0, 2.0], requires_grad=True)\ny = (x ** 3).sum()\n"
               "g, = torch.autograd.grad(y, x, grad_outputs=None)\n")
    np.testing.assert_allclose(t.arrays["torch/grad/x"], [3.0, 12.0])


def test_a_tensor_method_whose_result_is_dropped(tmp_path: Path) -> None:
    """`attn_bias.to(query.dtype)` on a line of its own (the docs' reference scaled_dot_product_attention): torch
    makes a tensor nobody uses; accepted with a note, the name keeps its tensor."""
    program = ("import torch\ntorch.manual_seed(0)\nq = torch.randn(3, 4, requires_grad=True)\nbias = torch.zeros(3, 3)\n"
               "bias.to(q.dtype)\nbias.masked_fill(torch.ones(3, 3).tril() == 0, 1.0)\ny = (q @ q.t() + bias).sum()\ny.backward()\n")
    check(program, ["q", "bias", "y"], tmp_path)
    assert any("makes a tensor the program does not use" in n for n in traced(program).result.notes)


def test_list_pop_in_a_while_loop(tmp_path: Path) -> None:
    """`while len(stack) > 1: a = stack.pop(); b = stack.pop(); stack.append(a * b + a)`: the list shrinks as Python's;
    torch's numbers. An empty list's pop fails as Python's does."""
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(4, requires_grad=True)\n"
               "stack = [x[0], x[1], x[2], x[3]]\nwhile len(stack) > 1:\n    a = stack.pop()\n    b = stack.pop(0)\n"
               "    stack.append(a * b + a)\nstack.append(x[0])\nstack.pop()\ntop = stack[-1] * 1.0\ny = top + x.sum()\n"
               "y.backward()\n")
    check(program, ["x", "top", "y"], tmp_path)
    e = refused("import torch\ns = []\nv = s.pop()\n")
    assert e.line == 3 and "pop from empty list" in e.message


def test_ints_followed_through_branches_with_blocks_and_tuple_assignments(tmp_path: Path) -> None:
    """Loop bounds counted before the program runs follow only what is sure: an `if` whose branch the condition picks
    (or both agree), nothing a `with` block assigns, a while loop whose names change in ways not followed (a tuple
    assignment) runs as Python runs it: every count is torch's (3 * 2, 3 * 2 multiplications, ...)."""
    program = ("import torch\nx = torch.tensor(1.0, requires_grad=True)\ny = x\nn = 0\nfor k in range(4):\n"
               "    if k % 2 == 0:\n        n += 1\nfor j in range(n):\n    y = y * 2\ni = 0\nwhile i < 4:\n    y = y * 3\n"
               "    if i % 2 == 0:\n        i += 1\n    else:\n        i += 3\nm = 3\nwith torch.no_grad():\n    m = m - 2\n"
               "q = 0\nwhile q < m:\n    y = y * 5\n    q += 1\ndeep = False\nd = 2\nif deep:\n    d = 4\n"
               "for t in range(d):\n    y = y * 7\na, b = 0, 0\nwhile a < 2:\n    a, b = a + 1, b\n    y = y + 1\ny.backward()\n")
    check(program, ["x", "y"], tmp_path)
    assert float(traced(program).arrays["torch/grad/x"]) == 2 * 2 * 3 * 3 * 5 * 7 * 7


def test_names_after_while_loops_that_run_as_python_runs_them(tmp_path: Path) -> None:
    """A function whose while loop runs as Python runs it, called twice: each call's result takes its caller's name
    (a, b); a loop that runs zero times leaves the next binding the bare name (g); a break in a function called in a
    while loop is Python's SyntaxError, refused."""
    program = ("import torch\ndef f(v):\n    t = 0.0\n    while t < 1.0:\n        v = v * 2 + 1\n        t += 0.5\n"
               "    return v\nx = torch.tensor([0.5, -1.0], requires_grad=True)\na = f(x)\nb = f(x * 3)\ng = x * 1.0\nk = 5\n"
               "while k < 3.5:\n    g = g * 2\ng = g + 1\nloss = (a + b + g).sum()\nloss.backward()\n")
    check(program, ["x", "a", "b", "g", "loss"], tmp_path)
    nodes = traced(program).result.nodes
    assert {"a", "b", "g", "g@1"} <= set(nodes) and not any(n.startswith("a#") for n in nodes), list(nodes)
    e = refused("import torch\ndef f():\n    break\nx = torch.tensor(1.0, requires_grad=True)\ni = 0\n"
                "while i < 3:\n    f()\n    i += 1\n")
    assert e.line == 3 and "'break' outside loop" in e.message


@pytest.mark.parametrize(("line", "words"), [
    ("y = F.binary_cross_entropy_with_logits(x, t, 1.0)", "'weight' must be a tensor or None, not the number 1.0"),
    ("y = F.binary_cross_entropy(torch.sigmoid(x), t, weight=1)", "'weight' must be a tensor or None"),
    ("s = torch.zeros(2, 3)\ny = F.batch_norm(x, s[0], s[1], training=True)", "view"),
    ("y = F.batch_norm(x, torch.zeros(3), torch.ones(3), eps='a')", "eps must be a float"),
    ("y = x.sum()\ntorch.autograd.backward(y, inputs=[x])", "not ['inputs']"),
    ("y = x.sum()\ng = torch.autograd.grad(y, 3)", "inputs are tensors, not"),
    ("y = x.sum()\ng = torch.autograd.grad(y, x, grad_outputs=1)", "grad_outputs are tensors"),
    ("m = nn.Linear(3, 2, dtype='float32')", "dtype must be a torch.dtype"),
])
def test_review_refusals_as_torch_refuses(line: str, words: str) -> None:
    """What torch refuses (a number where it takes a tensor or None, a string dtype), what gradtrace cannot follow
    (statistics that are views of one tensor), and autograd's arguments, each refused with the reason at its line."""
    e = refused("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
                "x = torch.randn(4, 3, requires_grad=True)\nt = torch.rand(4, 3)\n" + line + "\n")
    assert words in e.message, e.message


def test_autograd_backward_of_a_list_and_batch_norm_as_a_statement(tmp_path: Path) -> None:
    """torch.autograd.backward([loss]) is loss.backward(); F.batch_norm(..., training=True) on a line of its own updates
    the running statistics it is given (rm after it is torch's)."""
    program = ("import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nx = torch.randn(6, 3, requires_grad=True)\n"
               "rm = torch.zeros(3)\nrv = torch.ones(3)\nF.batch_norm(x, rm, rv, training=True, momentum=0.5)\n"
               "loss = (x * rm).sum()\ntorch.autograd.backward([loss])\n")
    check(program, ["x", "rm", "rv", "loss"], tmp_path)


def test_buffer_and_loop_names_at_the_end(tmp_path: Path) -> None:
    """A BatchNorm's buffers read in eval before its training calls: @0 is the fresh buffer, @1 after the first
    update, the bare name the latest (torch's module then); a while loop that runs zero times leaves the variable's
    last binding its bare name."""
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\nbn = nn.BatchNorm1d(2)\nbn.eval()\n"
               "with torch.no_grad():\n    e = bn(torch.randn(4, 2))\nbn.train()\nfirst = torch.randn(4, 2)\na = bn(first)\n"
               "b = bn(torch.randn(4, 2) * 2)\nw = torch.randn(2, requires_grad=True)\nx = w * 2\nt = 5.0\n"
               "while t < 1.0:\n    x = x * 3\n    t += 1.0\ny = (a * b * x).sum()\ny.backward()\n")
    check(program, ["bn", "w", "x", "y"], tmp_path)
    t = traced(program)
    nodes, g = t.result.nodes, in_torch(program, tmp_path)
    assert {"bn.running_mean@0", "bn.running_mean@1", "bn.running_mean", "x"} <= set(nodes)
    np.testing.assert_allclose(t.arrays["torch/value/bn.running_mean"], g["bn"].running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(t.arrays["torch/value/bn.running_mean@1"], 0.1 * g["first"].mean(0).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(t.arrays["torch/value/bn.running_mean@0"], [0.0, 0.0])


def test_for_loops_that_end_early(tmp_path: Path) -> None:
    """`for i, layer in enumerate(self.layers): if i == depth: break` (an early exit), `continue`, and break and
    continue in loops over range and over a list: run as Python runs them, torch's numbers; the loop variable's last
    binding takes the bare name."""
    program = """
import torch
import torch.nn as nn

torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(4)])

    def forward(self, x, depth):
        for i, layer in enumerate(self.layers):
            if i == depth:
                break
            if i % 2 == 1:
                continue
            x = torch.tanh(layer(x))
        return x


net = Net()
x = torch.randn(2, 3, requires_grad=True)
h = net(x, 3)
acc = x.sum()
for i in range(6):
    if i == 4:
        break
    acc = acc * 1.5
for w in [0.5, 2.0, 3.0]:
    if w > 1.0:
        continue
    acc = acc + w
loss = h.sum() + acc
loss.backward()
"""
    check(program, ["net", "x", "h", "acc", "loss"], tmp_path)
    nodes = traced(program).result.nodes
    assert "acc" in nodes and sum(n.op == "tanh" for n in nodes.values()) == 2


def test_keyword_dicts_unpacked_into_torch_calls(tmp_path: Path) -> None:
    """`nn.Linear(4, 3, **factory_kwargs)` (torch's own modules' style), `F.cross_entropy(h, y, **opts)`,
    `torch.zeros(3, **factory_kwargs)`: the dict's items as keywords, torch's numbers."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "factory_kwargs = {'device': torch.device('cpu'), 'dtype': torch.float32}\nfc = nn.Linear(4, 3, **factory_kwargs)\n"
               "ln = nn.LayerNorm(3, eps=1e-6, **factory_kwargs)\nopts = dict(reduction='sum', label_smoothing=0.1)\n"
               "x = torch.randn(2, 4, requires_grad=True)\ny = torch.tensor([0, 2])\nh = ln(fc(x))\n"
               "loss = F.cross_entropy(h, y, **opts) + torch.zeros(3, **factory_kwargs).sum()\nloss.backward()\n")
    check(program, ["fc", "ln", "x", "h", "loss"], tmp_path)


def test_functional_batch_norm_buffers_under_a_path_with_a_mark(tmp_path: Path) -> None:
    """Two module objects nothing names (a helper's `[MyBN(3), MyBN(3)]`: paths mybn and mybn#2) updating their
    registered buffers with F.batch_norm: each update is named for its own buffer (mybn#2.running_mean, the
    registered one @0), torch's values."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n\n\n"
               "class MyBN(nn.Module):\n    def __init__(self, c):\n        super().__init__()\n"
               "        self.register_buffer('running_mean', torch.zeros(c))\n"
               "        self.register_buffer('running_var', torch.ones(c))\n\n    def forward(self, x):\n"
               "        return F.batch_norm(x, self.running_mean, self.running_var, training=True)\n\n\n"
               "def make():\n    return [MyBN(3), MyBN(3)]\n\n\nblocks = make()\nx = torch.randn(4, 3, requires_grad=True)\ny = blocks[1](blocks[0](x))\n"
               "z = y * blocks[1].running_mean\nz.sum().backward()\n")
    check(program, ["x", "y", "z"], tmp_path)
    nodes = traced(program).result.nodes
    assert nodes["make.mybn#2.running_mean"].op == "batch_norm_running" and nodes["make.mybn#2.running_mean@0"].is_leaf
    assert "make.mybn#3" not in nodes
