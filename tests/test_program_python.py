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
    program = IMPORTS.replace("loss.backward()\n", tail + "loss.backward()\n")
    e = refused(program)
    assert needle in str(e) and e.line == IMPORTS.count("\n") - 4 + line


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
         hasattr(head, "proj"), hasattr(head, "missing"), hasattr(F, "scaled_dot_product_attention"), hasattr(head, "forward"),
         hasattr(net[0], "bias"), isinstance(3, int), isinstance(head.gain, torch.Tensor), isinstance(head.gain, nn.Parameter),
         hasattr(net[0], "reset_parameters"), hasattr(net[1], "reset_parameters")]
assert flags == [True, True, True, False, True, False, True, True, True, True, True, True, True, False]
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
    ("hasattr(F, 'grid_sample')", "hasattr(F, 'grid_sample'): gradtrace does not trace F.grid_sample"),
    ("hasattr(nn, 'LazyConv3d')", "gradtrace does not trace nn.LazyConv3d"),
    ("hasattr(nn.Linear(2, 2), 'some_hook')", "cannot tell whether nn.Linear has it"),
    ("hasattr(x, 'is_nested')", "cannot tell whether torch.Tensor has it"),
    ("isinstance(x, 'Linear')", "isinstance(..., 'Linear')"),
    ("hasattr(x, 3)", "hasattr takes an object and an attribute's name"),
    ("'{0}{}'.format(1, 2)", "cannot switch between automatic field numbering"),
    ("'{!x}'.format(1)", "unknown conversion specifier x"),
    ("'{}'.format(x.shape)", "values is not traced: gradtrace formats numbers and strings"),
    ("'{0.__class__}'.format(1)", "the field '{0.__class__}' is not supported here"),
    ("'{0[0]}'.format([1])", "the field '{0[0]}' is not supported here"),
    ("'{:{}}'.format(1, 5)", "a field inside a format spec is not supported"),
    ("'{:99999}'.format(1)", "widths and precisions of up to 3 digits"),
    ("'a.b'.casefold()", "the string method 'casefold' is not supported"),
])
def test_builtins_refuse_what_they_cannot_answer(expr: str, needle: str) -> None:
    e = refused(HEADER + f"x = torch.ones(2, requires_grad=True)\nv = {expr}\n")
    assert needle in str(e) and e.line == 5


TRANSFER = HEADER + """torch.manual_seed(6)


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.features(x))


model = Backbone()
for param in model.parameters():
    param.requires_grad = False
model.fc = nn.Linear(8, 2)
x = torch.randn(5, 4)
out = model(x)
loss = F.cross_entropy(out, torch.tensor([0, 1, 1, 0, 1]))
loss.backward()
"""


def test_a_replaced_head_takes_the_old_one_s_names(tmp_path: Path) -> None:
    """Transfer learning: freeze the backbone, replace model.fc. The new head is model.fc.weight (was model.fc#2)
    and the old one is gone from the parameters, as torch's named_parameters; the frozen ones have no grad."""
    check(TRANSFER, ["model", "x", "out", "loss"], tmp_path)
    t = traced(TRANSFER)
    assert t.result.nodes["model.fc.weight"].shape == [2, 8] and t.result.nodes["model.fc.weight"].grad is not None
    assert not any("#" in p for p in t.result.parameters) and t.result.nodes["model.features.0.weight"].grad is None


MODULES_INIT = HEADER + """torch.manual_seed(8)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) + x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.layers = nn.Sequential(Block(4), Block(4))
        self.fc = nn.Linear(4, 3)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        for m in self.modules():
            if isinstance(m, Block):
                nn.init.constant_(m.bn.weight, 0.5)

    def forward(self, x):
        h = self.layers(F.relu(self.stem(x)))
        return self.fc(h.mean(dim=(2, 3)))


model = Net()
names = [n for n, _ in model.named_modules()]
assert names == ["", "stem", "layers", "layers.0", "layers.0.conv", "layers.0.bn", "layers.1", "layers.1.conv",
                 "layers.1.bn", "fc"]
assert [n for n, _ in model.named_children()] == ["stem", "layers", "fc"] and len(list(model.layers.children())) == 2
x = torch.randn(2, 1, 5, 5)
out = model(x)
loss = out.logsumexp(dim=1).mean()
loss.backward()
"""


def test_init_over_self_modules_as_torchvision_does(tmp_path: Path) -> None:
    """torchvision's ResNet init: `for m in self.modules(): if isinstance(m, nn.Conv2d): kaiming_normal_(...)`;
    modules()/named_modules()/children() list what torch lists, in its order and names."""
    check(MODULES_INIT, ["model", "x", "out", "loss"], tmp_path)
    t = traced(MODULES_INIT)
    assert np.all(t.arrays["torch/value/model.layers.1.bn.weight"] == 0.5)


BINDINGS = HEADER + """import math

torch.manual_seed(9)


class Attn(nn.Module):
    scale_pow = -0.5

    def __init__(self, d, n_head):
        super().__init__()
        self.d = d
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d)

    @property
    def head_size(self):
        return self.d // self.n_head

    @property
    def causal(self):
        return True

    @staticmethod
    def split(x, n):
        B, T, C = x.shape
        return x.view(B, T, n, C // n).transpose(1, 2)

    @classmethod
    def tiny(cls):
        return cls(8, 2)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = self.split(q, self.n_head), Attn.split(k, self.n_head), self.split(v, self.n_head)
        att = (q @ k.transpose(-2, -1)) * self.head_size ** self.scale_pow
        if self.causal:
            att = att.masked_fill(torch.triu(torch.ones(4, 4, dtype=torch.bool), 1), float("-inf"))
        y = att.softmax(dim=-1) @ v
        return y.transpose(1, 2).reshape(x.shape)


model = Attn.tiny()
x = torch.randn(2, 4, 8)
y = model(x)
loss = y.square().mean()
loss.backward()
"""


def test_properties_static_and_class_methods(tmp_path: Path) -> None:
    """@property read as an attribute (also in an if), @staticmethod through self and the class, a @classmethod
    factory whose object the caller names (model.qkv.weight)."""
    check(BINDINGS, ["model", "x", "y", "loss"], tmp_path)
    assert "model.qkv.weight" in traced(BINDINGS).result.nodes


LLAMA = HEADER + """from dataclasses import dataclass
from typing import Optional

torch.manual_seed(10)


@dataclass
class ModelArgs:
    dim: int = 16
    n_layers: int = 2
    n_heads: int = 2
    vocab_size: int = 32
    multiple_of: int = 8
    norm_eps: float = 1e-5
    max_seq_len: int = 8


class RMSNorm(torch.nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        output = self._norm(x.float()).type_as(x)
        return output * self.weight


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, multiple_of: int):
        super().__init__()
        hidden_dim = int(2 * hidden_dim / 3)
        hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.layer_id = layer_id
        self.feed_forward = FeedForward(dim=args.dim, hidden_dim=4 * args.dim, multiple_of=args.multiple_of)
        self.attention_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, eps=args.norm_eps)

    def forward(self, x: torch.Tensor):
        h = x + self.feed_forward(self.attention_norm(x))
        out = h + self.feed_forward(self.ffn_norm(h))
        return out


class Transformer(nn.Module):
    def __init__(self, params: ModelArgs):
        super().__init__()
        self.params = params
        self.tok_embeddings = nn.Embedding(params.vocab_size, params.dim)
        self.layers = torch.nn.ModuleList()
        for layer_id in range(params.n_layers):
            self.layers.append(TransformerBlock(layer_id, params))
        self.norm = RMSNorm(params.dim, eps=params.norm_eps)
        self.output = nn.Linear(params.dim, params.vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor, targets: Optional[torch.Tensor] = None):
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        h = self.norm(h)
        logits = self.output(h).float()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


model = Transformer(ModelArgs())
tokens = torch.randint(0, 32, (2, 8))
loss = model(tokens, torch.randint(0, 32, (2, 8)))
loss.backward()
"""


def test_llama_style_rmsnorm_swiglu_model(tmp_path: Path) -> None:
    """LLaMA's shapes of code: a ModelArgs @dataclass, RMSNorm with torch.rsqrt and an nn.Parameter made in blocks
    appended to a ModuleList in a loop (named model.layers.1.ffn_norm.weight), SwiGLU with int() and // sizes."""
    check(LLAMA, ["model", "tokens", "loss"], tmp_path)
    nodes = traced(LLAMA).result.nodes
    assert "model.layers.1.ffn_norm.weight" in nodes and nodes["model.layers.0.feed_forward.w1.weight"].shape == [48, 16]


