"""`def` functions and `class Net(nn.Module)` models as tutorials write them: inlined where they are called, with
torch's parameter values and names. Each program also runs in real torch (our own test text) and every named
tensor's value and grad must match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_program_idioms import check, refused
from test_program_pytorch import EXAMPLES, in_torch, same_as_torch, traced

MLP = """import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)

class Net(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.fc1 = nn.Linear(4, hidden)
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)

model = Net()
x = torch.randn(5, 4)
target = torch.tensor([0, 2, 1, 1, 0])
out = model(x)
loss = F.nll_loss(out, target)
loss.backward()
"""


def test_module_class_matches_torch(tmp_path: Path) -> None:
    """Parameters drawn in __init__'s order, named under the variable (model.fc1.weight), grads as torch's."""
    check(MLP + "for name, param in model.named_parameters():\n    print(name, param.grad.norm())\n",
          ["model", "x", "out", "loss"], tmp_path)  # a loop that only prints is accepted (the result has it all)
    t = traced(MLP)
    nodes = t.result.nodes
    assert {"model.fc1.weight", "model.fc1.bias", "model.fc2.weight", "model.fc2.bias"} <= set(nodes)
    assert nodes["model.fc1.weight"].op == "parameter"
    assert nodes["out"].op == "log_softmax" and nodes["out"].grad_fn == "LogSoftmaxBackward0"  # the return, named by its caller
    assert nodes["model.x@1"].op == "relu" and nodes["model.x"].op == "linear"  # forward's locals, under the object's path


def test_the_module_class_example(tmp_path: Path) -> None:
    """examples/module_class.py: the tutorial CNN (conv, pool, dropout in eval mode, flatten, linear) with .to(device)."""
    program = (EXAMPLES / "module_class.py").read_text()
    check(program, ["model", "images", "outputs", "loss"], tmp_path)
    nodes = traced(program).result.nodes
    assert nodes["model.conv1.weight"].grad is not None and nodes["outputs"].op == "linear"


NESTED = """import torch
from torch import nn

torch.manual_seed(3)


