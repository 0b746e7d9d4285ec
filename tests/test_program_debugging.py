"""Code that people write to debug gradients and to learn autograd, traced against real torch: is_leaf as torch
answers it, parameters_to_vector, set_grad_enabled as a call, detect_anomaly, detach_(), clip_grad_norm_'s returned
norm, and what a second backward() would do in torch."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

HEAD = "import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\n"


def test_is_leaf_is_torchs_for_tensors_that_need_no_grad(tmp_path: Path) -> None:
    """torch's is_leaf: True for what the program made and for every tensor that needs no grad (`x.detach()`, what
    no_grad computed, `torch.rand(3) + 1`); a branch on it takes torch's way, and the result's flag agrees."""
    program = (HEAD + "x = torch.randn(3, requires_grad=True)\nu = x.detach()\nc = torch.rand(3) + 1\n"
               "with torch.no_grad():\n    n = x * 2\nh = x * 3\n"
               "scale = (2.0 if u.is_leaf else 3.0) + (1.0 if c.is_leaf and n.is_leaf else 5.0) + (7.0 if h.is_leaf else 0.0)\n"
               "assert u.is_leaf\nloss = (h * scale + c + n).sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference"])
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "u", "c", "n", "h", "loss"])
    for name in ("x", "u", "c", "n", "h", "loss"):
        assert t.result.nodes[name].is_leaf == g[name].is_leaf, name


def test_debugging_utilities_as_torch(tmp_path: Path) -> None:
    """nn.utils.parameters_to_vector (CatBackward0 over ViewBackward0s, as torch's own code), torch.set_grad_enabled
    as a call (grad mode until the next), `with torch.autograd.detect_anomaly():`, `y.detach_()` (every name of y
    leaves the graph; what used y before keeps its gradient), `total_norm = clip_grad_norm_(...)` (noted)."""
    program = (HEAD + "model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))\nx = torch.randn(5, 3)\n"
               "vec = torch.nn.utils.parameters_to_vector(model.parameters())\ntorch.set_grad_enabled(False)\n"
               "frozen = model(x)\ntorch.set_grad_enabled(True)\nwith torch.autograd.detect_anomaly():\n"
               "    out = model(x)\ny = out * 3\nalias = y\nz = y * 2\ny.detach_()\n"
               "loss = z.sum() + vec.pow(2).sum() + frozen.sum() + alias.sum()\nloss.backward()\n"
               "total_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e6)\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["model", "vec", "frozen", "out", "y", "z", "loss"])
    nodes = t.result.nodes
    assert nodes["vec"].grad_fn == type(g["vec"].grad_fn).__name__ == "CatBackward0"
    assert not nodes["frozen"].requires_grad and not nodes["y"].requires_grad and nodes["y"].is_leaf
    assert any("clip_grad_norm_" in n and "before clipping" in n for n in t.result.notes)


def test_detach_in_place_of_a_view_is_refused_as_torch_refuses_it() -> None:
    with pytest.raises(SpecError, match="Can't detach views in-place"):
        compile_spec(TraceSpec(program=HEAD + "x = torch.randn(3, 4, requires_grad=True)\nh = x * 2\nv = h[0]\nv.detach_()\n"))


@pytest.mark.parametrize(("retain", "says"), [("", "raises 'Trying to backward through the graph a second time'"),
                                              ("retain_graph=True", "adds this pass's gradients to .grad)")])
def test_a_second_backward_says_what_torch_would_do(retain: str, says: str) -> None:
    t = traced(HEAD + f"x = torch.randn(3, requires_grad=True)\ny = x.exp().sum()\ny.backward({retain})\ny.backward()\n")
    assert any("second time" in n and says in n for n in t.result.notes), t.result.notes


def test_a_training_loops_next_backward_is_no_second_pass_over_the_same_graph() -> None:
    """The next step's backward() runs on a new graph: the note says the trace ends, nothing of torch raising."""
    t = traced(HEAD + "w = torch.randn(3, requires_grad=True)\nfor step in range(2):\n    loss = (w * 2).exp().sum()\n"
                      "    loss.backward()\n")
    note = next(n for n in t.result.notes if "second time" in n)
    assert "Trying to backward" not in note and "adds this pass" not in note


@pytest.mark.parametrize(("body", "names"), [
    ("base = [nn.Linear(3, 4), nn.ReLU()]\nnet = nn.Sequential(*[*base, nn.Linear(4, 2)])\nx = torch.randn(2, 3)\n"
     "loss = net(x).sum()\n", ["net", "loss"]),  # a list's items spread in a list literal of modules
    ("x = torch.randn(3, requires_grad=True)\nh = x * 2\nh.unsqueeze_(0)\nv = h[0]\nv.unsqueeze_(0)\n"
     "loss = (v * 3).sum() + h.sum()\n", ["x", "v", "loss"]),  # a view's own shape changed in place
    ("x = torch.randn(3, requires_grad=True)\nk = 2.0 if torch.__version__ > '2.13.0' else 3.0\n"
     "loss = (x * k).sum()\n", ["x", "loss"]),  # '2.13.0+cpu' sorts after '2.13.0', as PEP 440
    ("x = torch.randn(4, requires_grad=True)\ny = torch.tensor([1, -1, 1, -1])\n"
     "loss = F.soft_margin_loss(x, y) + torch.nansum(y) * x.sum()\n", ["x", "loss"]),  # int64 targets and counts
    ("torch.set_grad_enabled(mode=False)\nw = torch.randn(3, requires_grad=True)\nf = w * 2\n"
     "torch.set_grad_enabled(mode=True)\nloss = (w * f).sum()\n", ["w", "f", "loss"]),
])
def test_what_the_diff_review_found_traces_as_torch(body: str, names: list[str], tmp_path: Path) -> None:
    program = HEAD + "import torch.nn.functional as F\n" + body + "loss.backward()\n"
    t = traced(program, engines=["torch", "reference"])
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), names)