NAMED = HEADER + """from collections import OrderedDict

torch.manual_seed(12)


class DenseLike(nn.Module):
    def __init__(self, n_blocks=2, width=4):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(1, width, 3, padding=1)),
            ("norm0", nn.BatchNorm2d(width)),
            ("relu0", nn.ReLU()),
        ]))
        for i in range(n_blocks):
            self.features.add_module("block%d" % (i + 1), nn.Conv2d(width, width, 3, padding=1))
        for i in range(n_blocks):
            setattr(self, f"head{i}", nn.Linear(width, 2))
        self.add_module("scale", nn.Linear(2, 2, bias=False))
        self.n_blocks = n_blocks

    def forward(self, x):
        h = self.features(x).mean(dim=(2, 3))
        out = sum(getattr(self, f"head{i}")(h) for i in range(self.n_blocks))
        extra = getattr(self, "missing", None)
        return self.scale(out) if extra is None else out


model = DenseLike()
assert [n for n, _ in model.features.named_children()] == ["conv0", "norm0", "relu0", "block1", "block2"]
x = torch.randn(2, 1, 6, 6)
out = model(x)
loss = out.pow(2).sum()
loss.backward()
"""


def test_modules_named_by_strings(tmp_path: Path) -> None:
    """nn.Sequential(OrderedDict([...])), seq.add_module("block%d" % (i + 1), ...), setattr(self, f"head{i}", ...),
    self.add_module(...), getattr(self, f"head{i}") and getattr's default: torch's names (model.features.block2.weight)."""
    check(NAMED, ["model", "x", "out", "loss"], tmp_path)
    nodes = traced(NAMED).result.nodes
    assert {"model.features.conv0.weight", "model.features.block2.weight", "model.head1.bias", "model.scale.weight"} <= set(nodes)


@pytest.mark.parametrize(("expr", "needle"), [
    ('f"{3:1000000000}"', "the format spec '1000000000' is not supported"),
    ('"%1000000d" % 3', "the % directive '%1000000d' is not supported"),
    ('"ab" * 3', "is not a tensor expression or number arithmetic"),
    ('"".join([f"{1:>999}"] * 11)', "over the limit of 10000"),
    ('f"{1:>999}".replace(" ", "yyyyyyyyyyyy")', "over the limit of 10000"),
    ('f"{1:>999}" + f"{1:>999}" * 1', "is not a tensor expression or number arithmetic"),
])
def test_string_building_is_bounded(expr: str, needle: str) -> None:
    e = refused(HEADER + f"x = torch.ones(2, requires_grad=True)\nv = {expr}\n")
    assert needle in str(e)


TRAIN = (EXAMPLES / "training_loop.py").read_text().replace("range(1000)", "range(EPOCHS)")

MANUAL = HEADER + """torch.manual_seed(1)
X = torch.randn(32, 3)
y = torch.randn(32, 1)
w = torch.randn(3, 1, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
for epoch in range(EPOCHS):
    for i in range(0, 32, 8):
        xb = X[i:i + 8]
        yb = y[i:i + 8]
        loss = ((xb @ w + b - yb) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= 0.1 * w.grad
            b -= 0.1 * b.grad
            w.grad.zero_()
            b.grad.zero_()
"""


@pytest.mark.parametrize(("program", "names", "stop"), [
    (TRAIN, ["model", "X", "pred", "loss"], "the trace ends here (what follows would see updated parameters)"),
    (MANUAL, ["w", "b", "xb", "loss"], "in-place update of 'w' by a tensor under torch.no_grad()"),
])
def test_a_training_loop_traces_its_first_step(program: str, names: list[str], stop: str, tmp_path: Path) -> None:
    """A pasted training loop (10,000 epochs: more than a loop may unroll) traces its first forward and backward;
    the trace ends where the next step begins, with a note that says so. Torch's numbers are its first step's
    (the same program with one iteration and no update)."""
    t = traced(program.replace("EPOCHS", "10000"))
    notes = " ".join(t.result.notes)
    assert stop in notes
    first = program.replace("EPOCHS", "1").replace("    optimizer.step()\n", "").replace("losses.append(loss.item())", "pass")
    first = first.split("        with torch.no_grad():")[0].replace("range(0, 32, 8)", "range(0, 8, 8)")
    from test_program_pytorch import in_torch, same_as_torch
    same_as_torch(t, in_torch(first, tmp_path), names)
    assert not any("@" in n for n in t.result.nodes), list(t.result.nodes)  # step 1's bindings are the last: bare names


@pytest.mark.parametrize(("tail", "line", "needle"), [
    ("y.backward()\n", 5, "backward() is called a second time"),
    ("with torch.no_grad():\n    x -= 0.1 * x.grad\n", 5, "in-place update of 'x'"),
    ("z = (x * 3).sum()\nv = z.item()\n", 6, ".item() needs the tensor's value"),
])
def test_what_cannot_follow_backward_ends_the_trace_with_a_note(tail: str, line: int, needle: str) -> None:
    """After the traced backward(), a statement gradtrace cannot trace ends the trace (a note says where and why)
    instead of refusing the program; everything made after backward() is undone."""
    t = traced("import torch\nx = torch.rand(3, requires_grad=True)\ny = x.sum()\ny.backward()\n" + tail)
    note = next(n for n in t.result.notes if "the trace ends at the backward() of line 4" in n)
    assert note.startswith(f"line {line}:") and needle in note
    assert t.result.output == "y" and set(t.result.nodes) == {"x", "y"}  # z, made after backward(), is undone too


RECURRENT = HEADER + """torch.manual_seed(0)
lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)
gru = nn.GRU(8, 5)
rnn = nn.RNN(5, 3, nonlinearity="relu", bias=False)
cell = nn.LSTM(3, 2)
x = torch.randn(2, 6, 3)
out, (h, c) = lstm(x)
h0 = torch.randn(1, 2, 5)
out2, hn = gru(out.transpose(0, 1), h0)
out3, _ = rnn(out2)
seq = torch.randn(4, 3)
one, (h1, c1) = cell(seq, (torch.zeros(1, 2), torch.ones(1, 2)))
loss = out3.pow(2).sum() + h.sum() * c.mean() + hn.sum() + one.sum() + c1.sum()
loss.backward()
"""


def test_recurrent_layers_equal_torch(tmp_path: Path) -> None:
    """nn.LSTM (2 layers, bidirectional, batch_first), nn.GRU with an h0, nn.RNN (relu, no bias), an unbatched LSTM
    with (h0, c0): unrolled over time, every parameter's value and grad, outputs and final states as torch's."""
    check(RECURRENT, ["lstm", "gru", "rnn", "cell", "x", "out", "h", "c", "out2", "hn", "out3", "one", "h1", "c1", "loss"],
          tmp_path)
    nodes = traced(RECURRENT).result.nodes
    assert nodes["lstm.l1_reverse.t0.f"].op == "sigmoid" and nodes["gru.l0.t3.n"].op == "tanh"  # each step's gates
    assert nodes["h"].shape == [4, 2, 4] and nodes["lstm.weight_hh_l1_reverse"].shape == [16, 4]


def test_the_lstm_tagger_tutorial_traces_its_first_step(tmp_path: Path) -> None:
    """examples/lstm_tagger.py, PyTorch's LSTM tutorial pasted whole (word_to_ix built in loops, a training loop of
    300 epochs): its first step, as torch computes it."""
    program = (EXAMPLES / "lstm_tagger.py").read_text()
    t = traced(program)
    assert any("optimizer.step() is not traced" in n and "the trace ends here" in n for n in t.result.notes)
    first = program.split("# See what the scores are after training")[0].replace("range(300)", "range(1)").replace(
        "training_data:\n        # Step 1", "training_data[:1]:\n        # Step 1").replace("optimizer.step()", "pass")
    from test_program_pytorch import in_torch, same_as_torch
    same_as_torch(t, in_torch(first, tmp_path), ["model", "sentence_in", "targets", "tag_scores", "loss"])


def test_a_model_spec_lstm_agrees_with_finite_differences() -> None:
    """The lstm layer in a model spec (the sequence's outputs): torch, the reference engine and finite differences."""
    from services.trace import trace
    from shared.spec import TraceSpec

    spec = TraceSpec.model_validate({
        "inputs": {"x": {"shape": [3, 2, 2], "init": "normal", "seed": 1, "requires_grad": False}}, "dtype": "float64",
        "engines": ["torch", "reference", "numeric"],
        "model": {"input": "x", "layers": [{"type": "lstm", "name": "lstm", "input_size": 2, "hidden_size": 3},
                                            {"type": "gru", "name": "gru", "input_size": 3, "hidden_size": 2, "bidirectional": True}],
                  "loss": {"type": "sum"}},
    })
    t = trace(spec)
    assert t.result.comparison.verdict == "agree" and "numeric" in t.result.engines
    assert {"lstm.weight_ih_l0", "gru.bias_hh_l0_reverse"} <= set(t.result.parameters)


REPLACED = HEADER + """torch.manual_seed(0)


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)


class LoRA(nn.Module):
    def __init__(self, base, r=2):
        super().__init__()
        self.base = base
        self.A = nn.Parameter(torch.randn(r, base.in_features) * 0.1)
        self.B = nn.Parameter(torch.ones(base.out_features, r))

    def forward(self, x):
        return self.base(x) + x @ self.A.t() @ self.B.t()


model = M()
old = model.fc
model.fc = nn.Linear(3, 2)
x = torch.ones(1, 3)
y = model(x) + old(x)
wrapped = M()
wrapped.fc = LoRA(wrapped.fc)
z = wrapped(x)
loss = y.sum() + z.sum()
loss.backward()
"""


