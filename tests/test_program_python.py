"""The Python around models as people paste it: imports of other modules, @dataclass configs and plain classes,
isinstance/hasattr, model.apply(init_fn), string tests on parameter names, and nanoGPT's model.py whole. Each
program is run by real torch too (our own test text); every named tensor's value and grad must match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_program_idioms import check, refused
from test_program_pytorch import EXAMPLES, traced

HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def test_nanogpt_model_py_pasted_whole(tmp_path: Path) -> None:
    """examples/nanogpt.py: karpathy/nanoGPT's model.py unchanged (dataclass config, hasattr for flash attention,
    apply(_init_weights), the scaled c_proj init over named_parameters, weight tying) with torch's names and numbers."""
    program = (EXAMPLES / "nanogpt.py").read_text()
    check(program, ["model", "idx", "logits", "loss"], tmp_path)
    t = traced(program)
    nodes = t.result.nodes
    assert "model.transformer.h.1.attn.c_attn.weight" in nodes and "model.transformer.h.0.ln_1.weight" in nodes
    assert not any(n.startswith(("model.block", "model.layernorm")) for n in nodes)  # no provisional path left
    assert any(n.op == "scaled_dot_product_attention" for n in nodes.values())  # hasattr(F, ...) is True: the flash path
    # the residual projections' init is std 0.02/sqrt(2 * n_layer) = 0.01, the other weights' 0.02 (apply's)
    assert 0.006 < float(np.std(t.arrays["torch/value/model.transformer.h.0.mlp.c_proj.weight"])) < 0.014
    assert 0.015 < float(np.std(t.arrays["torch/value/model.transformer.h.0.mlp.c_fc.weight"])) < 0.025


IMPORTS = HEADER + """import os
import math
import inspect
import matplotlib.pyplot as plt
from tqdm import tqdm
from typing import Optional
from dataclasses import dataclass, field
from torch.nn import Linear, Module
from torch import tensor

torch.manual_seed(0)


class Net(Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = Linear(3, 2)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.fc(x).tanh()


model = Net()
x = tensor([[1.0, 2.0, 3.0]])
losses = []
out = model(x)
loss = out.sum()
loss.backward()
plt.plot([1, 2, 3])
plt.show()
print(os.getcwd())
"""


def test_a_script_s_other_imports_are_fine_until_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os, matplotlib, tqdm, typing and `from torch.nn import Linear, Module` as notebooks have them: only a use of
    what gradtrace does not trace is refused (plt.show() with constants is skipped, with a note)."""
    stubs = tmp_path / "stubs"  # for the run in real torch: matplotlib and tqdm need not be installed
    (stubs / "matplotlib").mkdir(parents=True)
    (stubs / "matplotlib" / "__init__.py").write_text("")
    (stubs / "matplotlib" / "pyplot.py").write_text("def plot(*a, **k):\n    pass\n\ndef show():\n    pass\n")
    (stubs / "tqdm.py").write_text("def tqdm(it):\n    return it\n")
    monkeypatch.syspath_prepend(str(stubs))
    check(IMPORTS, ["model", "x", "out", "loss"], tmp_path)
    notes = traced(IMPORTS).result.notes
    assert any("plt.show() is not run" in n and "matplotlib.pyplot.show" in n for n in notes)


@pytest.mark.parametrize(("tail", "line", "needle"), [
    ("y = tqdm(range(3))\n", 1, "'tqdm.tqdm', imported from a module gradtrace does not trace"),
    ("plt.plot(x)\n", 1, "'matplotlib.pyplot.plot', imported from"),  # a tensor passed to it: refused, not skipped
    ("n = len(inspect.signature(model.forward).parameters)\n", 1, "'inspect.signature', imported"),
])
def test_what_other_modules_do_is_refused_where_used(tail: str, line: int, needle: str) -> None:
    program = IMPORTS.replace("loss.backward()\n", "loss.backward()\n" + tail)
    e = refused(program)
    assert needle in str(e) and e.line == IMPORTS.count("\n") - 3 + line


CONFIG = HEADER + """from dataclasses import dataclass

torch.manual_seed(4)


@dataclass
class Config:
    d_in: int
    hidden: int = 8
    d_out: int = 2
    act: str = "relu"
    bias: bool = True

    def __post_init__(self):
        self.width = self.hidden * 2


class Settings:
    scale = 0.5

    def __init__(self, eps):
        self.eps = eps


class MLP(nn.Module):
    def __init__(self, cfg: Config, settings: Settings):
        super().__init__()
        self.cfg = cfg
        self.fc1 = nn.Linear(cfg.d_in, cfg.width, bias=cfg.bias)
        self.fc2 = nn.Linear(cfg.width, cfg.d_out)
        self.scale = settings.scale + settings.eps

    def forward(self, x):
        h = self.fc1(x)
        h = F.relu(h) if self.cfg.act == "relu" else torch.tanh(h)
        return self.fc2(h) * self.scale


cfg = Config(3, act="tanh")
cfg.d_out = 4
model = MLP(cfg, Settings(eps=0.25))
x = torch.randn(5, 3)
out = model(x)
loss = out.pow(2).mean()
loss.backward()
"""


def test_dataclass_configs_and_plain_classes(tmp_path: Path) -> None:
    """A @dataclass's fields by position, keyword and default, __post_init__, a field set afterwards; a plain class
    with class attributes and __init__; the config kept on the model (self.cfg.act) decides forward's branch."""
    check(CONFIG, ["model", "x", "out", "loss"], tmp_path)
    t = traced(CONFIG)
    assert t.result.nodes["model.fc1.weight"].shape == [16, 3] and t.result.nodes["out"].shape == [5, 4]
    assert not any(k.startswith("model.cfg") for k in t.result.nodes)  # a config is no module: nothing is named for it
    assert t.result.nodes["model.h"].op == "tanh"


