"""Generative-model code as repositories write it, traced against real torch: CycleGAN's PatchGAN (InstanceNorm then an
in-place LeakyReLU, which writes into a view), Glow's 1x1 conv and VQ codebooks (a Parameter made from a local or an
argument takes its attribute's name), helpers that rebind or grow a list before looping over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"


@pytest.mark.parametrize("act", ["nn.LeakyReLU(0.2, inplace=True)", "nn.ELU(inplace=True)", "nn.Hardtanh(inplace=True)",
                                 "nn.SiLU(inplace=True)"])
def test_an_in_place_activation_of_a_view_traces_as_torch_runs_it(act: str, tmp_path: Path) -> None:
    # InstanceNorm2d's output is a view: the activation writes into it. It was refused as "torch fails at backward()"
    # (the op ran out of place, then the view's version bump made the op's own saved input stale); torch runs it.
    program = (HEAD + f"net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.InstanceNorm2d(4), {act}, "
               "nn.Conv2d(4, 1, 3, padding=1))\nx = torch.randn(2, 2, 5, 5)\nloss = net(x).pow(2).mean()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["net", "x", "loss"])
    act_node = next(n for n in t.result.nodes.values() if n.op not in ("input", "parameter", "conv2d", "instance_norm")
                    and "net.2" in n.expr)
    assert [f.grad_fn for f in act_node.next_functions] == ["ViewBackward0"]  # the view's, behind the engine's clone


def test_an_in_place_activation_still_fails_what_saved_the_view_before_it() -> None:
    # the bump still comes: an op that saved the view before the write fails at backward(), as in torch
    program = (HEAD + "x = torch.randn(2, 3, 4, requires_grad=True)\nv = (x * 2).view(6, 4)\nw = v * v\n"
               "F.leaky_relu(v, 0.2, inplace=True)\nloss = (w + v).sum()\nloss.backward()\n")
    with pytest.raises(Exception, match="modified by an inplace operation|torch fails at backward"):
        traced(program)


def test_a_parameter_made_from_a_local_or_an_argument_takes_its_attribute_name(tmp_path: Path) -> None:
    # named_parameters() names what the attribute holds: m.weight, not m.w_init; cb.embed, not cb#1
    program = (HEAD + "class Inv1x1(nn.Module):\n    def __init__(self, c):\n        super().__init__()\n"
               "        w_init = torch.linalg.inv(torch.eye(c) + 0.1 * torch.randn(c, c))\n"
               "        self.weight = nn.Parameter(w_init)\n    def forward(self, x):\n        return x @ self.weight\n\n\n"
               "class Codebook(nn.Module):\n    def __init__(self, init):\n        super().__init__()\n"
               "        self.embed = nn.Parameter(init)\n        p = nn.Parameter(torch.zeros(4))\n        self.bias = p\n"
               "        s = torch.ones(4)\n        self.register_parameter('scale', nn.Parameter(s))\n"
               "    def forward(self, x):\n        return (x @ self.embed) * self.scale + self.bias\n\n\n"
               "m = Inv1x1(3)\ncb = Codebook(torch.randn(3, 4))\nx = torch.randn(2, 3)\nloss = cb(m(x)).pow(2).sum()\n"
               "loss.backward()\n")
    t = traced(program)
    assert {"m.weight", "cb.embed", "cb.bias", "cb.scale"} <= set(t.result.parameters)
    assert not {"m.w_init", "cb.p", "cb.s"} & set(t.result.nodes)
    same_as_torch(t, in_torch(program, tmp_path), ["m", "cb", "loss"])


def test_a_tied_weight_keeps_its_owners_name() -> None:
    program = (HEAD + "class LM(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
               "        self.wte = nn.Embedding(5, 4)\n        self.head = nn.Linear(4, 5, bias=False)\n"
               "        self.head.weight = self.wte.weight\n    def forward(self, i):\n        return self.head(self.wte(i))\n\n\n"
               "lm = LM()\nloss = lm(torch.tensor([1, 3])).logsumexp(-1).sum()\nloss.backward()\n")
    t = traced(program)
    assert "lm.wte.weight" in t.result.parameters and "lm.head.weight" not in t.result.parameters


@pytest.mark.parametrize("grow", ["xs = xs + [xs[0] * 3]", "xs.append(xs[0] * 3)", "xs += [xs[0] * 3]",
                                  "xs.extend([xs[0] * 3])", "more(xs)", "ys = xs\n    ys.append(xs[0] * 3)"])
@pytest.mark.parametrize("loop", ["for x in xs:\n        s = s + x.sum()",
                                  "for i in range(len(xs)):\n        s = s + xs[i].sum()"])
def test_a_list_grown_or_rebound_before_a_loop_over_it_is_looped_over_whole(grow: str, loop: str, tmp_path: Path) -> None:
    # the loop's length was read when the function was called: 2 items, not 3 (loss 4 where torch gives 10, and
    # both engines agreed)
    program = ("import torch\n\n\ndef more(ys):\n    ys.append(ys[0] * 3)\n\n\n"
               f"def total(xs):\n    {grow}\n    s = 0\n    {loop}\n    return s\n\n\n"
               "a = torch.ones(2, requires_grad=True)\nb = torch.ones(2, requires_grad=True)\nloss = total([a, b])\n"
               "loss.backward()\n")
    t = traced(program)
    assert t.result.nodes["loss"].value.data == pytest.approx(10.0)
    assert t.result.nodes["a"].grad.data == pytest.approx([4.0, 4.0])
    same_as_torch(t, in_torch(program, tmp_path), ["a", "b", "loss"])


def test_a_helper_that_wraps_its_argument_in_a_list_loops_over_the_list(tmp_path: Path) -> None:
    # CycleGAN's set_requires_grad(nets, ...) with `nets = [nets]`: the Sequential's 3 children were taken as the length
    program = (HEAD + "def set_requires_grad(nets, requires_grad=False):\n    if not isinstance(nets, list):\n"
               "        nets = [nets]\n    for net in nets:\n        if net is not None:\n"
               "            for param in net.parameters():\n                param.requires_grad = requires_grad\n\n\n"
               "D = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))\nG = nn.Linear(2, 3)\n"
               "set_requires_grad(D, False)\nz = torch.randn(5, 2)\nloss = D(G(z)).mean()\nloss.backward()\n")
    t = traced(program)
    assert t.result.parameters["D.0.weight"].grad is None and t.result.parameters["G.weight"].grad is not None
    same_as_torch(t, in_torch(program, tmp_path), ["G", "loss"])


def test_bernoulli_draws_torchs_numbers(tmp_path: Path) -> None:
    # a binarized input, a sample of a computed probability (BernoulliBackward0: zero gradient), classifier-free
    # guidance's drop mask, and a draw after them: torch's kernel draws one uniform per element and compares
    program = (HEAD + "x = torch.rand(4, 6)\nx_bin = torch.bernoulli(x)\nenc = nn.Linear(6, 3)\nh = torch.sigmoid(enc(x_bin))\n"
               "s = torch.bernoulli(h)\nc = torch.randn(4, 3, dtype=torch.float64)\n"
               "keep = torch.bernoulli(torch.zeros_like(c) + 0.3)\nm = h.bernoulli()\nafter = torch.rand(2)\n"
               "loss = (h * s).sum() + (c * keep).sum() + m.sum() + after.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["s"].grad_fn == "BernoulliBackward0" and t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["x_bin", "enc", "s", "keep", "m", "after", "loss"], exact=False)


def test_gumbel_softmax_soft_and_hard_draw_torchs_noise(tmp_path: Path) -> None:
    # a dVAE's / a discrete actor's F.gumbel_softmax: torch's exponential_ draws, then the straight-through one-hot
    program = (HEAD + "logits = torch.randn(4, 5, requires_grad=True)\ny = F.gumbel_softmax(logits, tau=0.5)\n"
               "y_hard = F.gumbel_softmax(logits, tau=1.0, hard=True)\nw = torch.randn(5)\nafter = torch.randn(2)\n"
               "loss = (y * w).sum() + (y_hard * w).sum() + after.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["y"].grad_fn == "SoftmaxBackward0" and t.result.nodes["y_hard"].grad_fn == "AddBackward0"
    same_as_torch(t, in_torch(program, tmp_path), ["logits", "y", "y_hard", "after", "loss"])


@pytest.mark.parametrize("program", [
    # a global list a helper grows, a module list grown through a local name, a list a method of another object grows
    "import torch\ntorch.manual_seed(0)\nw = torch.randn(3, requires_grad=True)\nxs = [w * 1]\n\n\ndef grow():\n    xs.append(w * 5)\n\n\n"
    "def f():\n    grow()\n    out = 0\n    for v in xs:\n        out = out + v.sum()\n    return out\n\n\n"
    "loss = f()\nloss.backward()\n",
    HEAD + "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.layers = nn.ModuleList([nn.Linear(3, 3)])\n    def forward(self, x):\n        ls = self.layers\n"
    "        ls.append(nn.Linear(3, 3))\n        for l in self.layers:\n            x = l(x)\n        return x\n\n\n"
    "model = M()\nloss = model(torch.randn(2, 3)).sum()\nloss.backward()\n",
    HEAD + "layers = [nn.Linear(3, 3)]\n\n\nclass Builder:\n    def add(self):\n        layers.append(nn.Linear(3, 3))\n\n\n"
    "b = Builder()\n\n\ndef run(x):\n    b.add()\n    for l in layers:\n        x = l(x)\n    return x\n\n\n"
    "loss = run(torch.randn(2, 3)).sum()\nloss.backward()\n",
])
def test_a_loop_in_a_function_goes_over_what_the_list_holds_when_reached(program: str, tmp_path: Path) -> None:
    # the loop's length was read when the function was called, before the helper or the alias grew the list
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["loss"])


def test_a_vae_kl_term_with_torch_distributions_kl_divergence(tmp_path: Path) -> None:
    program = (HEAD + "from torch.distributions import Normal, kl_divergence\nimport torch.distributions as D\n"
               "enc = nn.Linear(4, 6)\nx = torch.randn(3, 4)\nmu, logvar = enc(x).chunk(2, dim=-1)\nstd = torch.exp(0.5 * logvar)\n"
               "q = Normal(mu, std)\np = Normal(torch.zeros_like(mu), torch.ones_like(std))\nz = q.rsample()\n"
               "kl = kl_divergence(q, p).sum(-1).mean()\nkl2 = D.kl.kl_divergence(q, Normal(0.0, 1.0)).mean()\n"
               "loss = kl + kl2 + z.pow(2).mean()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["enc", "z", "kl", "kl2", "loss"])
    with pytest.raises(Exception, match=r"kl_divergence\(Categorical, Categorical\) is not traced"):
        traced("import torch\nfrom torch.distributions import Categorical, kl_divergence\n"
               "a = Categorical(logits=torch.zeros(3, requires_grad=True))\nb = Categorical(logits=torch.ones(3))\n"
               "k = kl_divergence(a, b)\nk.backward()\n")


def test_a_loop_that_returns_from_inside_unrolls_at_the_call(tmp_path: Path) -> None:
    # an early exit from a loop over a module list (after a module call, which changes no list): unrolled when the
    # function is called; after a call of the program's own method (which could grow the list) it is refused, clearly
    program = (HEAD + "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
               "        self.stem = nn.Linear(3, 3)\n        self.blocks = nn.ModuleList([nn.Linear(3, 3) for _ in range(3)])\n"
               "    def forward(self, x, upto=1):\n        x = self.stem(x)\n        for i, blk in enumerate(self.blocks):\n"
               "            x = blk(x)\n            if i == upto:\n                return x\n        return x\n\n\n"
               "def pick(xs, t):\n    n = len(xs)\n    for i, v in enumerate(xs):\n        if i == t:\n            return v * n\n"
               "    return None\n\n\nnet = Net()\nx = torch.randn(2, 3)\nloss = net(x).sum() + pick([x * 2, x * 3], 1).sum()\n"
               "loss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["net", "loss"])
    with pytest.raises(Exception, match="return inside a loop is not traced"):
        traced(program.replace("x = self.stem(x)", "x = self.prep(x)").replace(
            "    def forward(self, x, upto=1):", "    def prep(self, x):\n        return x * 2\n    def forward(self, x, upto=1):"))