def test_a_module_replaced_while_something_still_holds_it(tmp_path: Path) -> None:
    """`old = model.fc; model.fc = nn.Linear(...)` then old(x), and LoRA's `model.fc = LoRA(model.fc)`: both modules
    keep their own parameters (the new one is model.fc#2: torch's named_parameters would call it model.fc), and
    the numbers are torch's (the new one took the old one's parameters, with 'agree')."""
    check(REPLACED, ["x", "y", "z", "loss"], tmp_path)
    nodes = traced(REPLACED).result.nodes
    assert nodes["model.fc.weight"].grad is not None and nodes["model.fc#2.weight"].grad is not None
    assert nodes["wrapped.fc.weight"].grad is not None and nodes["wrapped.fc#2.A"].grad is not None


@pytest.mark.parametrize(("program", "needle"), [
    ("a = nn.Linear(2, 2, bias=False)\nb = nn.Linear(2, 2, bias=False)\nb.weight = a.weight\n"
     "a.weight = nn.Parameter(torch.ones(2, 2))\ny = b(a(torch.ones(1, 2))).sum()\ny.backward()\n",
     "'a.weight' is tied (one Parameter for two modules)"),
    ("lin = nn.Linear(2, 2)\nw = lin.weight\nlin.weight = nn.Parameter(torch.ones(2, 2))\n"
     "y = lin(torch.ones(1, 2)).sum() + w.sum()\ny.backward()\n", "a name still holds 'lin.weight'"),
    ("from lightning import seed_everything\nseed_everything(42)\nlin = nn.Linear(2, 2)\ny = lin(torch.ones(2)).sum()\n"
     "y.backward()\n", "would seed torch's generator"),
    ("layer = nn.TransformerEncoderLayer(8, 2, 16)\nw = layer.linear1.weight\nlayer.linear1.weight = nn.Parameter(torch.ones(16, 8))\n"
     "y = layer(torch.ones(3, 1, 8)).sum() + w.sum()\ny.backward()\n", "a name still holds 'layer.linear1.weight'"),
])
def test_what_torch_does_with_objects_gradtrace_keeps_by_name_is_refused(program: str, needle: str) -> None:
    """A new nn.Parameter for a tied or aliased parameter (torch keeps the old object for the other holder), and a
    call of another library's seed function (its numbers would be torch's only if gradtrace ran it)."""
    assert needle in str(refused(HEADER + "torch.manual_seed(0)\n" + program))


