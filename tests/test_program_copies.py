"""copy.deepcopy of modules as programs write it (a DQN's target network, an EMA teacher, the Annotated Transformer's
`clones`): the copies start with the original's values at the copy (torch draws nothing for them), take the names of
where they end up, and every value and grad is torch's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

DQN = """
import copy
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class QNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 2)
        self.scale = nn.Parameter(torch.ones(2) * 0.5)

    def forward(self, x):
        return self.fc2(F.relu(self.bn(self.fc1(x)))) * self.scale


policy = QNet()
with torch.no_grad():
    policy.fc1.weight.mul_(2.0)
warm = policy(torch.randn(5, 4))
target = copy.deepcopy(policy)
for p in target.parameters():
    p.requires_grad = False
target.eval()
s = torch.randn(6, 4)
s2 = torch.randn(6, 4)
q = policy(s)
with torch.no_grad():
    q_next = target(s2).max(1).values
loss = F.mse_loss(q[:, 0], 0.9 * q_next + 1.0)
loss.backward()
"""


def test_a_dqn_target_network_is_the_policy_at_the_copy(tmp_path: Path) -> None:
    """target = copy.deepcopy(policy) after an in-place change and a training step: its parameters are the policy's
    values then (the doubled weight), its BatchNorm statistics the policy's after that step, frozen; the TD target
    and every grad are torch's, and the target's parameters are named target.fc1.weight, ... without grads."""
    t = traced(DQN)
    g = in_torch(DQN, tmp_path)
    same_as_torch(t, g, ["policy", "target", "s", "s2", "q", "q_next", "loss"])
    nodes = t.result.nodes
    assert nodes["target.fc1.weight"].is_leaf and nodes["target.fc1.weight"].grad is None
    np.testing.assert_array_equal(t.arrays["torch/value/target.fc1.weight"], t.arrays["torch/value/policy.fc1.weight"])
    np.testing.assert_allclose(t.arrays["torch/value/target.bn.running_mean"], g["target"].bn.running_mean.numpy(), rtol=1e-6)
    assert t.result.parameters["target.fc1.weight"].init == "copy.deepcopy of policy.fc1.weight"
    assert t.result.comparison.verdict == "agree"


CLONES = """
import copy
import torch
import torch.nn as nn

torch.manual_seed(0)


def clones(module, N):
    return nn.ModuleList([copy.deepcopy(module) for _ in range(N)])


class Stack(nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.layers = clones(nn.Linear(d, d), n)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.norm(x)


c = copy.deepcopy
model = Stack(3, 2)
extra = c(model.norm)
x = torch.randn(2, 3, requires_grad=True)
y = extra(model(x))
loss = (y * torch.arange(3.0)).sum()
loss.backward()
"""


def test_the_annotated_transformers_clones(tmp_path: Path) -> None:
    """`clones(nn.Linear(d, d), N)` (copies of a module that never has a name of its own: each starts with the values
    its construction drew, and nothing else draws) and `c = copy.deepcopy; c(model.norm)`: torch's numbers, the copies
    named model.layers.0.weight, ..., extra.weight."""
    t = traced(CLONES)
    same_as_torch(t, in_torch(CLONES, tmp_path), ["model", "extra", "x", "y", "loss"])
    params = t.result.parameters
    assert {"model.layers.0.weight", "model.layers.1.weight", "extra.weight"} <= set(params)
    np.testing.assert_array_equal(t.arrays["torch/value/model.layers.0.weight"], t.arrays["torch/value/model.layers.1.weight"])
    assert not any("linear" in p.lower() and not p.startswith("model.layers") for p in params), list(params)


EMA = """
import copy
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        self.head = Head()

    def forward(self, x):
        return self.head(self.body(x))


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 3) * 0.1)
        self.register_buffer("center", torch.zeros(3))

    def forward(self, h):
        return h @ self.w - self.center


student = Encoder()
teacher = copy.deepcopy(student)
for p in teacher.parameters():
    p.requires_grad_(False)