@pytest.mark.parametrize(("body", "match"), [
    ("c = nn.Conv1d(2, 2, 4, padding='same', stride=2)\ny = c(torch.randn(1, 2, 8))\n", "not supported for strided"),
    ("c = nn.Conv1d(2, 2, 3, padding='same', stride=2, padding_mode='reflect')\ny = c(torch.randn(1, 2, 8))\n",
     "not supported for strided"),
    ("import math\nk = math.factorial(25)\n", "too big"),
    ("import math\nk = math.factorial(10 ** 6)\n", "over 1000"),
    ("i = torch.tril_indices(20000, 20000)\n", "over the element limit"),
    ("import math\nk = math.prod(range(1, 300000))\n", "over 1000 numbers"),
    ("import copy\nnet = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(3, 4)))\nt = copy.deepcopy(net)\n",
     "under weight_norm is not traced"),
    ("x = torch.randn(3, 2, requires_grad=True)\ny = x * 2\nh = y.t()\ny.t_()\n", "while 'h', a view of it, is held"),
    ("class M(nn.Module):\n    def __init__(self, __k=2):\n        super().__init__()\n\n    @classmethod\n"
     "    def make(cls):\n        return cls(__k=3)\n\n\nm = M.make()\n", "unexpected keyword argument '__k'"),
])
def test_what_torch_or_python_refuses_is_refused_without_computing_it(body: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        compile_spec(TraceSpec(program=HEAD + body))


def test_a_view_of_a_leaf_written_again_is_bounded_by_the_new_values(tmp_path: Path) -> None:
    """`idx = torch.tensor([7, 1]); with torch.no_grad(): idx.zero_()`: idx[0] indexes a dim of 3 (its written-out 7 no
    longer bounds it)."""
    program = (HEAD + "idx = torch.tensor([7, 1])\nwith torch.no_grad():\n    idx.zero_()\n"
               "x = torch.randn(3, requires_grad=True)\nloss = x[idx[0]] * 2\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference"])
    same_as_torch(t, in_torch(program, tmp_path), ["x", "loss"])