@pytest.mark.parametrize(("call", "needle"), [
    ("Config()", "missing argument(s): d_in"),
    ("Config(3, width=2)", "unexpected keyword argument 'width' (its fields: d_in, hidden, d_out, act, bias)"),
    ("Config(3, 4, 5, 'relu', True, 6)", "takes 5 positional argument(s), got 6"),
    ("Config(3, d_in=3)", "multiple values for argument 'd_in'"),
])
def test_a_dataclass_called_wrongly_is_refused_as_python_would(call: str, needle: str) -> None:
    e = refused(CONFIG.replace('cfg = Config(3, act="tanh")', f"cfg = {call}"))
    assert needle in str(e)


def test_a_config_object_is_not_a_module() -> None:
    e = refused(CONFIG.replace("out = model(x)", "out = cfg(x)"))
    assert "the Config object is not callable" in str(e)
    e = refused(CONFIG.replace("out = model(x)", "p = cfg.parameters()\nout = model(x)"))
    assert "Config has no method 'parameters'" in str(e)
    e = refused(HEADER + "from dataclasses import dataclass\n@dataclass\nclass Net(nn.Module):\n    d: int = 3\n")
    assert "a @dataclass nn.Module is not traced" in str(e)
    e = refused(HEADER + "import functools\n@functools.total_ordering\nclass C:\n    pass\n")
    assert "the only class decorator gradtrace understands is @dataclass" in str(e)


INIT = HEADER + """torch.manual_seed(11)


def init_weights(m):
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        m.bias.data.fill_(0.01)
    elif isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 0.0, 0.1)


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.proj = nn.Linear(8, 3)
        self.gain = nn.Parameter(torch.ones(3))
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.split(".")[-1] == "gain":
                torch.nn.init.normal_(p, mean=0.0, std=0.5)

    def _init(self, module):
        if isinstance(module, nn.Conv2d):
            torch.nn.init.zeros_(module.bias)

    def forward(self, x):
        h = self.conv(x).flatten(1)
        return self.proj(h) * self.gain


net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 16))
net.apply(init_weights)
head = Head()
flags = [isinstance(head, nn.Module), isinstance(head, Head), isinstance(net, nn.Sequential), isinstance(net[0], nn.ReLU),
         hasattr(head, "proj"), hasattr(head, "missing"), hasattr(F, "scaled_dot_product_attention"), hasattr(F, "nope"),
         hasattr(net[0], "bias"), isinstance(3, int), isinstance(head.gain, torch.Tensor), isinstance(head.gain, nn.Parameter)]
assert flags == [True, True, True, False, True, False, True, False, True, True, True, True]
x = torch.randn(2, 4)
z = net(x).view(2, 1, 4, 4)
out = head(z)
loss = out.sum()
loss.backward()
"""


def test_apply_an_init_function_and_isinstance_hasattr(tmp_path: Path) -> None:
    """model.apply(init_weights) (a top-level def) and self.apply(self._init) (a bound method): every submodule,
    children first, as torch visits them; isinstance/hasattr answer as Python does (the program asserts them);
    named_parameters() names tested with str.endswith/split inside __init__."""
    check(INIT, ["net", "head", "x", "out", "loss"], tmp_path)
    t = traced(INIT)
    assert np.all(t.arrays["torch/value/net.0.bias"] == np.float32(0.01))
    assert np.all(t.arrays["torch/value/head.conv.bias"] == 0.0)


PROVISIONAL = HEADER + """torch.manual_seed(2)


class Norm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.register_buffer("shift", torch.arange(d) * 0.1)

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5) + self.shift


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm = Norm(d)
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return x + self.fc(self.norm(x))


class Model(nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.blocks = nn.ModuleList([Block(d) for _ in range(n)])
        self.out = nn.ModuleDict(dict(norm=Norm(d), head=nn.Linear(d, 1)))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.out.head(self.out.norm(x))


model = Model(4, 2)
x = torch.randn(3, 4)
y = model(x)
y.sum().backward()
"""


def test_parameters_made_before_their_block_is_placed_take_torch_s_names(tmp_path: Path) -> None:
    """An nn.Parameter (and a buffer) made in the __init__ of a block that a comprehension builds is named under the
    block's place once it has one: model.blocks.1.norm.weight, as torch's named_parameters (was model.block#2...)."""
    check(PROVISIONAL, ["model", "x", "y"], tmp_path)
    nodes = traced(PROVISIONAL).result.nodes
    assert {"model.blocks.0.norm.weight", "model.blocks.1.norm.weight", "model.out.norm.weight",
            "model.blocks.1.norm.shift"} <= set(nodes)
    assert not any(".block." in n or "block#" in n or n.startswith("model.norm") for n in nodes), list(nodes)


@pytest.mark.parametrize(("expr", "needle"), [
    ("isinstance(x, 'Linear')", "isinstance(..., 'Linear')"),
    ("hasattr(x, 3)", "hasattr takes an object and an attribute's name"),
    ("'a.b'.format(1)", "the string method 'format' is not supported"),
])
def test_builtins_refuse_what_they_cannot_answer(expr: str, needle: str) -> None:
    e = refused(HEADER + f"x = torch.ones(2, requires_grad=True)\nv = {expr}\n")
    assert needle in str(e) and e.line == 5