x1 = torch.randn(5, 4)
x2 = x1 + 0.1 * torch.randn(5, 4)
s = F.log_softmax(student(x1), dim=-1)
with torch.no_grad():
    t = F.softmax(teacher(x2) / 0.5, dim=-1)
loss = -(t * s).sum(dim=-1).mean()
loss.backward()
"""


def test_an_ema_teacher_of_nested_modules(tmp_path: Path) -> None:
    """A self-distillation teacher copied from a student that holds a Sequential and a module object of the
    program's class with an nn.Parameter and a buffer: the copies are named teacher.head.w, teacher.head.center,
    teacher.body.0.weight; the student's grads are torch's, the teacher's parameters get none."""
    tr = traced(EMA)
    same_as_torch(tr, in_torch(EMA, tmp_path), ["student", "teacher", "x1", "x2", "s", "t", "loss"])
    nodes = tr.result.nodes
    assert {"teacher.head.w", "teacher.head.center", "teacher.body.0.weight", "teacher.body.2.bias"} <= set(nodes)
    assert nodes["teacher.head.w"].grad is None and nodes["student.head.w"].grad is not None


@pytest.mark.parametrize(("program", "words"), [
    ("x = torch.randn(3)\ny = copy.deepcopy(x)\n", "a tensor: x.detach().clone()"),
    ("m = nn.Linear(2, 2)\nopt = torch.optim.SGD(m.parameters(), lr=0.1)\no = copy.deepcopy(opt)\n", "not traced"),
    ("m = nn.MultiheadAttention(4, 2)\np = m.out_proj\nc = copy.deepcopy(m)\n", "submodules the program used"),
])
def test_deepcopy_refusals(program: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program="import copy\nimport torch\nimport torch.nn as nn\n" + program))
    assert words in info.value.message, info.value.message


def test_copies_after_apply_keep_requires_grad_of_the_copy_time(tmp_path: Path) -> None:
    """A module object whose __init__ ran self.apply(...) copies (was refused); the copy's requires_grad is the
    original's at the copy, even when the copy is named later (a list) and the original frozen after; a class named
    like a later variable (`Head`, `head_layer`, a function `head`) does not take their names."""
    program = """
import copy
import torch
import torch.nn as nn

torch.manual_seed(0)


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.apply(self._init)

    def _init(self, m):
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.fc(x)


def head(v):
    return v * 2


student = Head()
teacher = copy.deepcopy(student)
net = nn.Linear(3, 2)
copies = copy.deepcopy([net])
net.requires_grad_(False)
head_layer = nn.Linear(2, 2)
x = torch.randn(4, 3, requires_grad=True)
y = (head_layer(teacher(head(x))) + copies[0](x) + net(x)).sum()
y.backward()
"""
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["student", "teacher", "net", "head_layer", "x", "y"])
    nodes = t.result.nodes
    assert {"teacher.fc.weight", "head_layer.weight"} <= set(nodes) and not any(n.startswith("head#") for n in nodes)
    copied = [n for n, v in nodes.items() if v.is_leaf and n.endswith(".weight") and "net" not in n and "head" not in n
              and not n.startswith(("student", "teacher"))]
    assert copied and all(nodes[n].grad is not None for n in copied), copied  # the copy kept requires_grad


@pytest.mark.parametrize(("program", "words"), [
    ("enc = nn.Linear(4, 4, bias=False)\ndec = nn.Linear(4, 4, bias=False)\ndec.weight = enc.weight\n"
     "m2 = copy.deepcopy(nn.Sequential(enc, dec))\n", "tied ('enc.weight' in two places)"),
    ("bn = nn.BatchNorm1d(3, momentum=None)\nx = torch.randn(4, 3)\na = bn(x)\nbn2 = copy.deepcopy(bn)\n",
     "num_batches_tracked"),
])
def test_deepcopy_refusals_where_the_copy_would_differ(program: str, words: str) -> None:
    """Tied parameters (torch's copy keeps the tie) and a cumulative-average BatchNorm after training (torch's copy
    keeps its batch count): refused, not traced with other numbers."""
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program="import copy\nimport torch\nimport torch.nn as nn\n" + program))
    assert words in info.value.message, info.value.message
