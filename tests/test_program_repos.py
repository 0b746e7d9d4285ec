"""Lines of well-known repositories that gradtrace refused or named otherwise than torch, traced against real torch:
PyTorch-GAN's `Tensor = torch.FloatTensor` and `int(np.prod(img_shape))`, CleanRL's GAE line, DiT's keyword arange,
pyGAT's `'attention_{}'.format(i)`, EGNN's module default, SimCLR's fill_diagonal_ and `dtype=bool` mask, Spinning Up's
as_tensor, lit-gpt's config dicts, llama's `.float()` logits, HF's shift and top-p filtering, VICReg's off-diagonal."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nimport numpy as np\ntorch.manual_seed(0)\n"


def test_pytorch_gan_generator_lines(tmp_path: Path) -> None:
    program = (HEAD + "img_shape = (1, 4, 4)\nTensor = torch.FloatTensor\n\n\nclass Generator(nn.Module):\n"
               "    def __init__(self):\n        super().__init__()\n"
               "        self.model = nn.Sequential(nn.Linear(8, int(np.prod(img_shape))), nn.Tanh())\n"
               "    def forward(self, z):\n        img = self.model(z)\n        return img.view(img.size(0), *img_shape)\n\n\n"
               "generator = Generator()\nz = torch.randn(3, 8)\nb, *_ = z.shape\nvalid = Tensor(b, 1).fill_(1.0)\n"
               "critic = nn.Linear(16, 1)\ngen_imgs = generator(z)\n"
               "g_loss = F.binary_cross_entropy_with_logits(critic(gen_imgs.flatten(1)), valid)\ng_loss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["generator", "critic", "valid", "gen_imgs", "g_loss"])


def test_cleanrl_gae_and_spinning_up_lines(tmp_path: Path) -> None:
    # `advantages[t] = lastgaelam = ...` (a chained assignment into an index and a name); as_tensor(..., dtype=)
    program = (HEAD + "values = torch.randn(4, requires_grad=True)\nrewards = torch.tensor([1.0, 0.0, 0.5, 2.0])\n"
               "advantages = torch.zeros(4)\nlastgaelam = 0\nfor t in reversed(range(4)):\n"
               "    nextvalues = values[t + 1] if t < 3 else 0.0\n    delta = rewards[t] + 0.99 * nextvalues - values[t]\n"
               "    advantages[t] = lastgaelam = delta + 0.99 * 0.95 * lastgaelam\n"
               "ratio = torch.exp(values - values.detach())\nclipped = ratio.gt(1.2) | ratio.lt(0.8)\n"
               "clipfrac = torch.as_tensor(clipped, dtype=torch.float32).mean()\n"
               "loss = advantages.pow(2).mean() + (ratio * clipfrac).sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["values", "advantages", "lastgaelam", "clipfrac", "loss"])


def test_keyword_arange_format_and_a_module_default(tmp_path: Path) -> None:
    program = (HEAD + "import math\n\n\ndef timestep_embedding(t, dim, max_period=10000):\n    half = dim // 2\n"
               "    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)\n"
               "    args = t[:, None].float() * freqs[None]\n    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)\n\n\n"
               "class Block(nn.Module):\n    def __init__(self, d, act_fn=nn.SiLU(), heads=2):\n        super().__init__()\n"
               "        self.act = act_fn\n        for i in range(heads):\n"
               "            self.add_module('attention_{}'.format(i), nn.Linear(d, d))\n"
               "    def forward(self, x):\n        return self.act(self.attention_0(x)) + self.attention_1(x)\n\n\n"
               "block = Block(4)\nemb = timestep_embedding(torch.tensor([1, 7]), 4)\nloss = block(emb).pow(2).sum()\nloss.backward()\n")
    t = traced(program)
    assert {"block.attention_0.weight", "block.attention_1.weight"} <= set(t.result.parameters)
    same_as_torch(t, in_torch(program, tmp_path), ["block", "emb", "loss"])


def test_simclr_mask_and_nt_xent(tmp_path: Path) -> None:
    # fill_diagonal_ of the similarity matrix, a mask made with dtype=bool, scatter of a bool mask (HF's top-p)
    program = (HEAD + "z = F.normalize(torch.randn(6, 4, requires_grad=True), dim=1)\nsim = z @ z.T / 0.5\n"
               "sim.fill_diagonal_(-1e9)\nmask = torch.eye(6, dtype=bool)\nn = sim.shape[0] // 2\n"
               "labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])\n"
               "remove = sim.sort(dim=-1, descending=True)[0] < 0\nidx = sim.argsort(dim=-1, descending=True)\n"
               "remove = remove.scatter(1, idx, remove)\nkeep = sim.masked_fill(mask & remove, -1e9)\n"
               "loss = F.cross_entropy(sim, labels) + keep.logsumexp(-1).mean() * 0.01\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["sim"].grad_fn == "CopySlices"
    same_as_torch(t, in_torch(program, tmp_path), ["sim", "remove", "keep", "loss"])


def test_gnn_counts_from_literal_edges(tmp_path: Path) -> None:
    # `int(edge_index.max()) + 1` and `batch.max().item() + 1` of tensors written out: the numbers torch gives; int64
    # max/min/index_select, the sqrt of an int64 degree (the default float dtype)
    program = (HEAD + "edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])\nnum_nodes = int(edge_index.max()) + 1\n"
               "batch = torch.tensor([0, 0, 1, 1])\nnum_graphs = batch.max().item() + 1\nhi, arg = edge_index.max(dim=1)\n"
               "deg = torch.tensor([1, 1, 1, 1])\n"
               "norm = deg.sqrt()\nx = torch.randn(num_nodes, 3, requires_grad=True)\n"
               "ej = edge_index.index_select(1, torch.tensor([1, 0, 3, 2]))\n"
               "pooled = torch.zeros(num_graphs, 3).index_add(0, batch, x[ej[0]] / norm[:, None])\n"
               "loss = pooled.pow(2).sum() * hi.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["norm"].dtype == "float32" and t.result.nodes["hi"].dtype == "int64"
    same_as_torch(t, in_torch(program, tmp_path), ["x", "pooled", "loss"])


def test_config_dicts_and_a_class_annotation(tmp_path: Path) -> None:
    program = (HEAD + "from typing import Optional\nname_to_config = {'tiny': dict(n_embd=4, bias=False)}\n"
               "cfg = name_to_config['tiny'].copy()\ncfg.update(n_embd=6)\ncfg.update({'bias': True})\n\n\n"
               "class Model(nn.Module):\n    last_loss: Optional[torch.Tensor]\n\n"
               "    def __init__(self, n_embd, bias):\n        super().__init__()\n        self.fc = nn.Linear(n_embd, 2, bias=bias)\n"
               "    def forward(self, x):\n        return self.fc(x)\n\n\n"
               "model = Model(**cfg)\nloss = model(torch.randn(3, cfg['n_embd'])).sum() * len(name_to_config['tiny'])\n"
               "loss.backward()\n")
    t = traced(program)
    assert "model.fc.bias" in t.result.parameters and t.result.parameters["model.fc.weight"].shape == [2, 6]
    same_as_torch(t, in_torch(program, tmp_path), ["model", "loss"])


def test_copies_are_not_views(tmp_path: Path) -> None:
    # `.contiguous()` of a slice is a copy (CloneBackward0), and so is flatten of a slice torch cannot view: writing into
    # them changes nothing else (was refused as "a view of labels / c")
    program = (HEAD + "logits = torch.randn(2, 5, 3, requires_grad=True)\nlabels = torch.tensor([[1, 2, 0, 1, 2], [0, 0, 1, 2, 1]])\n"
               "shift_logits = logits[..., :-1, :].contiguous()\nshift_labels = labels[..., 1:].contiguous()\n"
               "shift_labels[:, 0] = -100\nw = torch.randn(4, 4, requires_grad=True)\nc = w * 2\n"
               "off = c[:, 1:].flatten()\nsq = off.pow_(2)\n"
               "loss = F.cross_entropy(shift_logits.view(-1, 3), shift_labels.view(-1)) + sq.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["shift_logits"].grad_fn == "CloneBackward0"
    same_as_torch(t, in_torch(program, tmp_path), ["logits", "labels", "shift_labels", "w", "c", "loss"])


def test_a_no_op_at_the_end_keeps_the_callers_name(tmp_path: Path) -> None:
    # `return self.output(h).float()`, an identity dropout: the caller's variable names the value (was net.fc.out)
    program = (HEAD + "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
               "        self.fc = nn.Linear(3, 2)\n        self.drop = nn.Dropout(0.0)\n"
               "    def forward(self, x):\n        output = self.fc(x).float()\n        return output\n"
               "    def dropped(self, x):\n        return self.drop(self.fc(x))\n\n\n"
               "net = Net()\nx = torch.randn(2, 3)\nlogits = net(x)\ny = net.dropped(x)\ndirect = net.fc(x).type_as(x)\n"
               "loss = logits.sum() + y.sum() + direct.sum()\nloss.backward()\n")
    t = traced(program)
    assert {"logits", "y", "direct"} <= set(t.result.nodes)
    same_as_torch(t, in_torch(program, tmp_path), ["net", "logits", "y", "direct", "loss"])


@pytest.mark.parametrize(("line", "needle"), [
    ("y = x.fill_diagonal(0.0)", "has no method 'fill_diagonal'"),
    ("y = torch.zeros(2, 2).fill_diagonal_(1.0)\nfirst, *mid, *last = [x, x, x]", "tuple assignment"),
    ("y = torch.as_tensor(x * 2, dtype=3)", "dtype must be a torch dtype"),
])
def test_refusals_name_what_torch_would_not_do(line: str, needle: str) -> None:
    with pytest.raises(Exception, match=needle.replace("(", r"\(").replace(")", r"\)")):
        traced("import torch\nx = torch.ones(2, 2, requires_grad=True)\n" + line + "\n")


def test_nanogpt_get_batch_and_its_dtype_table(tmp_path: Path) -> None:
    # `torch.stack([data[i:i+block_size] for i in ix])` with ix drawn: each window is i + arange(block_size), the same
    # elements torch slices; nanoGPT's ptdtype table names dtypes gradtrace has no tensors of (a value, not a use)
    program = (HEAD + "dtype = 'float32'\nptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, "
               "'float16': torch.float16}[dtype]\ndata = torch.randint(0, 16, (40,))\nblock_size, batch_size = 6, 3\n\n\n"
               "def get_batch():\n    ix = torch.randint(len(data) - block_size, (batch_size,))\n"
               "    x = torch.stack([data[i:i+block_size] for i in ix])\n"
               "    y = torch.stack([data[i+1:i+1+block_size] for i in ix])\n    return x, y\n\n\n"
               "xb, yb = get_batch()\nemb = nn.Embedding(16, 16)\nlogits = emb(xb).to(ptdtype)\n"
               "loss = F.cross_entropy(logits.view(-1, 16), yb.view(-1))\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["data", "xb", "yb", "emb", "loss"], exact=False)
    with pytest.raises(Exception, match="dtype='bfloat16' is not traced"):
        traced("import torch\nx = torch.ones(2, requires_grad=True)\ny = x.to(torch.bfloat16)\n")


def test_int64_pointwise_dtypes_are_torchs(tmp_path: Path) -> None:
    # abs, neg, sign, floor, ceil, round, trunc, square, relu keep int64; exp, sqrt, sin... give the default float;
    # frac, logsigmoid, hardswish... have no int64 kernel in torch: refused
    program = (HEAD + "i = torch.tensor([1, -2, 3])\ns = i.sign() + torch.floor(i) + i.square() + torch.relu(i) + i.abs()\n"
               "e = torch.exp(i) + i.abs().sqrt()\n"
               "x = torch.randn(3, requires_grad=True)\nloss = (x * s).sum() + (x * e).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["s"].dtype == "int64" and t.result.nodes["e"].dtype == "float32"
    same_as_torch(t, in_torch(program, tmp_path), ["s", "e", "x", "loss"])
    for line, needle in (("y = torch.frac(torch.tensor([1, 2]))", "frac of an int64 tensor is not implemented in torch"),
                         ("n = int(torch.tensor([0.3] * 10).sum().item())", "`.item()`")):
        with pytest.raises(Exception, match=needle.replace("(", r"\(").replace(")", r"\)")):
            traced("import torch\n" + line + "\n")


def test_review_r_refusals_and_names() -> None:
    # Python assigns a chained assignment's targets left to right: one that reads the name it binds is refused; torch's
    # argmax has no bool kernel; torch.arange(5, step=2) is a TypeError; rounding_mode=None given is DivBackward2
    for line, needle in (("buf = torch.zeros(3)\nk = 0\nbuf[k] = k = 2", "whose targets read 'k'"),
                         ("y = torch.argmax(torch.ones(3) > 0)", "does not support bool input"),
                         ("y = torch.arange(5, step=2)", "torch.arange takes end=")):
        with pytest.raises(Exception, match=needle):
            traced("import torch\nx = torch.ones(3, requires_grad=True)\n" + line + "\n")
    t = traced("import torch\nx = torch.ones(2, requires_grad=True)\ny = torch.div(x, 2, rounding_mode=None)\n"
               "w = torch.nn.Parameter(torch.zeros(3, 3))\nwith torch.no_grad():\n    w.fill_diagonal_(2.0, wrap=False)\n"
               "loss = y.sum() + w.sum()\nloss.backward()\n")
    assert t.result.nodes["y"].grad_fn == "DivBackward2"
    assert t.result.nodes["w"].value.data == [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]]


@pytest.mark.parametrize(("line", "needle"), [
    # a window i:i + n is traced alone, read, with i's values known in range; a write into it is refused (a view in torch)
    ("i = torch.tensor(0)\ny = x[i:i + 2, i:i + 2]", "traced alone, as the one index of a read"),
    ("i = torch.tensor(8)\ny = x[i:i + 4]", "torch clamps a slice that runs past the end"),
    ("i = torch.randint(0, 4, ())\nw = x[i:i + 3]\nw.mul_(0)", "in torch is a view of data"),
    ("y = torch.as_tensor([x.sum(), 2.0])", "torch.as_tensor takes a tensor, or numbers"),
])
def test_review_f_refusals(line: str, needle: str) -> None:
    with pytest.raises(Exception, match=needle):
        traced("import torch\nx = torch.arange(10.0).requires_grad_() * 1\n" + line + "\n")


def test_review_f_values_as_python_evaluates_them(tmp_path: Path) -> None:
    # arguments evaluated once (as_tensor, np.prod of a list that pops), float() of an int tensor is a float
    program = (HEAD + "xs = [1.0, 2.0, 3.0]\nt = torch.as_tensor(xs.pop())\nns = [2, 3, 4]\nk = int(np.prod([ns.pop(), 5]))\n"
               "n = torch.tensor(10 ** 10)\nbig = torch.tensor(float(n))\nx = torch.randn(3, requires_grad=True)\n"
               "y = x[()] * 1\nloss = (x * t).sum() + x[0] * k + (x * (big * big)).sum() * 1e-20 + y.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["big"].dtype == "float32"
    same_as_torch(t, in_torch(program, tmp_path), ["t", "big", "x", "loss"])