class Block(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        self.scale = nn.Parameter(torch.ones(dim) * 0.5)
        self.register_buffer("shift", torch.arange(dim) * 0.1)

    def forward(self, x):
        return x + self.scale * self.net(x) + self.shift


class Model(nn.Module):
    def __init__(self, dim=4, depth=2):
        super().__init__()
        self.first = Block(dim, 8)
        self.second = Block(dim, 6)
        self.depth = depth

    def helper(self, h, k=2.0):
        return h * k

    def forward(self, x):
        h = self.first(x)
        h = self.helper(h)
        for _ in range(self.depth):
            h = h * 0.5
        h = self.second(h)
        return h.pow(2).mean()


def mse(a, b, weight=1.0):
    diff = a - b
    return weight * (diff ** 2).mean()


model = Model()
x = torch.randn(3, 4, requires_grad=True)
loss = model(x) + mse(x, torch.zeros(3, 4), weight=0.5) + mse(x.sum(1), torch.ones(3))
loss.backward()
"""


def test_nested_modules_functions_and_parameters(tmp_path: Path) -> None:
    """Modules holding modules (a Sequential inside), nn.Parameter and register_buffer in __init__, a helper method
    with a default, a loop over an attribute, and a plain function called twice with keywords."""
    check(NESTED, ["model", "x", "loss"], tmp_path)
    nodes = traced(NESTED).result.nodes
    assert {"model.first.net.0.weight", "model.second.net.2.bias", "model.first.scale"} <= set(nodes)
    assert nodes["model.first.scale"].op == "parameter" and nodes["model.first.shift"].grad is None
    assert nodes["mse.diff"].op == "sub"  # the function's locals, under its name; the second call's apart
    assert any(k.startswith("mse.diff") and k != "mse.diff" for k in nodes)


DROPOUT = """import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(7)


class MLP(nn.Module):
    def __init__(self, n_in, n_hidden, n_out, p=0.5):
        super().__init__()
        self.l1 = nn.Linear(n_in, n_hidden)
        self.l2 = nn.Linear(n_hidden, n_out)
        self.p = p

    def forward(self, x):
        h = torch.relu(self.l1(x))
        h = F.dropout(h, p=self.p, training=self.training)
        return self.l2(h)


net = MLP(5, 16, 2)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
opt.zero_grad()
x = torch.randn(8, 5)
y = torch.randint(0, 2, (8,))
logits = net(x)
loss = F.cross_entropy(logits, y)
loss.backward()
"""


@pytest.mark.parametrize("mode", ["", "net.eval()\n"])
def test_training_mode_draws_dropout_as_torch(mode: str, tmp_path: Path) -> None:
    """self.training follows net.train()/net.eval(); in training mode the dropout mask is torch's own draw."""
    program = DROPOUT.replace("logits = net(x)\n", mode + "logits = net(x)\n")
    check(program, ["net", "x", "logits", "loss"], tmp_path)


def test_decorated_functions(tmp_path: Path) -> None:
    """@torch.no_grad() runs the body without a graph; a decorator gradtrace does not know is refused only when the
    function is called (scripts define helpers they never call in the traced part)."""
    program = (
        "import torch\n@torch.no_grad()\ndef accuracy(logits, y):\n    return (logits.argmax(1) == y).float().mean()\n"
        "import functools\n@functools.lru_cache\ndef unused(v):\n    return v\n"
        "torch.manual_seed(0)\nw = torch.randn(3, 2, requires_grad=True)\nx = torch.randn(4, 3)\ny = torch.tensor([0, 1, 1, 0])\n"
        "logits = x @ w\nacc = accuracy(logits, y)\nloss = torch.nn.functional.cross_entropy(logits, y) * acc\nloss.backward()\n")
    check(program, ["w", "logits", "acc", "loss"], tmp_path)
    assert traced(program).result.nodes["acc"].requires_grad is False
    e = refused(program.replace("acc = accuracy(logits, y)", "acc = unused(logits.sum())"))
    assert "decorator @functools.lru_cache" in str(e)


def test_a_function_returning_a_tuple(tmp_path: Path) -> None:
    program = ("import torch\ndef stats(v):\n    m = v.mean()\n    return m, ((v - m) ** 2).mean()\n"
               "x = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)\nmean, var = stats(x)\n(mean * var).backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "mean", "var"])  # each element named by its target, a returned local (m) too
    assert t.result.nodes["mean"].op == "mean" and t.result.nodes["var"].op == "mean" and "stats.m" not in t.result.nodes


def test_in_place_change_of_a_global_inside_a_function_is_seen_outside(tmp_path: Path) -> None:
    program = ("import torch\nx = torch.tensor([1.0, 2.0], requires_grad=True)\nh = x * 3\n"
               "def bump(t):\n    t += 1\n    return t * 2\ny = bump(h)\nloss = (y * h).sum()\nloss.backward()\n")
    check(program, ["x", "y", "loss"], tmp_path)  # h's new value is node bump.t (the in-place alias naming)


@pytest.mark.parametrize(("program", "message"), [
    ("import torch\nclass A(int):\n    pass\n", "only subclasses of nn.Module"),
    ("import torch\nimport torch.nn as nn\nclass A(nn.Module):\n    def forward(self, x):\n        return super().forward(x)\n"
     "y = A()(torch.ones(1))\n", "has no method 'forward'"),
    ("import torch\nimport torch.nn as nn\nclass A(nn.Module):\n    for i in range(2):\n        pass\n", "only methods"),
    ("import torch\nimport torch.nn as nn\nclass A(nn.Module):\n    w = torch.ones(2)\n", "must be a constant"),
    ("import torch\ndef f(x):\n    return f(x)\ny = f(torch.ones(1, requires_grad=True))\n", "nest deeper than 16"),
    ("import torch\ndef f(x):\n    if x:\n        return x\ny = f(torch.ones(1))\n", "depend on the data"),
    ("import torch\ndef f(x, *rest):\n    return x\ny = f(*3)\n", "unpacks a list or tuple here"),
    ("import torch\ndef f(x):\n    return x * 2\ny = f()\n", "missing argument(s): x"),
    ("import torch\ndef f(x):\n    return x * 2\ny = f(torch.ones(1), z=1)\n", "unexpected keyword argument 'z'"),
    ("import torch\nimport torch.nn as nn\nclass A(nn.Module):\n    def forward(self, x):\n        return self.w * x\n"
     "a = A()\ny = a(torch.ones(2))\n", "A has no attribute 'w'"),
    ("import torch\nimport torch.nn as nn\nclass A(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
     "a = A()\ny = a(torch.ones(2))\n", "A has no method 'forward'"),
    ("import torch\nreturn 1\n", "return outside a function"),
    ("import torch\ndef f(x):\n    class G:\n        pass\n    return x\nz = f(torch.ones(1))\n", "class is allowed at the top level"),
    ("import torch\ndef f(x):\n    return x.__class__\n", "dunder"),
])
def test_what_is_refused_says_why(program: str, message: str | None) -> None:
    """Recursion, control flow, *args, wrong arguments, unknown attributes: a SpecError at the line, never a crash."""
    e = refused(program if message is not None else program + "z = f(torch.ones(1))\n")
    assert (message or "last statement") in str(e)
    assert e.line is not None


BLITZ = """import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):

    def __init__(self):
        super(Net, self).__init__()
        # 1 input image channel, 6 output channels, 5x5 square convolution
        # kernel
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        # an affine operation: y = Wx + b
        self.fc1 = nn.Linear(16 * 5 * 5, 120)  # 5*5 from image dimension
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, input):
        # Convolution layer C1: 1 input image channel, 6 output channels,
        # 5x5 square convolution, it uses RELU activation function, and
        # outputs a Tensor with size (N, 6, 28, 28), where N is the size of the batch
        c1 = F.relu(self.conv1(input))
        # Subsampling layer S2: 2x2 grid, purely functional,
        s2 = F.max_pool2d(c1, (2, 2))
        c3 = F.relu(self.conv2(s2))
        s4 = F.max_pool2d(c3, 2)
        s4 = torch.flatten(s4, 1)
        f5 = F.relu(self.fc1(s4))
        f6 = F.relu(self.fc2(f5))
        output = self.fc3(f6)
        return output


torch.manual_seed(0)
net = Net()
print(net)
params = list(net.parameters())
print(len(params))
print(params[0].size())  # conv1's .weight
input = torch.randn(1, 1, 32, 32)
out = net(input)
print(out)
net.zero_grad()
output = net(input)
target = torch.randn(10)  # a dummy target, for example
target = target.view(1, -1)  # make it the same shape as output
criterion = nn.MSELoss()

loss = criterion(output, target)
print(loss)
net.zero_grad()     # zeroes the gradient buffers of all parameters

print('conv1.bias.grad before backward')
print(net.conv1.bias.grad)

loss.backward()

print('conv1.bias.grad after backward')
print(net.conv1.bias.grad)
"""


def test_the_60_minute_blitz_network(tmp_path: Path) -> None:
    """PyTorch's "Deep Learning with PyTorch: A 60 Minute Blitz" neural-network page, pasted whole: prints,
    list(net.parameters()), two calls of net, zero_grad, MSELoss. Each call's locals are nodes of their own."""
    check(BLITZ, ["net", "input", "out", "output", "loss"], tmp_path)
    nodes = traced(BLITZ).result.nodes
    assert nodes["net.conv1.bias"].grad is not None and nodes["output"].op == "linear"
    assert nodes["out"].grad is None  # the first call's output takes no part in the loss


BRANCHES = """import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"


class Head(nn.Module):
    def __init__(self, n_in, n_out, bias=True, act="relu"):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out, bias=bias)
        self.act = act
        self.norm = None

    def forward(self, x, targets=None):
        h = self.lin(x)
        if self.act == "relu":
            h = F.relu(h)
        elif self.act in ("tanh", "gelu"):
            h = torch.tanh(h)
        else:
            pass
        if self.norm is not None:
            h = self.norm(h)
        if self.training and targets is not None:
            for k in range(2):
                h = h * 0.5
        logits = h if not self.training else h * 1.0
        if targets is None:
            loss = None
        else:
            loss = F.cross_entropy(logits, targets)
        return logits, loss


model = Head(4, 3, act="tanh").to(device)
x = torch.randn(6, 4)
y = torch.randint(0, 3, (6,))
logits, loss = model(x, y)
loss.backward()
"""


@pytest.mark.parametrize("act", ["relu", "tanh", "none"])
def test_if_statements_fold_at_compile_time(act: str, tmp_path: Path) -> None:
    """`if self.act == ...: / elif / else`, `if self.norm is not None`, `if self.training and targets is not None`,
    `a if cond else b`, `torch.cuda.is_available()`: the branch torch would take runs; names as if written straight."""
    program = BRANCHES.replace('act="tanh"', f'act="{act}"')
    check(program, ["model", "x", "logits", "loss"], tmp_path)
    nodes = traced(program).result.nodes
    assert "model.h" in nodes and "logits" in nodes  # the last binding of a call's local, and the returned value


def test_top_level_if_and_conditions_that_need_the_data() -> None:
    program = ("import torch\nuse_sq = False\nx = torch.tensor([1.0, -2.0], requires_grad=True)\n"
               "if use_sq or x.dim() > 1:\n    y = x ** 2\nelse:\n    y = x * 3\ny.sum().backward()\n")
    t = traced(program)
    assert t.result.nodes["x"].grad.data == [3.0, 3.0] and t.result.nodes["y"].op == "mul"
    e = refused("import torch\nx = torch.tensor([1.0, -2.0], requires_grad=True)\nif x.sum() > 0:\n    x = x * 2\n")
    assert "depend on the data" in str(e) and e.line == 3
    e = refused("import torch\nx = torch.tensor([1.0], requires_grad=True)\ny = x if x > 0 else -x\n")
    assert "depend on the data" in str(e)


def test_an_if_on_the_loop_counter(tmp_path: Path) -> None:
    """Inside an unrolled loop the counter is a constant: `if i % 2 == 0:` picks a branch per iteration."""
    program = ("import torch\nx = torch.tensor([0.5, 1.5], requires_grad=True)\nh = x\nfor i in range(4):\n"
               "    if i % 2 == 0:\n        h = torch.sin(h)\n    else:\n        h = h * x\nh.sum().backward()\n")
    check(program, ["x", "h"], tmp_path)


def test_the_gpt_lecture_model(tmp_path: Path) -> None:
    """examples/gpt_lecture.py: ModuleList of heads through a comprehension and torch.cat, nn.Sequential(*[Block(...)
    for _ in range(2)]), register_buffer, masked_fill, `if targets is None` (every parameter's value and grad)."""
    program = (EXAMPLES / "gpt_lecture.py").read_text()
    check(program, ["model", "xb", "logits", "loss"], tmp_path)
    nodes = traced(program).result.nodes
    assert "model.blocks.1.sa.heads.1.query.weight" in nodes and "model.lm_head.bias" in nodes  # torch's names
    assert nodes["model.blocks.0.sa.heads.0.tril"].grad is None


def test_layers_built_in_a_loop(tmp_path: Path) -> None:
    """layers.append(...) in a loop, nn.Sequential(*layers), a ModuleList looped over with enumerate and zipped."""
    program = """import torch
import torch.nn as nn

torch.manual_seed(5)


class Deep(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            layers.append(nn.Tanh())
        self.body = nn.Sequential(*layers)
        self.skips = nn.ModuleList([nn.Linear(sizes[-1], sizes[-1]) for _ in range(2)])
        self.gains = [0.5, 0.25]

    def forward(self, x):
        h = self.body(x)
        for i, skip in enumerate(self.skips):
            h = h + skip(h) * (i + 1)
        for g, skip in zip(self.gains, self.skips):
            h = h - g * skip(h)
        for w in [self.gains[0], 2.0]:
            h = h * w
        return h.sum()


net = Deep([3, 5, 4])
x = torch.randn(2, 3, requires_grad=True)
loss = net(x)
loss.backward()
"""
    check(program, ["net", "x", "loss"], tmp_path)
    nodes = traced(program).result.nodes
    assert {"net.body.0.weight", "net.body.2.bias", "net.skips.1.weight"} <= set(nodes)


RESNET = """import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super(BasicBlock, self).__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion*planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion*planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion*planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10):
        super(ResNet, self).__init__()
        self.in_planes = 4

        self.conv1 = nn.Conv2d(3, 4, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = self._make_layer(block, 4, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 8, num_blocks[1], stride=2)
        self.linear = nn.Linear(8*block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1]*(num_blocks-1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def ResNetTiny():
    return ResNet(BasicBlock, [2, 1])


net = ResNetTiny()
x = torch.randn(2, 3, 8, 8)
y = torch.tensor([1, 7])
criterion = nn.CrossEntropyLoss()
outputs = net(x)
loss = criterion(outputs, y)
loss.backward()
for name, p in net.named_parameters():
    print(name, p.grad.abs().sum())
"""


def test_a_resnet_as_its_popular_repository_writes_it(tmp_path: Path) -> None:
    """kuangliu/pytorch-cifar's ResNet, smaller: a class attribute (expansion), blocks made in a helper's loop over a
    list it builds, nn.Sequential(*layers), an empty nn.Sequential as identity, `out += shortcut(x)`, a factory
    function. Parameters carry torch's names: the blocks are named for their place in the Sequential."""
    check(RESNET, ["net", "x", "outputs", "loss"], tmp_path)
    nodes = traced(RESNET).result.nodes
    assert {"net.layer1.0.conv1.weight", "net.layer1.1.bn2.bias", "net.layer2.0.shortcut.0.weight"} <= set(nodes)
    assert not any(k.startswith("net.basicblock") for k in nodes)


def test_load_state_dict_of_another_module_as_the_dqn_tutorial(tmp_path: Path) -> None:
    """PyTorch's DQN tutorial: `target_net.load_state_dict(policy_net.state_dict())`, the target's values under no_grad,
    the Huber loss of the policy's Q values: each target parameter takes the policy's values (was refused)."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass DQN(nn.Module):\n"
               "    def __init__(self, n_observations, n_actions):\n        super().__init__()\n"
               "        self.layer1 = nn.Linear(n_observations, 16)\n        self.layer2 = nn.Linear(16, 16)\n"
               "        self.layer3 = nn.Linear(16, n_actions)\n\n    def forward(self, x):\n        x = F.relu(self.layer1(x))\n"
               "        x = F.relu(self.layer2(x))\n        return self.layer3(x)\n\n\ntorch.manual_seed(0)\n"
               "policy_net = DQN(4, 2)\ntarget_net = DQN(4, 2)\ntarget_net.load_state_dict(policy_net.state_dict())\n"
               "state = torch.randn(5, 4)\naction = torch.tensor([[0], [1], [1], [0], [1]])\nreward = torch.randn(5)\n"
               "next_state = torch.randn(5, 4)\nstate_action_values = policy_net(state).gather(1, action)\n"
               "with torch.no_grad():\n    next_state_values = target_net(next_state).max(1).values\n"
               "expected = next_state_values * 0.99 + reward\ncriterion = nn.SmoothL1Loss()\n"
               "loss = criterion(state_action_values, expected.unsqueeze(1))\nloss.backward()\n")
    check(program, ["policy_net", "target_net", "state_action_values", "next_state_values", "loss"], tmp_path)
    for bad, needle in (("target_net.load_state_dict(torch.load('w.pt'))", "another module's state_dict()"),
                        ("target_net.load_state_dict(nn.Linear(4, 2).state_dict())", "Missing key(s): layer1.weight")):
        assert needle in str(refused(program.replace("target_net.load_state_dict(policy_net.state_dict())", bad)))


def test_loops_over_enumerate_and_zip_of_parameters(tmp_path: Path) -> None:
    """`enumerate(model.named_parameters())` and `zip(a.parameters(), b.parameters())` at the top level (each call
    evaluated once, before the loop, as Python does): an init of every other tensor, a penalty between two models."""
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\n"
               "model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))\n"
               "teacher = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))\n"
               "for i, (name, p) in enumerate(model.named_parameters()):\n    if i % 2 == 0:\n        nn.init.normal_(p, std=0.1)\n"
               "for pt in teacher.parameters():\n    pt.requires_grad_(False)\nreg = 0.0\n"
               "for k, (a, b) in enumerate(zip(model.parameters(), teacher.parameters()), 1):\n"
               "    reg = reg + k * (a - b).pow(2).sum()\nx = torch.randn(5, 4)\n"
               "loss = model(x).pow(2).sum() + teacher(x).sum() + reg\nloss.backward()\n")
    check(program, ["model", "teacher", "x", "reg", "loss"], tmp_path)


def test_top_level_loops_over_what_the_program_built(tmp_path: Path) -> None:
    """A loop over a list built before it is unrolled when reached; its last binding takes the bare name."""
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(2)\nlayers = []\nfor i in range(3):\n"
               "    layers.append(nn.Linear(4, 4))\nx = torch.randn(2, 4, requires_grad=True)\nh = x\n"
               "for layer in layers:\n    h = torch.tanh(layer(h))\nfor i, row in enumerate(h):\n    h = h + row * i\n"
               "loss = h.sum()\nloss.backward()\n")
    check(program, ["x", "h", "loss"], tmp_path)
    nodes = traced(program).result.nodes
    assert "h" in nodes and "h@5" in nodes and "h@6" not in nodes


def test_loops_over_tensor_rows_and_computed_lists(tmp_path: Path) -> None:
    """`for v in x` goes over x's rows as torch does; a list written out with calls is made whole before the loop."""
    program = ("import torch\ntorch.manual_seed(4)\nx = torch.randn(3, requires_grad=True)\ny = x\nfor v in x:\n"
               "    y = y * v\nfor w in [x.exp(), torch.randn(3)]:\n    y = y + w\nloss = y.sum()\nloss.backward()\n")
    check(program, ["x", "y", "loss"], tmp_path)


CALLED_AGAIN = """import torch
import torch.nn as nn
torch.manual_seed(0)
def f(x):
    h = x * 2 + 1
    return h.sum()
def make_layer(n):
    layer = nn.Linear(n, n)
    return layer
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 3)
        self.drop = nn.Dropout(0.5)
        self.bn = nn.BatchNorm1d(3)
    def forward(self, x):
        h = self.drop(F.relu(self.fc1(x))) * 2
        h = self.bn(h)
        return self.drop(h)
import torch.nn.functional as F
x = torch.randn(4, 3, requires_grad=True)
a = f(x)
b = f(x)
l1 = make_layer(3)
l2 = make_layer(3)
model = M()
out1 = model(x)
out2 = model(l2(l1(x)))
out3 = model(x)
loss = a + b + out1.sum() + out2.sum() + out3.sum()
loss.backward()
"""


def test_functions_and_modules_called_again(tmp_path: Path) -> None:
    """A function called twice (its locals' names apart), a factory returning a module (named by the caller's
    variable, l1.weight), a model with dropout and batch norm called twice (a mask and running stats per call)."""
    check(CALLED_AGAIN, ["x", "a", "b", "l1", "l2", "model", "out1", "out2", "loss"], tmp_path)
    nodes = traced(CALLED_AGAIN).result.nodes
    assert {"l1.weight", "l2.bias", "model.drop.mask", "model.drop.mask#4"} <= set(nodes)


TIED = """import torch
import torch.nn as nn
torch.manual_seed(0)
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.b.weight = self.a.weight
    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))
model = Net()
x = torch.randn(2, 3)
emb = nn.Embedding(5, 3)
dec = nn.Linear(3, 5, bias=False)
dec.weight = emb.weight
idx = torch.tensor([1, 4])
loss = model(x).pow(2).sum() + dec(emb(idx)).sum()
loss.backward()
"""


def test_tied_weights_are_one_parameter(tmp_path: Path) -> None:
    """`self.b.weight = self.a.weight` and `dec.weight = emb.weight`: one leaf whose grad sums both uses (it was
    a copy with a grad of its own: a.weight's grad missed b's part, with the verdict 'agree')."""
    check(TIED, ["x", "emb", "loss"], tmp_path)
    t = traced(TIED)
    g = in_torch(TIED, tmp_path)
    np.testing.assert_allclose(t.arrays["torch/grad/model.a.weight"], g["model"].a.weight.grad.numpy(), rtol=2e-5, atol=1e-7)
    # b's own Parameter, drawn when b was made, is gone, as from torch's named_parameters (its draw still ran)
    assert "model.b.weight" not in t.result.nodes and "model.b.weight" not in t.result.parameters


PARAMETERS = """import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.body = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3))
        self.head = nn.Linear(3, 2)
        self.register_buffer("offset", torch.zeros(3))

    def forward(self, x):
        return self.head(self.body(x) * self.scale + self.offset)


model = Net()
for p in model.body[0].parameters():
    p.requires_grad = False
print(sum(p.numel() for p in model.parameters()))
names = [n for n, p in model.named_parameters()]
x = torch.randn(5, 4)
y = torch.tensor([0, 1, 1, 0, 1])
loss = F.cross_entropy(model(x), y)
l2 = sum(p.pow(2).sum() for p in model.parameters() if p.requires_grad)
total = loss + 1e-2 * l2
total.backward()

torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
"""


def test_parameters_in_loops_sums_and_generators(tmp_path: Path) -> None:
    """model.parameters() / named_parameters() in torch's order (own nn.Parameters, then submodules): freezing a
    layer in a loop, an L2 penalty with sum() over a generator, a parameter count; clip_grad_norm_ is noted."""
    check(PARAMETERS, ["model", "x", "loss", "l2", "total"], tmp_path)
    t = traced(PARAMETERS)
    g = in_torch(PARAMETERS, tmp_path)
    assert t.result.nodes["model.body.0.weight"].requires_grad is False
    assert any("clip_grad_norm_" in n for n in t.result.notes)
    assert g["names"] == ["scale", "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias", "head.weight", "head.bias"]
    by_name = PARAMETERS.replace("for p in model.body[0].parameters():\n    p.requires_grad = False\n",
                                 "for n, p in model.named_parameters():\n    if n == 'head.bias' or n == 'scale':\n"
                                 "        p.requires_grad = False\n")
    check(by_name, ["model", "x", "loss", "total"], tmp_path)  # torch's names, relative to the module
    nodes = traced(by_name).result.nodes
    assert nodes["model.head.bias"].requires_grad is False and nodes["model.scale"].requires_grad is False
    assert nodes["model.head.weight"].requires_grad is True


INHERITED = """import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class Base(nn.Module):
    scale = 2.0

    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return torch.tanh(self.fc(x)) * self.scale


class Child(Base):
    scale = 0.5

    def __init__(self, d, k):
        super(Child, self).__init__(d)
        self.extra = nn.Linear(d, k)

    def forward(self, x):
        h = super().forward(x)
        return self.extra(h + x)


model = Child(3, 2)
x = torch.randn(4, 3)
loss = model(x).pow(2).mean()
loss.backward()
"""


def test_a_class_derived_from_the_programs_own(tmp_path: Path) -> None:
    """class Child(Base): inherited methods and class attributes (overridden), super(Child, self).__init__(d) runs
    Base's __init__ on the same object, super().forward(x) Base's forward."""
    check(INHERITED, ["model", "x", "loss"], tmp_path)
    assert {"model.fc.weight", "model.extra.bias"} <= set(traced(INHERITED).result.nodes)
    e = refused("import torch\nclass A(torch.Tensor):\n    pass\n")
    assert "only subclasses of nn.Module" in str(e)


ATTENTION = """import torch
import torch.nn as nn

torch.manual_seed(0)


class Encoder(nn.Module):
    def __init__(self, d=8, h=2):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, h, batch_first=True)
        self.attn2 = nn.MultiheadAttention(d, h)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        a, _ = self.attn(x, x, x)
        x = self.norm(x + a)
        s = x.transpose(0, 1)
        b, w = self.attn2(s, s, s, need_weights=False)
        return x + b.transpose(0, 1)


enc = Encoder()
x = torch.randn(2, 5, 8, requires_grad=True)
loss = enc(x).pow(2).mean()
loss.backward()
"""


def test_multihead_attention_called_as_torch(tmp_path: Path) -> None:
    """`a, _ = self.attn(x, x, x)` with batch_first=True, and torch's default (L, N, E) layout with
    need_weights=False: (output, weights) as torch returns them; keys and values apart from the query too."""
    check(ATTENTION, ["enc", "x", "loss"], tmp_path)
    check(ATTENTION.replace("self.attn(x, x, x)", "self.attn(x, x, x * 2)"), ["enc", "x", "loss"], tmp_path)


def test_adaptive_average_pooling_as_torchvision_writes_it(tmp_path: Path) -> None:
    """nn.AdaptiveAvgPool2d((1, 1)) then torch.flatten, and F.adaptive_avg_pool2d with windows that overlap."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "conv = nn.Conv2d(3, 4, 3)\npool = nn.AdaptiveAvgPool2d((1, 1))\nx = torch.randn(2, 3, 9, 7)\n"
               "h = F.relu(conv(x))\np = torch.flatten(pool(h), 1)\nq = F.adaptive_avg_pool2d(h, (3, 4))\n"
               "loss = p.sum() + q.pow(2).sum()\nloss.backward()\n")
    check(program, ["conv", "x", "p", "q", "loss"], tmp_path)


CONTAINERS = """import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class Block(nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(n):
            self.layers.append(nn.Linear(d, d))
        self.layers.extend([nn.Linear(d, d, bias=False)])
        self.shortcut = nn.Sequential()
        self.empty = nn.ModuleList([])

    def forward(self, x):
        h = x
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        last = self.layers[-1]
        if last.bias is None:
            h = h * 2
        if self.shortcut:
            h = h + 100
        if not self.empty:
            h = h + x
        return h


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(*[Block(3, 2) for _ in range(2)])
        self.tied = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3))
        self.tied[2].weight = self.tied[0].weight
        self.scales = [1.0, 0.5]

    def forward(self, x):
        h = self.blocks(x)
        h = self.tied(h)
        hs = [h * s for s in self.scales]
        pairs = [a * b for a, b in zip(hs, reversed(hs))]
        return sum(pairs, torch.zeros(3)) + sum(v * k for k, v in enumerate(hs))


net = Net()
x = torch.randn(4, 3, requires_grad=True)
loss = net(x).pow(2).mean()
loss.backward()
"""


def test_containers_as_torch_treats_them(tmp_path: Path) -> None:
    """A second review's wrong numbers, fixed: `if last.bias is None` for Linear(bias=False) (was the flag False),
    an empty nn.Sequential/ModuleList is false, a weight tied through `self.tied[2].weight = self.tied[0].weight`
    (was a copy). Also ModuleList.append/extend in __init__, slices of a ModuleList, zip/reversed/enumerate in
    comprehensions, sum() with a tensor start."""
    check(CONTAINERS, ["net", "x", "loss"], tmp_path)
    nodes = traced(CONTAINERS).result.nodes
    assert {"net.blocks.1.layers.2.weight", "net.blocks.0.layers.1.bias"} <= set(nodes)
    e = refused(CONTAINERS.replace("hs = [h * s for s in self.scales]", "hs = (h * s for s in self.scales)"))
    assert "list comprehension" in str(e)


SHORTCUT = RESNET.split("class ResNet")[0] + """model = BasicBlock(3, 4, stride=2)
x = torch.randn(2, 3, 6, 6)
loss = model(x).sum()
loss.backward()
"""


def test_an_attribute_set_again_in_init_keeps_torch_s_name(tmp_path: Path) -> None:
    """`self.shortcut = nn.Sequential()` then `self.shortcut = nn.Sequential(conv, bn)`: model.shortcut.0.weight, as
    torch names it (it was model.shortcut#2.0.weight)."""
    check(SHORTCUT, ["model", "x", "loss"], tmp_path)
    assert "model.shortcut.0.weight" in traced(SHORTCUT).result.nodes


EXPLICIT = """import torch
import torch.nn as nn

torch.manual_seed(0)


class Base(nn.Module):
    def __init__(self, d):
        nn.Module.__init__(self)
        self.d: int = d
        self.backbone = nn.Sequential(nn.Linear(d, d), nn.ReLU())

    def forward(self, x):
        assert x.shape[-1] == self.d, "width"
        return self.backbone(x)


class Head(Base):
    def __init__(self, d, k):
        Base.__init__(self, d)
        self.fc = nn.Linear(d, k)

    def forward(self, x):
        return self.fc(Base.forward(self, x))


def make_pair(d):
    enc = nn.Linear(d, d)
    dec = nn.Linear(d, d)
    return enc, dec


enc, dec = make_pair(3)
model = Head(3, 2)
model.backbone.requires_grad_(False)
blocks = nn.Sequential(*(nn.Linear(3, 3) for _ in range(2)))
x = torch.randn(4, 3, requires_grad=True)
loss = model(dec(enc(blocks(x)))).sum()
loss.backward()
"""


def test_explicit_base_calls_freezing_and_returned_modules(tmp_path: Path) -> None:
    """nn.Module.__init__(self), Base.__init__(self, d), Base.forward(self, x), an annotated attribute, an assert on
    shapes, model.backbone.requires_grad_(False), modules a function returns named by the caller's variables (enc,
    dec), nn.Sequential(*(generator)): values, grads and names as torch's."""
    check(EXPLICIT, ["model", "enc", "dec", "blocks", "x", "loss"], tmp_path)
    nodes = traced(EXPLICIT).result.nodes
    assert nodes["model.backbone.0.weight"].requires_grad is False and nodes["model.fc.weight"].requires_grad is True
    e = refused(EXPLICIT.replace('assert x.shape[-1] == self.d, "width"', 'assert x.shape[-1] == 5, "width"'))
    assert "assert fails" in str(e) and "width" in str(e)


BN_AGAIN = """import torch
import torch.nn as nn

torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        for _ in range(3):
            x = torch.relu(self.bn(self.fc(x)))
        return x


model = Net()
x = torch.randn(5, 3)
loss = model(x).sum()
loss.backward()
"""


def test_batch_norm_buffers_chain_across_calls(tmp_path: Path) -> None:
    """A BatchNorm called three times updates the buffers its last call left, as torch's module does (each call's
    update once started from a fresh module's mean 0, var 1); the latest takes the buffer's name, the earlier ones
    @1 and @2, as torch's module holds the latest."""
    check(BN_AGAIN, ["model", "x", "loss"], tmp_path)
    t, g = traced(BN_AGAIN), in_torch(BN_AGAIN, tmp_path)
    for stat in ("mean", "var"):
        np.testing.assert_allclose(t.arrays[f"torch/value/model.bn.running_{stat}"],
                                   getattr(g["model"].bn, f"running_{stat}").numpy(), rtol=1e-5)
        assert t.result.nodes[f"model.bn.running_{stat}"].inputs[1] == f"model.bn.running_{stat}@2"
        assert t.result.nodes[f"model.bn.running_{stat}@2"].inputs[1] == f"model.bn.running_{stat}@1"


MODULE_DICT = """import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
config = dict(n_embd=8, n_layer=2, vocab=11, act="gelu")


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln = nn.LayerNorm(cfg["n_embd"])
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(cfg["n_embd"], 2 * cfg["n_embd"]),
                                      c_proj=nn.Linear(2 * cfg["n_embd"], cfg["n_embd"])))
        self.act = cfg.get("act", "relu")

    def forward(self, x):
        m = self.mlp
        h = m.c_fc(self.ln(x))
        h = F.gelu(h) if self.act == "gelu" else F.relu(h)
        return x + m["c_proj"](h)


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(cfg["vocab"], cfg["n_embd"]),
            "h": nn.ModuleList([Block(cfg) for _ in range(cfg["n_layer"])]),
            "ln_f": nn.LayerNorm(cfg["n_embd"]),
        })
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets):
        x = self.transformer.wte(idx)
        for block in self.transformer.h:
            x = block(x)
        for name in self.transformer:
            if name == "ln_f":
                x = self.transformer[name](x)
        logits = self.lm_head(x)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


model = GPT(config)
idx = torch.randint(0, 11, (2, 5))
targets = torch.randint(0, 11, (2, 5))
loss = model(idx, targets)
loss.backward()
"""


def test_module_dicts_and_ties_named_as_torch(tmp_path: Path) -> None:
    """nn.ModuleDict (a dict literal and dict(...)) with a ModuleList inside, children by attribute, by key and by
    looping over its keys, a config dict with .get; the GPT tie `wte.weight = lm_head.weight` names the shared
    parameter transformer.wte.weight, where torch registers it first."""
    check(MODULE_DICT, ["model", "loss"], tmp_path)
    nodes = traced(MODULE_DICT).result.nodes
    assert {"model.transformer.h.1.mlp.c_proj.weight", "model.transformer.ln_f.bias"} <= set(nodes)
    assert nodes["model.transformer.wte.weight"].grad is not None and "model.lm_head.weight" not in nodes


IN_PLACE_MODULES = """import torch
import torch.nn as nn
import torch.nn.functional as F
torch.manual_seed(0)
relu = nn.ReLU(inplace=True)
lin = nn.Linear(3, 3)
x = torch.randn(2, 3)
h = lin(x)
r = relu(h)
g = lin(x)
d = F.dropout(g, 0.5, training=True, inplace=True)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.drop = nn.Dropout(0.3, inplace=True)

    def forward(self, x):
        h = self.fc(x)
        skip = h
        h = self.act(h)
        return h + skip


net = Net()
loss = (h * 3).sum() + r.sum() + (g * 2).sum() + d.sum() + net(x).sum()
loss.backward()
"""


def test_in_place_modules_change_their_input(tmp_path: Path) -> None:
    """nn.ReLU(inplace=True)(h), nn.LeakyReLU(0.2, inplace=True) inside forward with `skip = h` kept, and
    F.dropout(g, inplace=True): h itself changes, so every name of it sees the result (the third review found
    these computed out of place: other names kept the old values, with the verdict 'agree')."""
    check(IN_PLACE_MODULES, ["lin", "net", "loss"], tmp_path)
    e = refused(IN_PLACE_MODULES.replace("h = lin(x)\nr = relu(h)", "h = lin(x)\nr = nn.Sequential(nn.ReLU(inplace=True), nn.Tanh())(h)"))
    assert "inside an nn.Sequential" in str(e)


def test_a_module_that_defines_call_instead_of_forward(tmp_path: Path) -> None:
    """fast.ai's course writes `def __call__(self, x)` on an nn.Module: Python calls it, so does gradtrace."""
    program = ("import torch\nfrom torch import nn\n\n\nclass Model(nn.Module):\n    def __init__(self, n_in, nh, n_out):\n"
               "        super().__init__()\n        self.layers = nn.ModuleList([nn.Linear(n_in, nh), nn.ReLU(), nn.Linear(nh, n_out)])\n\n"
               "    def __call__(self, x):\n        for l in self.layers:\n            x = l(x)\n        return x\n\n\n"
               "torch.manual_seed(1)\nmodel = Model(4, 5, 2)\nx = torch.randn(3, 4)\nout = model(x)\nloss = out.pow(2).mean()\n"
               "loss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["model", "x", "out", "loss"])


LAYER_SUBCLASSES = """
import torch
import torch.nn as nn
import torch.nn.functional as F
torch.manual_seed(0)


class BinaryLinear(nn.Linear):
    def forward(self, x):
        w = self.weight
        wb = w + (torch.sign(w) - w).detach()
        return F.linear(x, wb, self.bias)


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        orig_type = x.dtype
        ret = super().forward(x.type(torch.float32))
        return ret.type(orig_type)


class MaskedLinear(nn.Linear):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features).tril())

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = BinaryLinear(4, 6)
        self.ln = LayerNorm(6)
        self.fc2 = MaskedLinear(6, 6, bias=False)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.fc2(self.ln(self.fc1(x))))


net = Net()
n_lin = sum(isinstance(m, nn.Linear) for m in net.modules())
x = torch.randn(3, 4)
loss = net(x).pow(2).sum() * n_lin
loss.backward()
"""


def test_classes_derived_from_torch_layers(tmp_path: Path) -> None:
    """A binarized nn.Linear (forward of its own over self.weight), CLIP's `class LayerNorm(nn.LayerNorm)` calling
    super().forward, a masked nn.Linear with an __init__ of its own: torch's parameters (drawn by the layer's own
    init, named net.fc1.weight), values and grads; isinstance(m, nn.Linear) holds for them."""
    t = traced(LAYER_SUBCLASSES)
    same_as_torch(t, in_torch(LAYER_SUBCLASSES, tmp_path), ["net", "x", "loss"])
    assert sorted(t.result.parameters) == ["net.fc1.bias", "net.fc1.weight", "net.fc2.weight", "net.ln.bias",
                                           "net.ln.weight", "net.out.bias", "net.out.weight"]


LAYER_SUBCLASSES_MORE = """
import torch
import torch.nn as nn
torch.manual_seed(0)


class ZeroLinear(nn.Linear):
    def reset_parameters(self):
        nn.init.constant_(self.weight, 0.1)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class MyLinear(nn.Linear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        nn.init.zeros_(self.bias)


class CausalConv1d(nn.Conv1d):
    def forward(self, x):
        out = super().forward(x)
        return out[..., :-self.padding[0]]


class TrackedBN(nn.BatchNorm1d):
    pass


lin = ZeroLinear(3, 4)
w2 = torch.randn(4)
net = nn.Sequential(MyLinear(4, 4, bias=True), nn.Tanh(), TrackedBN(4))
conv = CausalConv1d(1, 2, kernel_size=3, padding=2)
x = torch.randn(5, 3)
h = net(lin(x) + w2)
rm = net[2].running_mean * 1.0
c = conv(h.unsqueeze(1))
loss = c.pow(2).sum() + rm.sum()
loss.backward()
"""


def test_layer_subclasses_with_their_own_init_star_arguments_and_torch_attributes(tmp_path: Path) -> None:
    """A reset_parameters of the class's own (torch's __init__ calls it: no default draws), super().__init__(*args,
    **kwargs), a subclass without forward inside nn.Sequential, a conv's padding as torch's tuple, a BatchNorm's
    running_mean through the object."""
    t = traced(LAYER_SUBCLASSES_MORE)
    same_as_torch(t, in_torch(LAYER_SUBCLASSES_MORE, tmp_path), ["lin", "w2", "net", "conv", "x", "h", "rm", "c", "loss"])


HELPER_METHODS = """import torch
import torch.nn as nn
torch.manual_seed(0)
class GraphAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.W = nn.Linear(4, 4, bias=False)
        self.a = nn.Parameter(torch.randn(8, 1))
    def forward(self, h):
        Wh = self.W(h)
        e = self._prepare_attentional_mechanism_input(Wh)
        attention = torch.softmax(e, dim=1)
        return attention @ Wh
    def _prepare_attentional_mechanism_input(self, Wh):
        Wh1 = Wh @ self.a[:4, :]
        Wh2 = Wh @ self.a[4:, :]
        e = Wh1 + Wh2.T
        return torch.nn.functional.leaky_relu(e, 0.2)
layer = GraphAttention()
h = torch.randn(5, 4, requires_grad=True)
out = layer(h)
loss = out.pow(2).sum()
loss.backward()
"""


def test_a_helper_method_may_bind_the_name_its_caller_binds(tmp_path: Path) -> None:
    """pyGAT's forward binds `e = self._prepare_attentional_mechanism_input(Wh)`, whose own `e` is another tensor under
    the same object's prefix: both trace (the helper's as layer.e#2), with torch's numbers."""
    t = traced(HELPER_METHODS)
    same_as_torch(t, in_torch(HELPER_METHODS, tmp_path), ["layer", "h", "out", "loss"])
    assert t.result.nodes["layer.e"].op == "leaky_relu" and t.result.nodes["layer.e#2"].op == "add"


EARLY_RETURNS = """import torch
import torch.nn as nn
import torch.nn.functional as F
torch.manual_seed(0)
class FocalLoss(nn.Module):
    def __init__(self, gamma=2.0, reduction='mean'):
        super().__init__()
        self.gamma = gamma
        self.reduction = reduction
    def forward(self, logits, target):
        ce = F.cross_entropy(logits, target, reduction='none')
        pt = torch.exp(-ce)
        loss = (1 - pt) ** self.gamma * ce
        if self.reduction == 'mean':
            return loss.mean()
        elif self.reduction == 'sum':
            return loss.sum()
        return loss
class MyLinear(nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4))
        self.bias = nn.Parameter(torch.zeros(3)) if bias else None
    def forward(self, x):
        out = x @ self.weight.t()
        if self.bias is not None:
            return out + self.bias
        return out
def act(x, kind):
    if kind == "relu":
        return F.relu(x)
    if kind == "tanh":
        y = torch.tanh(x)
        return y * 2
    return x
    print("never")
logits = torch.randn(5, 4, requires_grad=True)
target = torch.tensor([0, 1, 2, 3, 0])
l1 = FocalLoss()(logits, target)
l2 = FocalLoss(reduction='sum')(logits, target)
l3 = FocalLoss(reduction='none')(logits, target)
lin = MyLinear()
lin2 = MyLinear(bias=False)
h = lin(logits) + lin2(logits)
a = act(h, "tanh")
b = act(h, "relu")
c = act(h, "none")
loss = l1 + l2 + l3.sum() + a.sum() + b.sum() + c.pow(2).sum()
loss.backward()
"""


def test_a_return_inside_an_if_ends_the_function_there(tmp_path: Path) -> None:
    """A focal loss's reduction switch (`if self.reduction == 'mean': return loss.mean()` / `elif` / a last return), a
    bias that may be None, a helper's returns in two ifs, code after the last return: the branch the condition picks
    runs, the function ends at its return, with torch's numbers; l1, l2 and a named for the caller's variables."""
    t = traced(EARLY_RETURNS)
    same_as_torch(t, in_torch(EARLY_RETURNS, tmp_path), ["logits", "l1", "l2", "l3", "lin", "lin2", "h", "a", "b", "loss"])
    assert [t.result.nodes[k].op for k in ("l1", "l2", "a", "b")] == ["mean", "sum", "mul", "relu"]


CLEANRL = """import numpy as np
import torch
import torch.nn as nn
torch.manual_seed(0)
def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer
class Agent(nn.Module):
    def __init__(self):
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(4, 8)), nn.Tanh(), layer_init(nn.Linear(8, 1), std=1.0))
        self.actor = layer_init(nn.Linear(4, 2), std=0.01)
    def forward(self, x):
        return self.critic(x).sum() + self.actor(x).sum()
def make(i, o):
    layer = nn.Linear(i, o)
    nn.init.kaiming_normal_(layer.weight)
    return layer
agent = Agent()
head = layer_init(nn.Linear(2, 2))
model = nn.Sequential(make(4, 3), nn.ReLU(), make(3, 1))
x = torch.randn(5, 4)
loss = agent(x) + head(agent.actor(x)).sum() + model(x).sum()
loss.backward()
"""


def test_a_layer_initialised_by_a_helper_is_named_where_it_ends_up(tmp_path: Path) -> None:
    """CleanRL's `layer_init(nn.Linear(...))`: the helper uses the layer's parameters before anything names it; the
    place it ends up names them, as torch's named_parameters does (agent.critic.0.weight, agent.actor.bias, head.weight),
    also when the helper keeps it in a local of its own (`layer = nn.Linear(i, o)`: model.0.weight)."""
    t = traced(CLEANRL)
    same_as_torch(t, in_torch(CLEANRL, tmp_path), ["agent", "head", "model", "x", "loss"])
    assert not [n for n in t.result.nodes if n.startswith(("Linear", "make."))]


PARAMETER_LISTS = """import torch
import torch.nn as nn
torch.manual_seed(0)
class Mix(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.params = nn.ParameterList([nn.Parameter(torch.randn(3, 3)) for i in range(2)])
        self.gains = nn.ParameterDict({"a": nn.Parameter(torch.ones(3)), "b": nn.Parameter(torch.zeros(3))})
        self.out = nn.Linear(3, 1)
    def forward(self, x):
        for i, p in enumerate(self.params):
            x = x @ p + self.gains["a"] * i
        x = self.fc(x) + self.gains["b"]
        return self.out(x)
m = Mix()
x = torch.randn(4, 3)
flat = torch.cat([p.flatten() for p in m.parameters()])
loss = m(x).sum() + 0.01 * (flat * torch.arange(flat.numel())).sum() + len(m.params)
loss.backward()
"""


def test_parameter_lists_and_dicts_are_the_modules_parameters(tmp_path: Path) -> None:
    """nn.ParameterList / nn.ParameterDict (the docs' examples): iterated, indexed, counted; their parameters named for
    their place (m.params.0, m.gains.a) and listed by parameters() in torch's order (the flattened concatenation
    weighs each element by its position)."""
    t = traced(PARAMETER_LISTS)
    same_as_torch(t, in_torch(PARAMETER_LISTS, tmp_path), ["m", "x", "flat", "loss"])
    assert {"m.params.0", "m.params.1", "m.gains.a", "m.gains.b"} <= set(t.result.nodes)
    appended = ("import torch\nimport torch.nn as nn\nclass Poly(nn.Module):\n    def __init__(self, degree):\n"
                "        super().__init__()\n        self.coeffs = nn.ParameterList()\n        for d in range(degree + 1):\n"
                "            self.coeffs.append(nn.Parameter(torch.tensor(0.1 * (d + 1))))\n    def forward(self, x):\n"
                "        y = torch.zeros_like(x)\n        for d, c in enumerate(self.coeffs):\n            y = y + c * x ** d\n"
                "        return y\nmodel = Poly(3)\nx = torch.linspace(-1, 1, 7)\nloss = ((model(x) - torch.sin(x)) ** 2).mean()\n"
                "loss.backward()\n")
    t = traced(appended)  # an empty ParameterList grown by append: each parameter named for its place
    same_as_torch(t, in_torch(appended, tmp_path), ["model", "x", "loss"])


def test_module_dict_of_pairs_as_the_docs_write_it(tmp_path: Path) -> None:
    """nn.ModuleDict([['lrelu', nn.LeakyReLU()], ['prelu', nn.PReLU()]]) (the docs' list of pairs), picked by a key
    given to forward: torch's numbers, the PReLU's weight named m.activations.prelu.weight."""
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\nclass MyModule(nn.Module):\n"
               "    def __init__(self):\n        super().__init__()\n"
               "        self.choices = nn.ModuleDict({'conv': nn.Conv2d(3, 4, 3), 'pool': nn.MaxPool2d(3)})\n"
               "        self.activations = nn.ModuleDict([['lrelu', nn.LeakyReLU()], ['prelu', nn.PReLU()]])\n"
               "    def forward(self, x, choice, act):\n        return self.activations[act](self.choices[choice](x))\n"
               "m = MyModule()\nx = torch.randn(1, 3, 6, 6)\nloss = m(x, 'conv', 'prelu').sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["m", "x", "loss"])
    assert "m.activations.prelu.weight" in t.result.nodes


def test_a_helper_method_called_twice_binding_the_callers_name(tmp_path: Path) -> None:
    """`x = self.helper(x)` twice, the helper binding x twice itself (all under the object's prefix): torch's numbers,
    each binding its own node."""
    program = ("import torch\nimport torch.nn as nn\nclass M(nn.Module):\n    def __init__(self):\n"
               "        super().__init__()\n        self.fc = nn.Linear(3, 3)\n    def helper(self, x):\n"
               "        x = self.fc(x)\n        x = x.relu()\n        return x\n    def forward(self, x):\n"
               "        x = self.helper(x)\n        x = self.helper(x)\n        return x\ntorch.manual_seed(0)\nm = M()\n"
               "x = torch.randn(2, 3)\nout = m(x)\nloss = out.sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["m", "x", "out", "loss"])
    assert sum(n.op == "linear" for n in t.result.nodes.values()) == 2