def test_idioms_the_program_reviews_found_refused(tmp_path: Path) -> None:
    """Ordinary code that was refused: a set_seed's `torch.backends.cudnn.deterministic = True`, `size=` keywords
    (d2l's `torch.normal(0, 0.01, size=...)`), `assert 0 <= p <= 1`, `F.softmax(x, -1, dtype=torch.float32)` and
    nn.Linear's reset_parameters copied with nn.init._calculate_fan_in_and_fan_out."""
    from test_program_pytorch import in_torch, same_as_torch

    program = HEADER + ("import math\n\n\nclass MyLinear(nn.Module):\n    def __init__(self, i, o):\n"
                        "        super().__init__()\n        self.weight = nn.Parameter(torch.empty(o, i))\n"
                        "        self.bias = nn.Parameter(torch.empty(o))\n        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))\n"
                        "        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)\n"
                        "        nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))\n\n"
                        "    def forward(self, x):\n        return F.linear(x, self.weight, self.bias)\n\n\n"
                        "torch.manual_seed(0)\ntorch.backends.cudnn.deterministic = True\ntorch.backends.cudnn.benchmark = False\n"
                        "p = 0.3\nassert 0 <= p <= 1, 'p out of range'\nlin = MyLinear(4, 3)\n"
                        "W = torch.normal(0, 0.01, size=(3, 3), requires_grad=True)\nn = torch.randn(size=(2, 4))\n"
                        "scores = lin(n) @ W\nprobs = F.softmax(scores, dim=-1, dtype=torch.float32)\n"
                        "total = scores.double().sum()\nloss = (probs * torch.arange(3.0)).sum() * p + total\n"
                        "loss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree" and t.result.nodes["total"].dtype == "float64"
    same_as_torch(t, in_torch(program, tmp_path), ["lin", "W", "n", "probs", "total", "loss"])


def test_where_and_outer_promote_int64_as_torch(tmp_path: Path) -> None:
    """BERT's `labels = torch.where(mask, tokens, -100)` (int64 stays int64), where of an int64 and a float tensor
    (float), Llama's RoPE `torch.outer(torch.arange(T), freqs)` (int64 times float: float). Were refused as int64."""
    from test_program_pytorch import in_torch, same_as_torch

    program = HEADER + ("torch.manual_seed(0)\nlogits = torch.randn(6, 5, requires_grad=True)\n"
                        "tokens = torch.tensor([1, 2, 3, 4, 0, 2])\nmask = torch.tensor([True, False, True, False, False, True])\n"
                        "labels = torch.where(mask, tokens, -100)\nw = torch.where(mask, tokens, torch.randn(6))\n"
                        "freqs = torch.randn(4, requires_grad=True)\nang = torch.outer(torch.arange(6), freqs)\n"
                        "loss = F.cross_entropy(logits, labels) + (w * logits[:, 0]).sum() + ang.cos().sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    assert (t.result.nodes["labels"].dtype, t.result.nodes["w"].dtype, t.result.nodes["ang"].dtype) == ("int64", "float32", "float32")
    same_as_torch(t, in_torch(program, tmp_path), ["logits", "w", "freqs", "ang", "loss"])
    np.testing.assert_array_equal(t.arrays["torch/value/labels"], [1, -100, 3, -100, -100, 2])


def test_bce_of_values_only_the_run_knows_is_torch_s_to_decide(tmp_path: Path) -> None:
    """F.binary_cross_entropy of `torch.clamp(torch.sigmoid(z), 1e-7, 1 - 1e-7)` against a smoothed `y * 0.9 + 0.05`
    (GAN and label-smoothing code): traced (was refused: "gradtrace cannot tell"); values outside [0, 1] fail at run
    time with torch's message, as torch does; a range known to be outside is refused before."""
    from test_program_pytorch import in_torch, same_as_torch

    program = HEADER + ("torch.manual_seed(0)\nz = torch.randn(6, requires_grad=True)\ny = (torch.rand(6) > 0.5).float()\n"
                        "p = torch.clamp(torch.sigmoid(z), 1e-7, 1 - 1e-7)\nloss = F.binary_cross_entropy(p, y * 0.9 + 0.05) "
                        "+ nn.BCELoss()(1 - torch.sigmoid(z), 1 - y)\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["z", "p", "loss"])
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        traced(program.replace("torch.clamp(torch.sigmoid(z), 1e-7, 1 - 1e-7)", "z * 3"))
    assert "they are in [0.5, 2]" in str(refused(
        HEADER + "x = torch.tensor([0.5, 2.0], requires_grad=True)\ny = F.binary_cross_entropy(x, torch.ones(2))\n"))


def test_legacy_constructors_of_sizes_then_an_init(tmp_path: Path) -> None:
    """pygcn's GraphConvolution: `Parameter(torch.FloatTensor(in, out))`, then `.data.uniform_(-stdv, stdv)` (and
    torch.DoubleTensor, torch.LongTensor of a list): uninitialised memory, as torch.empty, filled as torch fills it."""
    from test_program_pytorch import in_torch, same_as_torch

    program = HEADER + ("import math\nfrom torch.nn.parameter import Parameter\n\n\nclass GraphConvolution(nn.Module):\n"
                        "    def __init__(self, in_features, out_features):\n        super().__init__()\n"
                        "        self.weight = Parameter(torch.FloatTensor(in_features, out_features))\n"
                        "        self.bias = Parameter(torch.FloatTensor(out_features))\n"
                        "        stdv = 1. / math.sqrt(self.weight.size(1))\n        self.weight.data.uniform_(-stdv, stdv)\n"
                        "        self.bias.data.uniform_(-stdv, stdv)\n\n    def forward(self, x, adj):\n"
                        "        return torch.spmm(adj, torch.mm(x, self.weight)) + self.bias\n\n\n"
                        "torch.manual_seed(0)\ngc = GraphConvolution(3, 2)\nadj = torch.eye(4)\nx = torch.randn(4, 3)\n"
                        "idx = torch.LongTensor([0, 2])\nloss = gc(x, adj)[idx].sum()\nloss.backward()\n")
    t = traced(program.replace("torch.spmm", "torch.mm"))
    assert t.result.comparison.verdict == "agree" and t.result.nodes["idx"].dtype == "int64"
    same_as_torch(t, in_torch(program.replace("torch.spmm", "torch.mm"), tmp_path), ["gc", "loss"])


def test_batch_norm_cumulative_average_and_reading_its_buffers(tmp_path: Path) -> None:
    """nn.BatchNorm1d(momentum=None) (the cumulative average: 1/k at the k-th training call) and `bn.running_mean`
    read in the program (before any call: the fresh buffer; after: what the last call left), torch's numbers."""
    from test_program_pytorch import in_torch, same_as_torch

    program = HEADER + ("torch.manual_seed(0)\nbn = nn.BatchNorm1d(4, momentum=None)\nx = torch.randn(6, 4, requires_grad=True)\n"
                        "start = bn.running_var * 2\ny = bn(x)\ny2 = bn(x * 2 + 1)\ny3 = bn(x - 1)\n"
                        "shift = bn.running_mean * 1.0\nloss = (y * y2 * y3).sum() + (shift * x).sum() + start.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["bn", "x", "start", "y3", "shift", "loss"])
    nodes = t.result.nodes  # the latest update takes the buffer's name, the earlier ones @1, @2 (a variable's way)
    assert nodes["bn.running_mean"].expr.endswith("(momentum 0.333333)") and "bn.running_mean@2" in nodes


@pytest.mark.parametrize("program", [
    # a frozen parameter scaled by a number held in a name: the module's parameter changes (was a new node it missed)
    "lin = nn.Linear(3, 3)\nhead = nn.Linear(3, 1)\nlin.requires_grad_(False)\nscale = 0.5\nlin.weight.mul_(scale)\n"
    "x = torch.randn(4, 3)\ny = head(lin(x))\nloss = y.pow(2).sum()\nloss.backward()\n",
    # a piece taken by index inside a method called twice (was "defined twice")
    "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.lin = nn.Linear(4, 8)\n\n"
    "    def forward(self, x):\n        g = self.lin(x).chunk(2, -1)[0]\n        return g * 3\n\n\nm = M()\n"
    "x = torch.randn(3, 4, requires_grad=True)\ny = m(x)\nz = m(y)\nloss = z.sum()\nloss.backward()\n",
    # load_state_dict(strict=False): the names both have
    "small = nn.Sequential(nn.Linear(3, 3))\nbig = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))\n"
    "big.load_state_dict(small.state_dict(), strict=False)\nx = torch.randn(2, 3, requires_grad=True)\ny = big(x)\n"
    "loss = y.pow(2).sum() + small(x).sum()\nloss.backward()\n",
    # torch.normal with std= alone, torch.Tensor(x.shape) (a size, not data)
    "x = torch.randn(2, 3, requires_grad=True)\nc = torch.Tensor(x.shape)\nc.fill_(2.0)\n"
    "n = torch.normal(0.0, std=0.5, size=(2, 3))\nloss = (x * c * n).sum()\nloss.backward()\n",
])
def test_what_the_diff_review_found(program: str, tmp_path: Path) -> None:
    from test_program_pytorch import in_torch, same_as_torch

    program = HEADER + "torch.manual_seed(0)\n" + program
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, [n for n in ("lin", "head", "m", "big", "small", "x", "c", "n", "y", "z", "loss") if f"\n{n} = " in program])


@pytest.mark.parametrize(("program", "needle"), [
    ("class N(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(3, 3)\n"
     "        self.register_buffer('shift', torch.randn(3))\n\n    def forward(self, x):\n        return self.fc(x) + self.shift\n\n\n"
     "a = N()\nb = N()\nb.load_state_dict(a.state_dict())\ny = b(torch.randn(2, 3, requires_grad=True)).sum()\n", "with buffers"),
    ("class T(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)\n\n\n"
     "t = T()\n", "in a statement of its own"),
    ("def f(x, w=torch.ones(2)):\n    return x * w\n\n\ntorch.set_default_dtype(torch.float64)\n"
     "y = f(torch.ones(2, requires_grad=True)).sum()\n", "before the program makes anything"),
])
def test_what_the_diff_review_found_is_refused_with_why(program: str, needle: str) -> None:
    assert needle in str(refused(HEADER + "torch.manual_seed(0)\n" + program))


def test_an_init_function_returns_the_tensor_it_fills(tmp_path: Path) -> None:
    """`nn.Parameter(nn.init.xavier_uniform_(torch.empty(4, 3)))` and `w = nn.init.normal_(torch.empty(3, 2))`: torch's
    init functions return the tensor they fill, named by the statement (was a second, all-zero tensor: wrong numbers)."""
    from test_program_pytorch import in_torch, same_as_torch

    program = HEADER + ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                        "        self.W = nn.Parameter(nn.init.xavier_uniform_(torch.empty(4, 3)))\n\n"
                        "    def forward(self, x):\n        return x @ self.W\n\n\ntorch.manual_seed(0)\nm = M()\n"
                        "w = nn.init.normal_(torch.empty(3, 2)).requires_grad_()\nx = torch.ones(2, 4)\n"
                        "loss = (m(x) @ w).pow(2).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree" and {"m.W", "w"} <= set(t.result.nodes)
    same_as_torch(t, in_torch(program, tmp_path), ["m", "w", "loss"])


def test_a_new_parameter_from_computed_values_and_for_a_part(tmp_path: Path) -> None:
    """`m.weight = nn.Parameter(torch.eye(8) * 0.5)` (values computed from tensors that need no grad: torch's numbers
    at that point of its stream) on nn.MultiheadAttention's out_proj and a transformer layer's linear1, which only
    their parts hold (was refused: "a name still holds ..."); the EMA-style update that reads itself stays refused."""
    from test_program_pytorch import in_torch, same_as_torch

    program = HEADER + ("torch.manual_seed(0)\nattn = nn.MultiheadAttention(8, 2)\nattn.out_proj.weight = nn.Parameter(torch.eye(8) * 0.5)\n"
                        "layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)\n"
                        "layer.linear1.weight = nn.Parameter(torch.randn(16, 8) * 0.1)\nlin = nn.Linear(8, 8)\n"
                        "with torch.no_grad():\n    lin.weight.copy_(attn.out_proj.weight * 2 + 1)\n"
                        "x = torch.randn(5, 2, 8)\ny = lin(layer(attn(x, x, x)[0]))\nloss = y.pow(3).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["attn", "layer", "lin", "y", "loss"])


REVIEWED = HEADER + """from dataclasses import dataclass
from torch.nn.parameter import Parameter

torch.manual_seed(3)


@dataclass
class Base:
    width: int = 4


@dataclass
class Cfg(Base):
    depth: int = 2
    scale = 0.5
    double = scale * 2


def init(m):
    if type(m) == nn.Linear:
        nn.init.constant_(m.bias, 0.1)


class Net(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.body = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.Tanh(), nn.Linear(cfg.width, 3))
        self.g = Parameter(torch.ones(3) * cfg.double)
        self.apply(self._zero)

    @staticmethod
    def _zero(m):
        if isinstance(m, nn.Tanh):
            pass

    @property
    def head(self):
        return self.body[2]

    def shrink(self, width):
        self.cfg.width = width

    def forward(self, x):
        h = self.body[1](self.body[0](x))
        return self.head(h) * self.g


model = Net(Cfg())
model.apply(init)
model.shrink(3)
assert model.cfg.width == 3 and len(list(model.parameters())) == 5 and next(model.parameters()).shape == (3,)
assert len(list(model.named_parameters(recurse=False))) == 1
model.body[2] = nn.Linear(4, 3)
features = nn.Sequential(*list(model.body.children())[:-1])
x = torch.randn(5, 4)
f = features(x)
out = model(x)
loss = out.sum() + f.mean()
loss.backward()
"""


def test_idioms_a_review_found_refused(tmp_path: Path) -> None:
    """A @dataclass derived from another, class attributes made from earlier ones, `from torch.nn.parameter import
    Parameter` (named model.g), type(m) == nn.Linear, a @staticmethod passed to apply, a @property returning a
    module called as one, a config attribute written inside a method, next(model.parameters()),
    named_parameters(recurse=False), a Sequential slot replaced (model.body.2 takes the new one's names) and
    `nn.Sequential(*list(model.body.children())[:-1])` reusing modules."""
    check(REVIEWED, ["model", "x", "f", "out", "loss"], tmp_path)
    nodes = traced(REVIEWED).result.nodes
    assert "model.g" in nodes and nodes["model.body.2.weight"].shape == [3, 4] and "model.body.2#2.weight" not in nodes
    assert np.all(traced(REVIEWED).arrays["torch/value/model.body.0.bias"] == np.float32(0.1))


def test_modules_in_a_plain_list_are_noted() -> None:
    """`self.layers = [nn.Linear(...), ...]`: torch does not register them (the classic bug): the result says so."""
    program = HEADER + ("class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                        "        self.layers = [nn.Linear(2, 2), nn.Linear(2, 2)]\n    def forward(self, x):\n"
                        "        for layer in self.layers:\n            x = layer(x)\n        return x\n"
                        "y = Net()(torch.ones(1, 2)).sum()\ny.backward()\n")
    assert any("holds modules in a plain list: torch does not register them" in n for n in traced(program).result.notes)


def test_objects_made_in_helpers_and_locals_take_torch_s_names(tmp_path: Path) -> None:
    """A block with its own nn.Parameter made inside a helper function (`def make(d): return nn.Sequential(S(d),
    ...)`) or bound to a local in __init__ (`blk = Sub(d); self.first = blk`) is named where it ends up, as torch's
    named_parameters: model.rest.0.0.g and model.first.scale (were make.out.0.g and model.blk.scale)."""
    check(N1, ["model", "x", "y"], tmp_path)
    assert {"model.rest.0.0.g", "model.first.scale", "model.rest.1.g"} <= set(traced(N1).result.nodes)


N1 = """import torch
import torch.nn as nn
torch.manual_seed(0)


class S(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.g = nn.Parameter(torch.randn(d))

    def forward(self, x):
        return x * self.g


class Sub(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d) * 2)

    def forward(self, x):
        return x * self.scale


def make(d):
    return nn.Sequential(S(d), nn.Linear(d, d))


class M(nn.Module):
    def __init__(self, d):
        super().__init__()
        blk = Sub(d)
        self.first = blk
        self.rest = nn.Sequential(make(d), S(d))

    def forward(self, x):
        return self.rest(self.first(x))


model = M(3)
x = torch.randn(2, 3)
y = model(x).sum()
y.backward()
"""


SECOND_REVIEW = HEADER + """import random

torch.manual_seed(5)
random.seed(0)


class Tagger(nn.Module):
    def __init__(self, kind="LSTM"):
        super().__init__()
        self.rnn = getattr(nn, kind)(3, 4)
        self.hidden_cell = (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))
        self.out = nn.Linear(4, 2)

    def begin_state(self, x):
        if x.shape[0] > 100:
            return None
        else:
            return self.hidden_cell

    def forward(self, seq):
        lstm_out, self.hidden_cell = self.rnn(seq.view(len(seq), 1, -1), self.begin_state(seq))
        return self.out(lstm_out.view(len(seq), -1))


model = Tagger()
assert not hasattr(nn.Tanh(), "weight") and hasattr(model.out, "weight")
data = torch.randn(6, 3)
targets = torch.tensor([0, 1, 1, 0, 1, 0])
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
for epoch in range(50):
    for i, (lo, hi) in enumerate(zip([0, 3], [3, 6])):
        for p in model.parameters():
            p.grad = None
        seq = data[lo:hi]
        for t in range(seq.size()[0]):
            step = seq[t]
        scores = model(seq)
        loss = F.cross_entropy(scores, targets[lo:hi])
        loss.backward()
        view = scores[0]
        optimizer.step()
        scheduler.step()
"""


def test_idioms_a_second_review_found(tmp_path: Path) -> None:
    """random.seed (Python's, run: no draw follows), getattr(nn, "LSTM")(...), `lstm_out, self.hidden_cell = self.rnn(...)`, a
    function ending in if/else returns, `p.grad = None`, a nested loop target, range(x.size()[0]), a view made after
    backward() (it crashed the trace's end), optimizer.step() ending the trace (later reads would see old weights),
    a scheduler; the first step as torch computes it, with bare names."""
    t = traced(SECOND_REVIEW)
    assert any("optimizer.step() is not traced" in n and "the trace ends here" in n for n in t.result.notes)
    assert {"scores", "loss", "seq", "lstm_out"} & set(t.result.nodes) >= {"scores", "loss", "seq"}
    assert not any("@" in n for n in t.result.nodes if n.startswith(("scores", "loss", "seq"))), list(t.result.nodes)
    first = SECOND_REVIEW.replace("range(50)", "range(1)").replace("zip([0, 3], [3, 6])", "zip([0], [3])").replace(
        "        optimizer.step()\n        scheduler.step()\n", "")
    from test_program_pytorch import in_torch, same_as_torch
    same_as_torch(t, in_torch(first, tmp_path), ["model", "seq", "scores", "loss", "view"])


@pytest.mark.parametrize("tail", [
    "v = x[1]\nloss.item()\n",
    "opt.step()\nafter = (x ** 2).sum()\n",
])
def test_what_follows_backward_is_cut_cleanly(tail: str) -> None:
    """A view made after backward() and then a statement that ends the trace (a KeyError once); optimizer.step()
    ends the trace, so a value computed after it never shows the weights before the step."""
    t = traced("import torch\nx = torch.randn(4, 2, requires_grad=True)\nopt = torch.optim.SGD([x], lr=0.5)\n"
               "loss = x.sum()\nloss.backward()\n" + tail)
    assert set(t.result.nodes) == {"x", "loss"} and t.result.output == "loss"


def test_recurrent_outputs_are_named_by_their_variables() -> None:
    """`out, hidden = lstm(x)` names the output out (hidden is the (h_n, c_n) pair); `x = torch.randn(3).to(dev)`
    names the tensor x (a no-op method's result was x#1)."""
    t = traced(HEADER + "torch.manual_seed(0)\nlstm = nn.LSTM(3, 2)\nx = torch.randn(4, 1, 3).to('cpu')\n"
                        "out, hidden = lstm(x)\nh, c = hidden\nloss = out.sum() + h.sum() + c.sum()\nloss.backward()\n")
    assert {"x", "out", "loss"} <= set(t.result.nodes) and "x#1" not in t.result.nodes


CELLS = HEADER + """torch.manual_seed(0)
lstm_cell = nn.LSTMCell(3, 4)
gru_cell = nn.GRUCell(4, 2, bias=False)
rnn_cell = nn.RNNCell(2, 2, nonlinearity="relu")
x = torch.randn(5, 2, 3)
h = torch.zeros(2, 4)
c = torch.zeros(2, 4)
g = None
outs = []
for t in range(5):
    h, c = lstm_cell(x[t], (h, c))
    g = gru_cell(h) if g is None else gru_cell(h, g)
    outs.append(rnn_cell(g))
y = torch.stack(outs)
one = rnn_cell(torch.ones(2))
loss = y.pow(2).sum() + c.sum() + one.sum()
loss.backward()
"""


def test_recurrent_cells_step_by_step(tmp_path: Path) -> None:
    """nn.LSTMCell / GRUCell (no bias) / RNNCell (relu) driven by a loop as decoders are written: each step's h and
    c named by the loop's variables (h@3, c@3, ...), the numbers torch's."""
    check(CELLS, ["lstm_cell", "gru_cell", "rnn_cell", "x", "h", "c", "g", "y", "one", "loss"], tmp_path)
    nodes = traced(CELLS).result.nodes
    assert nodes["h@3"].op == "mul" and nodes["c@3"].op == "add" and nodes["lstm_cell.f"].op == "sigmoid"


def test_a_model_spec_cell_agrees_with_finite_differences() -> None:
    from services.trace import trace
    from shared.spec import TraceSpec

    spec = TraceSpec.model_validate({
        "inputs": {"x": {"shape": [2, 3], "init": "normal", "seed": 2, "requires_grad": False}}, "dtype": "float64",
        "engines": ["torch", "reference", "numeric"],
        "model": {"input": "x", "layers": [{"type": "lstm_cell", "input_size": 3, "hidden_size": 2},
                                            {"type": "rnn_cell", "input_size": 2, "hidden_size": 2, "nonlinearity": "tanh"}],
                  "loss": {"type": "sum"}},
    })
    t = trace(spec)
    assert t.result.comparison.verdict == "agree" and {"0.weight_ih", "1.bias_hh"} <= set(t.result.parameters)


MASKS = """import torch
torch.manual_seed(0)
x = torch.randn(4, 5, requires_grad=True)
T = 5
causal = torch.ones(T, T, dtype=torch.bool).triu(1)
keep = ~causal[:4] | (x > 1.0)
both = torch.logical_and(keep, x < 2.0) ^ (x > 1.5)
rows = keep.any(dim=1, keepdim=True) & both.all(dim=0).logical_not()
y = torch.where(both & rows, x * 2, x.exp()).sum() + torch.any(both).float() * 0
y.backward()
"""


def test_masks_combined_as_torch_combines_them(tmp_path: Path) -> None:
    """~mask, mask | mask, ^, &, torch.logical_and, .any(dim, keepdim), .all(dim).logical_not(), torch.any: bool
    tensors without gradients, the selected values' gradients as torch's."""
    check(MASKS, ["x", "keep", "both", "rows", "y"], tmp_path)
    assert "logical_not: takes bool tensors" in str(refused(HEADER + "x = torch.ones(2, requires_grad=True)\ny = ~(x * 2)\n"))
    e = refused(HEADER + "x = torch.ones(2, requires_grad=True)\ny = (x * 2) | (x > 0)\n")
    assert "logical_or: takes bool tensors (masks)" in str(e)


DCGAN = (EXAMPLES / "dcgan_generator.py").read_text().split("class Generator")[0] + """
netD = Discriminator(1)
netD.apply(weights_init)
print(netD)
criterion = nn.BCELoss()
real = torch.randn(3, nc, 16, 16)
label = torch.full((3,), 1.0)
output = netD(real).view(-1)
errD_real = criterion(output, label)
errD_real.backward()
D_x = output.mean().item()
"""
"""The tutorial's discriminator step on real images (its classes from examples/dcgan_generator.py)."""


def test_the_dcgan_tutorial_s_weights_init(tmp_path: Path) -> None:
    """PyTorch's DCGAN tutorial: `classname = m.__class__.__name__; if classname.find('Conv') != -1:` in the init
    function netD.apply takes (the one use of dunder names accepted), with torch's draws; `.item()` after backward()
    ends the trace."""
    check(DCGAN, ["netD", "real", "output", "errD_real"], tmp_path)
    for bad in ("y = x.__class__\n", "y = x.__class__.__bases__\n", "y = type(x).__dict__\n"):
        assert "dunder name" in str(refused(HEADER + "x = torch.ones(2, requires_grad=True)\n" + bad))


def test_the_dcgan_tutorial_s_generator_step(tmp_path: Path) -> None:
    """examples/dcgan_generator.py: the DCGAN tutorial's Generator (nn.ConvTranspose2d up from a 1x1 noise, as
    printed there) and its step through the Discriminator: every parameter's value and grad is torch's; the
    transposed convs are ConvolutionBackward0."""
    program = (EXAMPLES / "dcgan_generator.py").read_text()
    check(program, ["netG", "netD", "noise", "fake", "output", "errG"], tmp_path)
    t = traced(program)
    assert t.result.nodes["netG.main.0.out"].grad_fn == "ConvolutionBackward0"
    assert t.arrays["torch/value/fake"].shape == (2, 1, 16, 16)


THIRD_REVIEW = HEADER + """torch.manual_seed(1)
lin = nn.Linear(3, 3)
p = nn.Parameter(torch.ones(3))
x = torch.randn(4, 3)
if type(p).__name__ == "Parameter" and type(lin.weight) == nn.Parameter and type(x) == torch.Tensor:
    h = lin(x) * p
else:
    h = lin(x)
m = x > 0
keep = torch.ones_like(m) | m
loss = (h * keep).sum() + (h * torch.zeros_like(m)).sum()


def step(v):
    out = v * 2
    out.backward()
    return out.item()


r = step(loss)
"""


def test_a_third_review_s_findings(tmp_path: Path) -> None:
    """type(p).__name__ of a parameter is 'Parameter' (the branch torch takes), torch.ones_like(mask) stays a bool
    mask (it was float32: x * keep doubled), and a `return out.item()` after backward() inside a function ends the
    trace as the same line at the top level does (it was refused)."""
    check(THIRD_REVIEW, ["lin", "p", "x", "h", "keep", "loss"], tmp_path)
    t = traced(THIRD_REVIEW)
    assert t.result.nodes["keep"].dtype == "bool" and t.result.output == "step.out"
    assert any(n.startswith("line 20: the trace ends at the backward() of line 19") for n in t.result.notes), t.result.notes
    assert "type() of" in str(refused(HEADER + "x = torch.ones(2, requires_grad=True)\nv = type(x.shape)\n"))
    assert "dunder name '__class__'" in str(refused(HEADER + "x = torch.ones(2, requires_grad=True)\nv = getattr(x, '__class__')\n"))


LAMBDAS = HEADER + """torch.manual_seed(0)
swish = lambda x: x * torch.sigmoid(x)


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class Net(nn.Module):
    def __init__(self, act=lambda t: F.gelu(t)):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = act
        self.scale = lambda h: h * 0.5
        self.head = nn.Sequential(Lambda(lambda x: x.view(x.size(0), -1) * 2), nn.Linear(4, 1))

    def forward(self, x):
        proj = lambda z: self.fc(z)
        h = self.act(proj(x))
        return self.head(self.scale(swish(h)))


def make_scale(s):
    return lambda t: t * s


net = Net()
net.apply(lambda m: nn.init.zeros_(m.bias) if isinstance(m, nn.Linear) else None)
mix = lambda a, b=0.5: a * b + (1 - b) * a.tanh()
x = torch.randn(2, 4)
out = make_scale(3.0)(net(x))
loss = mix(out).sum() + mix(out, b=0.25).sum()
loss.backward()
"""


def test_lambdas_as_activations_in_modules_closures_and_apply(tmp_path: Path) -> None:
    """A lambda is a function whose body returns its expression: module attributes, a default argument, a closure over
    a method's locals (`lambda z: self.fc(z)`) and a function's (`make_scale`), Lambda wrappers in nn.Sequential,
    `net.apply(lambda m: nn.init.zeros_(m.bias) if ...)`; its nodes are named as its caller's."""
    check(LAMBDAS, ["net", "out", "loss"], tmp_path)
    t = traced(LAMBDAS)
    assert not any("lambda" in n for n in t.result.nodes)
    assert float(np.abs(t.arrays["torch/value/net.fc.bias"]).max()) == 0.0  # apply's zeros_


DICT_COMPREHENSIONS = HEADER + """torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self, tasks):
        super().__init__()
        self.trunk = nn.Linear(4, 8)
        self.heads = nn.ModuleDict({t: nn.Linear(8, n) for t, n in tasks.items()})
        self.weights = {t: 1.0 / (i + 1) for i, t in enumerate(tasks) if t != "skip"}

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        return {name: head(h) for name, head in self.heads.items()}


net = Net({"age": 1, "kind": 3})
x = torch.randn(5, 4)
outs = net(x)
losses = {k: v.pow(2).mean() * net.weights[k] for k, v in outs.items()}
loss = sum(losses.values())
loss.backward()
"""


def test_dict_comprehensions_make_module_dicts_and_loss_dicts(tmp_path: Path) -> None:
    """A multi-task model: heads in an nn.ModuleDict made by a dict comprehension (named by their keys, drawn in
    order), outputs and losses in dicts, `sum(losses.values())`."""
    check(DICT_COMPREHENSIONS, ["net", "loss"], tmp_path)
    assert "net.heads.kind.weight" in traced(DICT_COMPREHENSIONS).result.nodes


STAR_ARGS = HEADER + """torch.manual_seed(0)
cfg = dict(d_in=4, d_hidden=8, dropout=0.0)


class MLP(nn.Module):
    def __init__(self, d_in, d_hidden, *, dropout=0.1, **kwargs):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, 1)
        self.scale = kwargs.get("scale", 1.0)

    def forward(self, x, *extra, mask=None, **kwargs):
        h = F.relu(self.fc1(x))
        for e in extra:
            h = h + e
        if mask is not None:
            h = h * mask
        return self.fc2(h) * self.scale


class Wrapper(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.inner = MLP(**kwargs)

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def combine(*parts, weight=1.0):
    return sum(parts) * weight


net = Wrapper(**cfg, scale=2.0)
x = torch.randn(3, 4)
bias = torch.randn(8)
m = torch.ones(3, 8)
out = net(x, bias, *[bias], mask=m, unused=1)
loss = combine(*[out.sum(), out.mean()], weight=0.5)
loss.backward()
"""


def test_star_args_kwargs_and_keyword_only_parameters(tmp_path: Path) -> None:
    """`def __init__(self, d_in, *, dropout=0.1, **kwargs)`, `def forward(self, x, *extra, mask=None, **kwargs)`,
    `MLP(**cfg, scale=2.0)`, `self.inner(*args, **kwargs)` and `combine(*[a, b], weight=0.5)` bind as Python binds."""
    check(STAR_ARGS, ["net", "out", "loss"], tmp_path)
    assert "unpacks a dict of keyword arguments here, not the list" in str(  # (a dict's **: its items)
        refused(HEADER + "kw = [3, 2]\nfc = nn.Linear(**kw)\n"))
    assert "multiple values for keyword argument 'out_features'" in str(
        refused(HEADER + "kw = dict(in_features=3, out_features=2)\nfc = nn.Linear(**kw, out_features=4)\n"))
    assert "got an unexpected keyword argument 'k'" in str(refused(HEADER + "def f(x, *, w=1.0):\n    return x * w\n"
                                                                         "y = f(torch.ones(2), k=2)\n"))


LATE_BINDING = HEADER + """torch.manual_seed(0)


def build(x):
    fns = []
    for i in range(3):
        fns.append(lambda t: t * i)
    a = x * 2
    g = lambda t: t + a
    a = x * 10
    keep = lambda t, b=a: t * b
    return fns[0](x) + fns[1](x) + g(x) + keep(x)


class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.hs = nn.ModuleList([nn.Linear(3, 3) for _ in range(3)])

    def forward(self, x):
        calls = [lambda t: h(t) for h in self.hs]
        return calls[0](x) + calls[1](x)


x = torch.randn(2, 3, requires_grad=True)
net = Heads()
y = build(x)
out = net(x)
loss = y.sum() + out.pow(2).sum()
loss.backward()
"""


def test_lambdas_read_their_names_when_they_run_as_python_does(tmp_path: Path) -> None:
    """Late binding: lambdas made in a loop all see the loop's last i, a name rebound after the lambda is read anew,
    `[lambda t: h(t) for h in self.hs]` calls the last head every time, a default (`b=a`) keeps the value of the
    def. (They bound early: wrong grads with verdict agree.)"""
    check(LATE_BINDING, ["x", "net", "y", "out", "loss"], tmp_path)


FUNCTION_VALUES = HEADER + """torch.manual_seed(0)


class MLP(nn.Module):
    def __init__(self, act=F.gelu, out_act=torch.tanh):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.act = act
        self.out_act = out_act

    def forward(self, x):
        return self.out_act(self.act(self.fc(x)))


acts = {"relu": F.relu, "silu": F.silu}
net = MLP(act=acts["silu"])
x = torch.randn(2, 3)
f = torch.sigmoid
y = f(net(x)) + F.normalize(net(x), dim=-1)
loss = y.sum()
loss.backward()
"""


def test_torch_functions_held_as_values(tmp_path: Path) -> None:
    """`act=F.gelu` as a default, `out_act=torch.tanh`, a dict of activations, `f = torch.sigmoid; f(...)`: each
    call is the function's, as torch runs it."""
    check(FUNCTION_VALUES, ["net", "y", "loss"], tmp_path)
    assert {n.op for n in traced(FUNCTION_VALUES).result.nodes.values()} >= {"silu", "tanh", "sigmoid"}


STAR_NUMBERS = HEADER + """torch.manual_seed(0)
shape = (4, 2)


class View(nn.Module):
    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.view(x.size(0), *self.shape)


cfg = [3, 8]
fc = nn.Linear(*cfg)
x = torch.randn(5, 3)
h = View(*shape)(fc(x))
z = torch.zeros(*h.shape)
p = h.permute(0, *[2, 1])
loss = (p * 2).sum() + (h + z).pow(2).sum()
loss.backward()
"""


def test_star_unpacking_of_numbers_in_calls_of_torch(tmp_path: Path) -> None:
    """`x.view(x.size(0), *self.shape)`, `nn.Linear(*cfg)`, `torch.zeros(*h.shape)`, `h.permute(0, *[2, 1])`: the
    numbers as arguments; `*` of tensors passes the tensors (`torch.add(*xs)`, `TensorDataset(*arrays)`); of anything
    else than a list or tuple it is refused, with the reason."""
    check(STAR_NUMBERS, ["fc", "h", "p", "loss"], tmp_path)
    check(HEADER + "xs = [torch.ones(2, requires_grad=True), torch.arange(2.0)]\ny = torch.add(*xs)\ny.sum().backward()\n",
          ["y"], tmp_path)
    assert "unpacks a list or tuple here" in str(refused(HEADER + "x = torch.ones(2)\ny = torch.add(*x.shape[0])\n"))


def test_del_unbinds_names_as_python_does(tmp_path: Path) -> None:
    """`del query` in a method (the annotated transformer's MultiHeadedAttention) and at the top level: the name is
    gone, the values it held stay where they are used; a use after del is refused as Python refuses it."""
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\n\n\nclass Attn(nn.Module):\n"
               "    def __init__(self):\n        super().__init__()\n        self.q = nn.Linear(4, 4)\n\n"
               "    def forward(self, x):\n        query = self.q(x)\n        y = query.softmax(-1)\n        del query\n        return y\n\n\n"
               "model = Attn()\nx = torch.randn(2, 4, requires_grad=True)\ntmp = x * 2\nout = model(tmp)\ndel tmp\n"
               "loss = out.pow(2).sum()\nloss.backward()\n")
    check(program, ["model", "x", "out", "loss"], tmp_path)
    assert "name 'tmp'" in str(refused(program.replace("loss = out.pow(2).sum()", "loss = (out + tmp).pow(2).sum()")))


def test_loop_bounds_read_off_shapes(tmp_path: Path) -> None:
    """`range(0, x.size(0) - 1, step)`, `range(x.shape[1])`, `enumerate(range(...))`: bounds a tensor's shape gives,
    known when the loop is reached (the nn.Transformer tutorial's `for batch, i in enumerate(range(0,
    train_data.size(0) - 1, bptt))`)."""
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(7, 3, requires_grad=True)\nacc = torch.zeros(3)\n"
               "for batch, i in enumerate(range(0, x.size(0) - 1, 2)):\n    acc = acc + x[i] * (batch + 1)\n"
               "for j in range(x.shape[1]):\n    acc = acc * 2 if j % 2 else acc + 1\nloss = acc.pow(2).sum()\nloss.backward()\n")
    check(program, ["x", "acc", "loss"], tmp_path)


def test_a_name_rebound_to_another_object_keeps_positions() -> None:
    """`model = Net(); model = model.to('cpu'); model = Net2()`: only rebindings to the same object, after the
    binding, give an object the bare name (the last Net2 is `model`, the first Net `model@1`)."""
    from test_program_pytorch import traced
    t = traced("import torch\nimport torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self, a, b):\n"
               "        super().__init__()\n        self.fc = nn.Linear(a, b)\n    def forward(self, x):\n        return self.fc(x)\n"
               "model = Net(3, 3)\nmodel = model.to('cpu')\nmodel = Net(3, 4)\nfirst = model\nmodel = Net(4, 2)\n"
               "x = torch.randn(2, 3)\nloss = model(first(x)).sum()\nloss.backward()\n")
    assert t.result.parameters["model.fc.weight"].shape == [2, 4]


NOTEBOOK_ECHOES = """
import torch
from torch import nn
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
sum(p.nelement() for p in net.parameters())
x = torch.randn(2, 3, requires_grad=True)
x.shape
y = net(x)
y
loss = y.sum()
loss.backward()
x.grad
"""


def test_notebook_cells_echoing_a_value_trace_and_say_the_value_is_dropped(tmp_path: Path) -> None:
    """A pasted notebook's bare expressions (a parameter count, `x.shape`, `y`, `x.grad`): computed and dropped, as
    Python drops them outside a notebook; the trace is torch's."""
    from test_program_pytorch import in_torch, same_as_torch

    t = traced(NOTEBOOK_ECHOES)
    same_as_torch(t, in_torch(NOTEBOOK_ECHOES, tmp_path), ["net", "x", "y", "loss"])
    echoed = [n for n in t.result.notes if "is not kept" in n]
    assert [n.split(":")[0] for n in echoed] == ["line 6", "line 8", "line 10", "line 13"], echoed
    assert "unknown function 'nosuch'" in str(refused(HEADER + "x = torch.ones(2, requires_grad=True)\nnosuch(x)\n"
                                                      "x.sum().backward()\n"))


MAKEMORE_LAYERS = """
import torch
torch.manual_seed(42)


class Linear:
    def __init__(self, fan_in, fan_out, bias=True):
        self.weight = torch.randn((fan_in, fan_out)) / fan_in**0.5
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x):
        self.out = x @ self.weight
        if self.bias is not None:
            self.out += self.bias
        return self.out

    def parameters(self):
        return [self.weight] + ([] if self.bias is None else [self.bias])


class Tanh:
    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out

    def parameters(self):
        return []


layers = [Linear(4, 6), Tanh(), Linear(6, 3, bias=False)]
with torch.no_grad():
    layers[-1].weight *= 0.1
    for layer in layers[:-1]:
        if isinstance(layer, Linear):
            layer.weight *= 5 / 3
layers[0].bias = layers[0].bias + 0.5
parameters = [p for layer in layers for p in layer.parameters()]
print(sum(p.nelement() for p in parameters))
for p in parameters:
    p.requires_grad = True
x = torch.randn(5, 4)
for layer in layers:
    x = layer(x)
loss = x.pow(2).mean()
loss.backward()
"""


def test_makemore_layers_as_plain_objects_with_call(tmp_path: Path) -> None:
    """Karpathy's makemore layers: plain classes called through __call__, kept in a list (each named for its
    place, layers.0), `self.out += self.bias` in place on an attribute, the weights scaled under no_grad through
    `layers[-1].weight *= 0.1` before they become leaves, a comprehension with two `for`s over their parameters:
    torch's values and grads."""
    from test_program_pytorch import in_torch, same_as_torch

    t = traced(MAKEMORE_LAYERS)
    g = in_torch(MAKEMORE_LAYERS, tmp_path)
    same_as_torch(t, g, ["loss"])
    for k, name in ((0, "weight"), (0, "bias"), (2, "weight")):
        np.testing.assert_allclose(t.arrays[f"torch/grad/layers.{k}.{name}"], getattr(g["layers"][k], name).grad.numpy(),
                                   rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(t.arrays["torch/value/layers.1.out"], g["layers"][1].out.detach().numpy(), rtol=1e-6)
    # what each attribute holds at the end takes its name (the scaled weight, the last call's out), the first `@1`
    assert t.result.nodes["layers.0.weight"].is_leaf and t.result.nodes["layers.0.weight@1"].op == "div"
    assert "layers.0.out@1" in t.result.nodes and "layers.0.bias@1" in t.result.nodes


REINFORCE_RETURNS = """import numpy as np
import torch
torch.manual_seed(0)
eps = np.finfo(np.float32).eps.item()
eps2 = torch.finfo(torch.float32).eps
w = torch.randn(5, requires_grad=True)
rewards = [1.0, 0.0, 2.0, 1.0, 0.5]
R = 0
returns = []
for r in rewards[::-1]:
    R = r + 0.99 * R
    returns.insert(0, R)
returns = torch.tensor(returns)
returns = (returns - returns.mean()) / (returns.std() + eps)
scale = np.log(1 / 0.07) + np.sqrt(2) * np.pi
lo = torch.finfo(w.dtype).min
edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
row, col = edge_index
a, b = w[:4].view(2, 2) * 2
loss = (w * returns).sum() * scale + eps2 + torch.clamp(w, min=lo).sum() + w[row].sum() * w[col].sum() + (a * b).sum()
loss.backward()
"""


def test_reinforce_returns_with_numpy_constants_list_insert_and_tensor_unpacking(tmp_path: Path) -> None:
    """reinforce.py's discounted returns (`returns.insert(0, R)`, `eps = np.finfo(np.float32).eps.item()`), torch.finfo,
    np.log / np.sqrt / np.pi of numbers, and a tensor unpacked into names (`row, col = edge_index`: its rows, one
    unbind node each, UnbindBackward0 as torch's iteration gives): torch's numbers."""
    from test_program_pytorch import in_torch, same_as_torch

    t = traced(REINFORCE_RETURNS)
    g = in_torch(REINFORCE_RETURNS, tmp_path)
    same_as_torch(t, g, ["w", "returns", "row", "col", "a", "b", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("a", "b")] == [type(g[k].grad_fn).__name__ for k in ("a", "b")] == ["UnbindBackward0"] * 2
    assert "cannot unpack the tensor 'x' of 3 rows into 2 names" in str(refused("import torch\nx = torch.zeros(3, 2)\np, q = x\n"))


PYTHON_RANDOM = """import random
import torch
import torch.nn as nn
random.seed(0)
torch.manual_seed(0)
idx = list(range(6))
random.shuffle(idx)
X = torch.arange(6.0, requires_grad=True)
q = nn.Linear(3, 4)
s = torch.randn(3)
if random.random() < 0.3:
    action = random.randrange(4)
else:
    action = 2
pick = random.choice([0, 1, 2])
loss = (X[torch.tensor(idx[:3])] * torch.tensor([1., 10., 100.])).sum() + q(s)[action] * random.uniform(1, 2) + X[pick]
loss.backward()
"""


def test_python_random_after_a_seed_draws_as_python(tmp_path: Path) -> None:
    """d2l's `random.shuffle(indices)`, an epsilon-greedy `random.random() < eps`, random.choice and random.uniform after
    random.seed(0): Python's own draws, so torch's numbers; without a seed a draw is refused (the run would differ)."""
    from test_program_pytorch import in_torch, same_as_torch

    t = traced(PYTHON_RANDOM)
    same_as_torch(t, in_torch(PYTHON_RANDOM, tmp_path), ["X", "q", "s", "loss"])
    assert "before random.seed" in str(refused("import random\nimport torch\nk = random.randint(0, 3)\n"))


def test_a_call_of_an_untraced_module_on_a_list_of_tensors_is_refused_not_skipped() -> None:
    """`sklearn.utils.shuffle(batch)` could reorder the program's list of tensors: skipping it would give other numbers."""
    e = refused("import torch\nimport sklearn.utils\nbatch = [torch.ones(2), torch.zeros(2)]\nsklearn.utils.shuffle(batch)\n")
    assert "sklearn.utils.shuffle" in str(e)


NAMES_TUTORIAL = """import string
import torch
import torch.nn as nn

all_letters = string.ascii_letters + " .,;'"
n_letters = len(all_letters)

def letterToIndex(letter):
    return all_letters.find(letter)

def lineToTensor(line):
    tensor = torch.zeros(len(line), 1, n_letters)
    for li, letter in enumerate(line):
        tensor[li][0][letterToIndex(letter)] = 1
    return tensor

class RNN(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(RNN, self).__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size, hidden_size)
        self.h2h = nn.Linear(hidden_size, hidden_size)
        self.h2o = nn.Linear(hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, input, hidden):
        hidden = torch.tanh(self.i2h(input) + self.h2h(hidden))
        output = self.h2o(hidden)
        output = self.softmax(output)
        return output, hidden

    def initHidden(self):
        return torch.zeros(1, self.hidden_size)

torch.manual_seed(0)
rnn = RNN(n_letters, 16, 5)
line_tensor = lineToTensor('Albert')
hidden = rnn.initHidden()
for i in range(line_tensor.size()[0]):
    output, hidden = rnn(line_tensor[i], hidden)
loss = nn.NLLLoss()(output, torch.tensor([3]))
loss.backward()
"""


CHAR_LEVEL = """import torch
import torch.nn as nn
import torch.nn.functional as F

data = "hello world, hello pytorch"
chars = sorted(list(set(data)))
data_size, vocab_size = len(data), len(chars)
char_to_ix = {ch: i for i, ch in enumerate(chars)}
ix_to_char = {i: ch for i, ch in enumerate(chars)}

torch.manual_seed(0)
embed = nn.Embedding(vocab_size, 8)
rnn = nn.GRU(8, 16, batch_first=True)
head = nn.Linear(16, vocab_size)
seq_length = 10
inputs = torch.tensor([char_to_ix[ch] for ch in data[0:seq_length]]).unsqueeze(0)
targets = torch.tensor([char_to_ix[ch] for ch in data[1:seq_length + 1]]).unsqueeze(0)
out, h = rnn(embed(inputs))
logits = head(out)
loss = F.cross_entropy(logits.view(-1, vocab_size), targets.view(-1))
loss.backward()
"""


def test_character_level_tutorials_trace_their_strings(tmp_path: Path) -> None:
    """PyTorch's names-classification tutorial (`string.ascii_letters + " .,;'"`, `len(line)`, `all_letters.find(letter)`,
    `for li, letter in enumerate(line)`) and a char-RNN's vocabulary (`sorted(list(set(data)))`, `data[0:seq_length]`,
    `[char_to_ix[ch] for ch in ...]`): Python's strings run while compiling, torch's numbers."""
    from test_program_pytorch import in_torch, same_as_torch

    for program, names in ((NAMES_TUTORIAL, ["rnn", "line_tensor", "output", "loss"]),
                           (CHAR_LEVEL, ["embed", "rnn", "head", "inputs", "targets", "loss"])):
        same_as_torch(traced(program), in_torch(program, tmp_path), names)


def test_a_set_of_words_goes_in_sorted_order_with_a_note() -> None:
    """The word embeddings tutorial's `enumerate(set(test_sentence))`: Python's order changes with each process, so the
    trace numbers the words in sorted order and says so; sets of numbers, `len`, `in` and `sorted` as Python's."""
    t = traced("import torch\nwords = 'b a c a'.split()\nvocab = set(words)\nix = {w: i for i, w in enumerate(vocab)}\n"
               "n = len(vocab) + len(set([3, 1, 3])) + ('a' in vocab)\nx = torch.tensor([ix['a'], ix['c'], n], dtype=torch.float32, requires_grad=True)\n"
               "y = (x * 2).sum()\n")
    assert t.arrays["torch/value/x"].tolist() == [0.0, 2.0, 6.0]
    assert any("sorted order" in n for n in t.result.notes)


def test_legacy_new_and_as_tensor_make_tensors_as_torch(tmp_path: Path) -> None:
    """Udacity's `weight.new(n, b, h).zero_()` hidden state, `w.new([1.0, 2.0])` (data), torch.as_tensor of a list with a
    dtype: torch's tensors; a generator (`yield`) is refused with what to write instead."""
    from test_program_pytorch import in_torch, same_as_torch

    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\nlstm = nn.LSTM(3, 4)\n"
               "weight = next(lstm.parameters()).data\nh0 = weight.new(1, 2, 4).zero_()\nc0 = weight.new(1, 2, 4).zero_()\n"
               "x = torch.randn(5, 2, 3)\nout, (h, c) = lstm(x, (h0, c0))\nb = weight.new([1.0, 2.0])\n"
               "obs = torch.as_tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float32)\n"
               "loss = out.sum() + (h * b.sum()).sum() + obs.sum() * c.sum()\nloss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["lstm", "h0", "b", "obs", "out", "loss"])
    assert "a generator (`yield`) is not traced" in str(refused(
        "import torch\ndef batches(X, n):\n    for i in range(0, 6, n):\n        yield X[i:i + n]\n"
        "X = torch.randn(6, 3)\nfor xb in batches(X, 3):\n    y = xb.sum()\n"))
