"""Programs from the reviews of vision, scientific ML, teaching and recommender code, traced against real torch: draws
inside print(...), loops over ragged nested lists, torch's attribute forms of layers (a pool's stride, a conv's
tuples, m.training), nn.Sequential / nn.ModuleList subclasses, chained in-place updates and their names, a backward()
after torch.autograd.grad, and the small Python forms real code uses (pytorch-fm's `list()` and tuple statements,
`pow`, `enumerate(start=)`, `bias=None`, `.grad is None` before backward)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

from services.errors import SpecError

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"


# ---- random draws inside print(...) ------------------------------------------------------------


def test_a_draw_inside_print_moves_the_generator_as_in_torch(tmp_path: Path) -> None:
    # torch draws torch.randn(2) and the module's hidden state while printing: every later number follows them
    program = (HEAD + "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
               "        self.lin = nn.Linear(3, 2)\n    def forward(self, x):\n        h = torch.randn(2)\n"
               "        return self.lin(x) + h\n\n\nm = M()\nprint(torch.randn(2))\nprint(f'{torch.rand(1).item():.3f}')\n"
               "with torch.no_grad():\n    print(m(torch.ones(3)))\nx = torch.randn(3, requires_grad=True)\n"
               "y = m(x)\nloss = y.pow(2).sum() + (x * x).sum()\nprint(loss.item(), x.shape, m)\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["m", "x", "y", "loss"], exact=False)
    assert set(t.result.nodes) >= {"x", "y", "loss"}


def test_a_print_that_draws_and_cannot_be_traced_is_refused() -> None:
    # the BiLSTM-CRF tutorial's precheck: its forward draws, then reads a tensor's value as a Python int
    program = (HEAD + "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
               "        self.lin = nn.Linear(3, 2)\n    def forward(self, x):\n        h = self.lin(x) + torch.randn(2)\n"
               "        best = int(h.argmax())\n        return h[best]\n\n\nm = M()\nwith torch.no_grad():\n"
               "    print(m(torch.ones(3)))\nloss = m.lin.weight.sum()\nloss.backward()\n")
    with pytest.raises(SpecError, match=r"print\(\.\.\.\) computes what draws random numbers"):
        traced(program)
    # code of the program's own that draws nothing and cannot be traced: the print is left out, as before, with a note
    quiet = (HEAD + "def f(x):\n    return int(x.sum())\n\n\nx = torch.randn(3, requires_grad=True)\nprint(f(x))\n"
             "loss = (x * x).sum()\nloss.backward()\n")
    assert any("is not run" in n for n in traced(quiet).result.notes)


def test_prints_that_draw_nothing_add_no_nodes() -> None:
    program = (HEAD + "net = nn.Sequential(nn.Linear(3, 2), nn.ReLU())\nx = torch.randn(4, 3)\n"
               "print(net(x).shape, net)\nloss = net(x).sum()\nprint(f'{loss.item():.4f}', loss.grad_fn)\nloss.backward()\n")
    t = traced(program)
    assert [n.op for n in t.result.nodes.values() if n.op == "linear"] == ["linear"]


# ---- loops over ragged nested lists ------------------------------------------------------------------


def test_three_nested_loops_over_ragged_lists_read_each_length_when_reached(tmp_path: Path) -> None:
    # each inner list's own length (the last pass used to keep the first's: total 3 where torch has 6)
    program = (HEAD + "data = [[[1.0]], [[2.0, 3.0]]]\ntotal = 0.0\nfor block in data:\n    for row in block:\n"
               "        for v in row:\n            total += v\n"
               "sents = [['The', 'dog'], ['Everybody', 'read', 'that', 'book']]\nchars = {}\nfor s in [sents[:1], sents]:\n"
               "    for sent in s:\n        for w in sent:\n            for c in w:\n"
               "                if c not in chars:\n                    chars[c] = len(chars)\n"
               "x = torch.tensor([total, float(len(chars))], requires_grad=True)\nloss = (x * x).sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "loss"])
    assert t.arrays["torch/value/x"].tolist() == [6.0, 14.0]


def test_a_shape_bound_inside_a_loop_under_no_grad_is_read_when_reached(tmp_path: Path) -> None:
    # makemore part 4's exercise: `for k in range(Xb.shape[0])` after `Xb = ...` in the same body
    program = (HEAD + "C = torch.ones(3, requires_grad=True)\nXb = torch.zeros(5, 3)\ntotal = 0\nwith torch.no_grad():\n"
               "    for i in range(2):\n        Xb = torch.zeros(i + 1, 3)\n        for k in range(Xb.shape[0]):\n"
               "            total += 1\nloss = C.sum() * total\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["C", "loss"])
    assert float(t.arrays["torch/value/loss"]) == 9.0


# ---- layers' attributes as torch holds them ----------------------------------------------------------


def test_layer_attributes_are_torchs_tuples_and_defaults(tmp_path: Path) -> None:
    # a pool's stride is its kernel_size when not given (was None: the branch on it went the other way)
    program = (HEAD + "import math\nconv = nn.Conv2d(2, 4, 3, stride=2, padding=1)\npool = nn.MaxPool2d(2)\n"
               "avg = nn.AvgPool1d(4)\nln = nn.LayerNorm(4)\ndrop = nn.Dropout(0.5)\nk = 1.0\n"
               "if conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1): k = k + 1\n"
               "if pool.stride == 2 and pool.kernel_size == 2: k = k + 2\nif avg.stride == (4,): k = k + 4\n"
               "if ln.normalized_shape == (4,): k = k + 8\nif drop.training: k = k + 16\n"
               "n = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels\n"
               "with torch.no_grad():\n    conv.weight.normal_(0, math.sqrt(2. / n))\n"
               "x = torch.randn(1, 2, 8, 8, requires_grad=True)\nloss = pool(conv(x)).sum() * k\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["conv", "x", "loss"])


def test_sequential_and_module_list_subclasses(tmp_path: Path) -> None:
    # torchvision's ConvBNReLU(nn.Sequential), EDSR's Upsampler built from a list, a ModuleList subclass's forward
    program = (HEAD + "class ConvBNReLU(nn.Sequential):\n    def __init__(self, i, o, k=3, stride=1):\n"
               "        super(ConvBNReLU, self).__init__(nn.Conv2d(i, o, k, stride, (k - 1) // 2, bias=False), "
               "nn.BatchNorm2d(o), nn.ReLU6(inplace=True))\n        self.out_channels = o\n\n\n"
               "class Upsampler(nn.Sequential):\n    def __init__(self, n):\n        m = []\n        for _ in range(2):\n"
               "            m.append(nn.Conv2d(n, 4 * n, 3, padding=1))\n            m.append(nn.PixelShuffle(2))\n"
               "        super().__init__(*m)\n\n\nclass Blocks(nn.ModuleList):\n    def __init__(self, d, n):\n"
               "        super().__init__([nn.Linear(d, d) for _ in range(n)])\n    def forward(self, x):\n"
               "        for blk in self:\n            x = torch.tanh(blk(x))\n        return x\n\n\n"
               "features = nn.Sequential(ConvBNReLU(3, 4), ConvBNReLU(4, 4, stride=2))\nup = Upsampler(4)\nhead = ConvBNReLU(4, 2, 1)\n"
               "blocks = Blocks(8, 3)\nx = torch.randn(2, 3, 8, 8)\nh = head[0](up(features(x)))\n"
               "out = blocks(h.flatten(2)[..., :8]) * len(blocks) * head.out_channels\nloss = out.pow(2).mean()\nloss.backward()\n")
    t = traced(program)
    assert {"features.0.0.weight", "features.1.1.bias", "up.2.weight", "blocks.2.bias"} <= set(t.result.parameters)
    same_as_torch(t, in_torch(program, tmp_path), ["features", "up", "head", "blocks", "out", "loss"])


def test_a_module_set_on_a_sequential_subclass_is_refused() -> None:
    # in torch it joins the layers (forward and loops go over it too)
    program = (HEAD + "class H(nn.Sequential):\n    def __init__(self):\n        super().__init__(nn.Linear(2, 2))\n"
               "        self.extra = nn.Linear(2, 1)\n\n\nh = H()\ny = h(torch.randn(3, 2)).sum()\ny.backward()\n")
    with pytest.raises(SpecError, match="joins its layers in torch"):
        traced(program)


# ---- in-place chains and the names of a variable's last binding --------------------------------------


def test_chained_in_place_updates_leave_the_name_on_the_last_value(tmp_path: Path) -> None:
    # `h.mul_(0.5).add_(1.0)`, makemore's `bnmean_running.mul_(0.999).add_(0.001 * bnmeani)` under no_grad, and a
    # hand-written BatchNorm's `self.running_mean.mul_(1 - m).add_(m * xmean)`: each name shows torch's value
    program = (HEAD + "x = torch.tensor([1.0, 2.0], requires_grad=True)\nh = x * 2\nh.mul_(0.5).add_(1.0)\n"
               "running = torch.ones(2)\nwith torch.no_grad():\n    running.mul_(0.5)\n    running.add_(h)\n"
               "ema = torch.zeros(2)\nwith torch.no_grad():\n    ema.mul_(0.9).add_(0.1 * h)\n\n\n"
               "class BatchNorm1d:\n    def __init__(self, dim):\n        self.running_mean = torch.zeros(dim)\n"
               "    def __call__(self, z):\n        with torch.no_grad():\n"
               "            self.running_mean.mul_(0.9).add_(0.1 * z.mean(0))\n        return z - z.mean(0)\n\n\n"
               "bn = BatchNorm1d(2)\ny = bn(torch.stack([h, h * 3]))\nrm = bn.running_mean\nloss = (h * h).sum() + y.pow(2).sum()\n"
               "loss.backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "h", "running", "ema", "loss"])
    assert t.arrays["torch/value/bn.running_mean"].tolist() == pytest.approx(g["rm"].tolist())
    assert not [n for n in t.result.notes if "changes in place" in n]


def test_a_variable_bound_under_an_if_in_a_loop_ends_with_its_bare_name(tmp_path: Path) -> None:
    program = (HEAD + "x = torch.randn(3, requires_grad=True)\nfor i in range(3):\n    if i >= 1:\n        t = x * i\n"
               "loss = t.sum()\nloss.backward()\n")
    t = traced(program)
    assert {"t@1", "t"} <= set(t.result.nodes) and "t@2" not in t.result.nodes
    same_as_torch(t, in_torch(program, tmp_path), ["x", "t", "loss"])


# ---- torch.autograd.grad, then backward() ------------------------------------------------------------


def test_backward_after_autograd_grad_is_the_pass_traced(tmp_path: Path) -> None:
    # a PINN's du/dx looked at first: torch's .grad holds loss.backward()'s gradients (306 and 408), not du/dx's pass
    program = (HEAD + "w = torch.tensor(2.0, requires_grad=True)\nx = torch.tensor(3.0, requires_grad=True)\nu = w * x ** 2\n"
               "du_dx = torch.autograd.grad(u, x, retain_graph=True)[0]\nloss = (u - 1.0) ** 2\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["w", "x", "loss"])
    assert float(t.arrays["torch/grad/w"]) == 306.0 and float(t.arrays["torch/grad/x"]) == 408.0
    assert any("torch.autograd.grad is not traced: the backward() of line 10" in n for n in t.result.notes)


# ---- small forms of real code ------------------------------------------------------------------------


def test_small_python_forms_of_real_code(tmp_path: Path) -> None:
    # pytorch-fm's `row, col = list(), list()` and `row.append(i), col.append(j)`; `pow`; enumerate(start=);
    # nn.Linear(bias=None) (hamiltonian-nn); nn.parameter.Parameter; `.grad is not None` before backward; a module
    # compared with None (MobileNetV3's `self.se != None`); is_floating_point (torchvision's _upcast)
    program = (HEAD + "class AFM(nn.Module):\n    def __init__(self, d):\n        super().__init__()\n"
               "        self.fc = nn.Linear(d, 1, bias=None)\n        self.scale = nn.parameter.Parameter(torch.ones(1))\n"
               "        self.se = None\n    def forward(self, x):\n        num_fields = x.shape[1]\n"
               "        row, col = list(), list()\n        for i in range(num_fields - 1):\n"
               "            for j in range(i + 1, num_fields):\n                row.append(i), col.append(j)\n"
               "        p, q = x[:, row], x[:, col]\n        out = self.fc(p * q).sum(1)\n"
               "        if self.se != None:\n            out = out * 0\n"
               "        if x.is_floating_point():\n            out = out * self.scale\n        return out\n\n\n"
               "afm = AFM(4)\nx = torch.randn(2, 3, 4, requires_grad=True)\nif x.grad is not None:\n    x.grad.zero_()\n"
               "total = 0\nfor k, v in enumerate([1.0, 2.0], start=1):\n    total += k * v\n"
               "loss = afm(x).sum() * pow(2, 3) * total + pow(x, 2).sum()\nloss.backward()\n")
    t = traced(program)
    assert "afm.fc.bias" not in t.result.parameters and "afm.scale" in t.result.parameters
    same_as_torch(t, in_torch(program, tmp_path), ["afm", "x", "loss"])


def test_interpolate_takes_antialias_false_and_refuses_true() -> None:
    program = (HEAD + "x = torch.randn(1, 1, 4, 4, requires_grad=True)\n"
               "loss = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False, antialias=False).sum()\n"
               "loss.backward()\n")
    assert traced(program).result.nodes["loss#1"].op == "interpolate"
    with pytest.raises(SpecError, match="antialias=True is not traced"):
        traced(program.replace("antialias=False", "antialias=True"))


def test_embedding_from_pretrained(tmp_path: Path) -> None:
    # GloVe vectors: the weight is a Parameter of the given values (no init draw), frozen unless freeze=False
    program = (HEAD + "glove = torch.randn(6, 4)\n\n\nclass Clf(nn.Module):\n    def __init__(self, vectors):\n"
               "        super().__init__()\n        self.embedding = nn.Embedding.from_pretrained(vectors, freeze=False, "
               "padding_idx=0)\n        self.fc = nn.Linear(4, 2)\n    def forward(self, x):\n"
               "        return self.fc(self.embedding(x).mean(1))\n\n\nmodel = Clf(glove)\n"
               "frozen = nn.Embedding.from_pretrained(torch.randn(6, 4))\nx = torch.tensor([[1, 2, 0], [3, 4, 5]])\n"
               "loss = (model(x) + frozen(x).sum(1)[:, :2]).pow(2).sum()\nloss.backward()\n")
    t = traced(program)
    assert {"model.embedding.weight", "frozen.weight"} <= set(t.result.parameters)
    assert "torch/grad/frozen.weight" not in t.arrays
    same_as_torch(t, in_torch(program, tmp_path), ["model", "frozen", "loss"])


def test_a_tensor_made_for_a_dict_key_is_named_for_its_place(tmp_path: Path) -> None:
    # CS231n's `params['W1'] = ...`: params.W1 (was params#1)
    program = (HEAD + "params = {}\nparams['W1'] = torch.randn(3, 2, requires_grad=True)\nparams['b1'] = torch.zeros(2)\n"
               "x = torch.randn(4, 3)\nloss = (x @ params['W1'] + params['b1']).relu().sum()\nloss.backward()\n")
    t = traced(program)
    assert {"params.W1", "params.b1"} <= set(t.result.nodes)
    g = in_torch(program, tmp_path)
    np.testing.assert_allclose(t.arrays["torch/grad/params.W1"], g["params"]["W1"].grad.numpy(), rtol=1e-6)


def test_multinomial_with_replacement_draws_torchs_samples(tmp_path: Path) -> None:
    # makemore's `torch.multinomial(p, num_samples=20, replacement=True, generator=g)` and word2vec's negative samples
    # of a 2-d distribution: torch's indices, and the draws after them stay torch's
    program = ("import torch\ng = torch.Generator().manual_seed(2147483647)\np = torch.rand(3, generator=g)\np = p / p.sum()\n"
               "ix = torch.multinomial(p, num_samples=20, replacement=True, generator=g)\ntorch.manual_seed(0)\n"
               "W = torch.randn(6, 5, requires_grad=True)\nprobs = torch.softmax(W, dim=1)\n"
               "neg = torch.multinomial(probs, 7, replacement=True)\nnoise = torch.tensor([0.1, 0.5, 0.0, 0.2]) ** 0.75\n"
               "negs = noise.multinomial(10, True)\nafter = torch.randn(3, requires_grad=True)\n"
               "loss = probs.gather(1, neg).log().sum() + (after * negs[:3]).sum() + ix.float().sum()\nloss.backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    for name in ("ix", "neg", "negs"):
        np.testing.assert_array_equal(t.arrays[f"torch/value/{name}"], g[name].numpy())
        np.testing.assert_array_equal(t.arrays[f"reference/value/{name}"], g[name].numpy())
    assert 2 not in g["negs"].tolist()
    same_as_torch(t, g, ["W", "after", "loss"])


def test_several_categorical_samples_are_torchs(tmp_path: Path) -> None:
    # Categorical.sample((3,)): one multinomial of 3 draws with replacement, transposed, as torch's code
    program = ("import torch\nfrom torch.distributions import Categorical\ntorch.manual_seed(0)\n"
               "logits = torch.randn(2, 4, requires_grad=True)\nm = Categorical(logits=logits)\na = m.sample((3,))\n"
               "b = m.sample((2, 5))\nc = Categorical(probs=torch.tensor([0.2, 0.3, 0.5])).sample((6,))\n"
               "after = torch.randn(2, requires_grad=True)\n"
               "loss = -m.log_prob(a).sum() - m.log_prob(b).mean() + (after * c[:2]).sum()\nloss.backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    for name in "abc":
        np.testing.assert_array_equal(t.arrays[f"torch/value/{name}"], g[name].numpy())
    same_as_torch(t, g, ["logits", "after", "loss"])


def test_torch_normal_of_tensors(tmp_path: Path) -> None:
    # a Bayesian layer's `torch.normal(mu, sigma)`: torch's noise (randn) times std plus mean, broadcast; zero gradients
    program = (HEAD + "mu = torch.zeros(3, requires_grad=True)\nrho = torch.full((3,), -3.0, requires_grad=True)\n"
               "sigma = torch.log1p(torch.exp(rho))\nw = torch.normal(mu, sigma)\nbig_mu = torch.randn(4, 20, requires_grad=True)\n"
               "big = torch.normal(big_mu, torch.ones(20) * 0.5)\ne2 = torch.normal(1.0, sigma)\n"
               "e3 = torch.normal(mean=torch.zeros(2, 1), std=torch.ones(3))\nnums = torch.normal(0.0, 1.0, size=(2,))\n"
               "after = torch.randn(3, requires_grad=True)\n"
               "loss = (w * after).sum() + big.sum() + e2.sum() + e3.sum() + mu.sum() + (after * nums.sum()).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["w"].grad_fn == "NormalBackward3" and t.result.nodes["e2"].grad_fn == "NormalBackward2"
    same_as_torch(t, in_torch(program, tmp_path), ["mu", "rho", "w", "big_mu", "big", "e2", "e3", "after", "loss"])
    with pytest.raises(SpecError, match=r"torch.normal\(mean_tensor, std_number\) is not traced"):
        traced(HEAD + "m = torch.zeros(3, requires_grad=True)\nw = torch.normal(m, 0.3)\nw.sum().backward()\n")


def test_pooling_with_ceil_mode_and_without_counting_padding(tmp_path: Path) -> None:
    # timm's ResNet-D shortcut `nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`, N-HiTS's MaxPool1d
    # ceil_mode, F.avg_pool1d's keywords
    program = (HEAD + "x = torch.randn(2, 3, 7, 9, requires_grad=True)\n"
               "a = nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)(x)\nb = F.avg_pool2d(x, 3, 2, 1, ceil_mode=True)\n"
               "c = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)\n"
               "s = torch.randn(2, 4, 11, requires_grad=True)\ne = nn.MaxPool1d(2, 2, ceil_mode=True)(s)\n"
               "f = F.avg_pool1d(s, 3, 2, 1, ceil_mode=True, count_include_pad=False)\ng = nn.AvgPool1d(4, 3, 2, True, False)(s)\n"
               "h = F.max_pool1d(s, 3, 2, 1, 1, True)\n"
               "loss = a.pow(2).sum() + b.sum() + (c * c).mean() + e.pow(2).sum() + f.sum() + g.pow(3).sum() + h.sum()\n"
               "loss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "a", "b", "c", "s", "e", "f", "g", "h", "loss"])


def test_gaussian_nll_loss_takes_torchs_broadcast_var(tmp_path: Path) -> None:
    # torch's own comment: input (4, 3, 32, 32) with var (4, 1, 32, 32) is one variance per pixel; two dims are refused
    program = (HEAD + "x = torch.randn(2, 3, 4, 4, requires_grad=True)\nt = torch.randn(2, 3, 4, 4)\n"
               "v = torch.rand(2, 1, 4, 4, requires_grad=True)\n"
               "loss = F.gaussian_nll_loss(x, t, v) + nn.GaussianNLLLoss()(x, t, torch.rand(2, 3, 4, 1))\nloss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["x", "v", "loss"])
    with pytest.raises(SpecError, match="var is of incorrect size"):
        traced(HEAD + "x = torch.randn(2, 3, 4, requires_grad=True)\nl = F.gaussian_nll_loss(x, x, torch.rand(2, 1, 1))\n"
                      "l.backward()\n")


def test_sequential_subclasses_without_init_and_their_parameters(tmp_path: Path) -> None:
    # no __init__ of its own: the layers are drawn once (were drawn twice); parameters(), named_parameters(), apply()
    # and indexing see the children, as torch's modules "0", "1", ...
    program = (HEAD + "class Seq(nn.Sequential):\n    pass\n\n\nclass ML(nn.ModuleList):\n    def forward(self, x):\n"
               "        for m in self:\n            x = m(x)\n        return x\n\n\nclass Seq2(nn.Sequential):\n"
               "    def __init__(self, i, o):\n        super().__init__(nn.Linear(i, o), nn.ReLU())\n"
               "        self.scale = nn.Parameter(torch.ones(1))\n\n\ndef init(m):\n    if isinstance(m, nn.Linear):\n"
               "        nn.init.constant_(m.weight, 0.1)\n\n\nnet = Seq(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))\n"
               "ml = ML([nn.Linear(2, 2), nn.Tanh()])\ns2 = Seq2(2, 3)\ns2.apply(init)\nx = torch.randn(5, 3)\n"
               "names = [n for n, _ in s2.named_parameters()]\n"
               "loss = s2(ml(net(x))).sum() + sum(p.pow(2).sum() for p in net.parameters()) + "
               "list(s2.parameters())[0].sum() * len(names)\nloss.backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    assert g["names"] == ["scale", "0.weight", "0.bias"]
    same_as_torch(t, g, ["net", "ml", "s2", "x", "loss"])


def test_prints_in_loops_and_of_other_generators(tmp_path: Path) -> None:
    # a loop that only prints still draws what it prints (torch.randn, a function of the program's own that draws);
    # numpy's generator moves none of torch's, Python's random is followed
    program = (HEAD + "import random\nimport numpy as np\nrandom.seed(0)\nnp.random.seed(0)\n\n\ndef step(w):\n"
               "    return (w * torch.randn(3)).sum()\n\n\nw = torch.randn(3, requires_grad=True)\nfor i in range(2):\n"
               "    print(torch.randn(2))\nfor i in range(2):\n    print(step(w).item())\n"
               "for name, p in [('w', w)]:\n    print(name, p.norm().item())\nprint(random.random(), np.random.rand())\n"
               "z = torch.randn(3) * random.random()\nloss = (w * z).sum()\nloss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["w", "z", "loss"])


def test_a_dropped_method_of_an_in_place_chain_runs_the_chain_once(tmp_path: Path) -> None:
    # `y.mul_(0.5).add_(1.0).sum()` on its own line: the receiver evaluated once (it ran twice: y was off by 1.59)
    program = (HEAD + "x = torch.randn(3, requires_grad=True)\ny = x * 2\ny.mul_(0.5).add_(1.0).sum()\nloss = y.sum()\n"
               "loss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["x", "y", "loss"])
