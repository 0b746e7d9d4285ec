"""Programs from the reviews of audio and time-series code, PyTorch's own docs and tutorials, and gradient-debugging
snippets as posted on the forums, traced against real torch; and NeRF's hierarchical sampling (torch.searchsorted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

from services.errors import SpecError

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"


def test_nerf_sample_pdf_with_searchsorted(tmp_path: Path) -> None:
    # nerf-pytorch's sample_pdf: bins from searchsorted(cdf, u, right=True), clamped with torch.max/min of int64
    # tensors, gathered; the gradient flows through the gathered cdf
    program = HEAD + (
        "bins = torch.linspace(0, 1, 9)\nweights = torch.rand(16, 8, requires_grad=True)\n"
        "pdf = weights / weights.sum(-1, keepdim=True)\ncdf = torch.cumsum(pdf, -1)\n"
        "cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], -1)\nu = torch.rand(16, 5)\n"
        "inds = torch.searchsorted(cdf, u, right=True)\n"
        "below = torch.max(torch.zeros_like(inds - 1), inds - 1)\n"
        "above = torch.min((cdf.shape[-1] - 1) * torch.ones_like(inds), inds)\n"
        "inds_g = torch.stack([below, above], -1)\n"
        "matched_shape = [inds_g.shape[0], inds_g.shape[1], cdf.shape[-1]]\n"
        "cdf_g = torch.gather(cdf.unsqueeze(1).expand(matched_shape), 2, inds_g)\n"
        "bins_g = torch.gather(bins.unsqueeze(0).unsqueeze(0).expand(matched_shape), 2, inds_g)\n"
        "denom = cdf_g[..., 1] - cdf_g[..., 0]\ndenom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)\n"
        "t = (u - cdf_g[..., 0]) / denom\nsamples = bins_g[..., 0] + t * (bins_g[..., 1] - bins_g[..., 0])\n"
        "b = torch.bucketize(torch.randn(4, 3), torch.tensor([-1.0, 0.0, 1.0]))\n"
        "loss = samples.sum() + (b * weights[:4, :3]).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["inds"].dtype == "int64" and t.result.nodes["inds"].grad_fn is None
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["weights", "cdf", "inds", "below", "above", "samples", "b", "loss"])


MOCO = HEAD + '''
class MoCo(nn.Module):
    def __init__(self, dim=8, m=0.9, T=0.07):
        super().__init__()
        self.m = m
        self.T = T
        self.encoder_q = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, dim))
        self.encoder_k = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, dim))
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data.copy_(param_q.data)
            param_k.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, 12), dim=0))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data = param_k.data * self.m + param_q.data * (1. - self.m)

    def forward(self, im_q, im_k):
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k = F.normalize(self.encoder_k(im_k), dim=1)
        l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", [q, self.queue.clone().detach()])
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long)
        return logits, labels


model = MoCo()
with torch.no_grad():
    for p in model.encoder_q.parameters():
        p.add_(0.05 * torch.randn_like(p))
im_q = torch.randn(4, 6)
im_k = torch.randn(4, 6)
logits, labels = model(im_q, im_k)
loss = F.cross_entropy(logits, labels)
loss.backward()
'''
EMA_FORMS = {
    "moco": "param_k.data = param_k.data * self.m + param_q.data * (1. - self.m)",
    "dino": "param_k.data.mul_(self.m).add_((1 - self.m) * param_q.detach().data)",
    "timm": "param_k.mul_(self.m).add_(param_q.detach(), alpha=1 - self.m)",
}


@pytest.mark.parametrize("form", list(EMA_FORMS))
def test_a_moving_average_of_weights_before_their_use(form: str, tmp_path: Path) -> None:
    # MoCo / BYOL / DINO / timm's ModelEma update the key encoder from the query encoder before using it: torch's
    # stream runs the update where the program does (reading the old values), and the trace uses the new ones
    program = MOCO.replace(EMA_FORMS["moco"], EMA_FORMS[form])
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["model", "im_q", "im_k", "logits", "loss"])
    assert t.result.nodes["model.encoder_k.0.weight"].grad is None
    assert t.result.comparison.verdict == "agree"


def test_a_moving_average_read_after_its_leaf_was_used(tmp_path: Path) -> None:
    # the EMA of an already used tensor: the earlier operations keep its old value (`k@0`), as torch's did
    program = (HEAD + "k = torch.zeros(3)\nw = torch.ones(3, requires_grad=True)\nwith torch.no_grad():\n    w.sub_(0.5)\n"
               "q = torch.ones(3, requires_grad=True)\nx = torch.randn(3)\nfirst = k + x\n"
               "with torch.no_grad():\n    k.data = k.data * 0.9 + q.data * 0.1\n    k.mul_(0.5).add_(q, alpha=0.5)\n"
               "loss = (q * k * first * w).sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["k", "w", "q", "x", "first", "loss"])


@pytest.mark.parametrize("program", [
    "a = nn.Linear(2, 2)\nb = nn.Linear(2, 2)\nwith torch.no_grad():\n    b.weight.copy_(0.9 * b.weight + 0.1 * a.weight)\n"
    "x = torch.ones(1, 2)\ny = b(a(x)).sum()\ny.backward()\n",
    "emb = nn.Embedding(5, 3)\nemb.requires_grad_(False)\nnoise = torch.randn(5, 3)\nemb.weight.add_(noise)\n"
    "x = torch.randn(3, requires_grad=True)\ny = (emb(torch.tensor([1, 2])) * x).sum()\ny.backward()\n",
    "bn = nn.BatchNorm1d(3)\nshift = torch.randn(3)\nbn.running_mean.add_(shift)\nbn.eval()\n"
    "x = torch.randn(4, 3, requires_grad=True)\ny = bn(x).sum()\ny.backward()\n",
], ids=["copy-of-an-update", "add-a-tensor", "buffer-add-a-tensor"])
def test_a_module_leaf_updated_in_place_with_a_tensor(program: str, tmp_path: Path) -> None:
    # were refused ("a leaf a module holds"; "computed from 'b.weight' itself"): the stream now runs the update
    t = traced(HEAD + program)
    names = [n for n in ("a", "b", "emb", "bn", "noise", "shift", "x", "y") if f"\n{n} = " in "\n" + program]
    same_as_torch(t, in_torch(HEAD + program, tmp_path), names)
    assert t.result.comparison.verdict == "agree"


def test_the_docs_loss_examples_with_random_targets(tmp_path: Path) -> None:
    # nn.CrossEntropyLoss's and nn.NLLLoss's docstrings: `target = torch.empty(3, dtype=torch.long).random_(5)`
    program = (HEAD + "loss = nn.CrossEntropyLoss()\ninput = torch.randn(3, 5, requires_grad=True)\n"
               "target = torch.empty(3, dtype=torch.long).random_(5)\nf = torch.empty(3).random_(2, 9)\n"
               "output = loss(input, target) + (input.sum(1) * f).mean()\noutput.backward()\n")
    t = traced(program)
    assert t.result.nodes["target"].dtype == "int64"
    same_as_torch(t, in_torch(program, tmp_path), ["input", "target", "f", "output"], exact=False)


def test_backward_with_a_drawn_gradient(tmp_path: Path) -> None:
    # the 60-minute blitz's neural networks page: `net.zero_grad(); out.backward(torch.randn(1, 10))`; the gradient
    # is drawn where the program draws it (after the input), and what is drawn later follows it
    program = (HEAD + "net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 10))\ninput = torch.randn(1, 6)\n"
               "out = net(input)\nnet.zero_grad()\nout.backward(torch.randn(1, 10))\nafter = torch.randn(2)\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["net", "input", "out", "after"])
    with pytest.raises(SpecError, match="Mismatch in shape"):
        traced(program.replace("torch.randn(1, 10))", "torch.randn(10))"))


def test_a_nested_tuple_return_takes_the_callers_names(tmp_path: Path) -> None:
    # a hand-written LSTM cell's `return h, (h, c)` unpacked as `out, (h, c) = cell(x, state)`; a flat return
    # `return a, b` into `p, q` kept its names before
    program = (HEAD + "def cell(x, w):\n    gates = x @ w\n    i, g = gates.chunk(2, 1)\n    c1 = torch.sigmoid(i) * torch.tanh(g)\n"
               "    h1 = torch.tanh(c1)\n    y = h1 * 2\n    return y, (h1, c1)\n\n\nx = torch.randn(3, 4)\n"
               "w = torch.randn(4, 8, requires_grad=True)\nout, (h, c) = cell(x, w)\nloss = (out * h + c).sum()\nloss.backward()\n")
    t = traced(program)
    assert {"out", "h", "c"} <= set(t.result.nodes)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "w", "out", "h", "c", "loss"])


def test_split_by_keyword_and_nan_to_num(tmp_path: Path) -> None:
    # mamba-minimal's `x.split(split_size=[d, d], dim=-1)`; torch.nan_to_num's gradient only where x is finite
    program = (HEAD + "x = torch.randn(2, 8, requires_grad=True)\na, b = x.split(split_size=[3, 5], dim=-1)\n"
               "c, d = torch.split(x, split_size_or_sections=4, dim=1)\ne, f = x.chunk(chunks=2, dim=1)\n"
               "r = torch.log(a - 0.5).nan_to_num(nan=0.0, neginf=-5.0)\n"
               "loss = r.sum() + (b.sum() + c.mean() * d.mean()) * (e * f).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["r"].grad_fn == "NanToNumBackward0"
    same_as_torch(t, in_torch(program, tmp_path), ["x", "a", "b", "c", "d", "e", "f", "r", "loss"])


def test_clamp_with_tensor_bounds(tmp_path: Path) -> None:
    # the torch.clamp docs' `torch.clamp(a, min=min, max=max)` with tensors, clamp_min/clamp_max of a tensor, and a
    # bound from .item() (a 0-d node here, a number in torch: the same values)
    program = (HEAD + "x = torch.randn(4, 3, requires_grad=True)\nlo = torch.full((3,), -0.5, requires_grad=True)\n"
               "hi = torch.tensor([[0.5], [1.0], [0.2], [-1.0]], requires_grad=True)\n"
               "a = torch.clamp(x, min=lo, max=hi)\nb = x.clamp(min=lo)\nd = torch.clamp_min(x, lo) + x.clamp_max(hi)\n"
               "e = torch.clamp(x, -0.3, 0.3)\ng = x.clamp(max=x.sum().item())\n"
               "loss = (a * 2 + b * 3 + d + e + g).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["a"].grad_fn == "ClampBackward0" and t.result.nodes["e"].grad_fn == "ClampBackward1"
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["x", "lo", "hi", "a", "b", "d", "e", "g", "loss"])


def test_module_containers_grown_by_key_and_by_plus_equals(tmp_path: Path) -> None:
    # MelGAN's discriminator `self.model["layer_%d" % n] = nn.Sequential(...)` on an empty nn.ModuleDict, and
    # ParallelWaveGAN's `self.layers += [nn.Conv1d(...)]` on an nn.ModuleList: named for the key and the index
    program = (HEAD + "class D(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
               "        self.model = nn.ModuleDict()\n        for n in range(2):\n"
               "            self.model['layer_%d' % n] = nn.Sequential(nn.Conv1d(1 if n == 0 else 4, 4, 3), nn.LeakyReLU(0.2))\n"
               "        self.post = nn.ModuleList()\n        self.post += [nn.Conv1d(4, 2, 1)]\n        self.post += [nn.Conv1d(2, 1, 1)]\n\n"
               "    def forward(self, x):\n        for key, layer in self.model.items():\n            x = layer(x)\n"
               "        for p in self.post:\n            x = p(x)\n        return x\n\n\n"
               "d = D()\nx = torch.randn(2, 1, 16)\nloss = d(x).pow(2).mean()\nloss.backward()\n")
    t = traced(program)
    assert {"d.model.layer_1.0.weight", "d.post.1.bias"} <= set(t.result.nodes)
    same_as_torch(t, in_torch(program, tmp_path), ["d", "x", "loss"])


def test_a_masked_augmented_write_into_a_tensor_without_grad(tmp_path: Path) -> None:
    # wav2vec2's negative sampling `neg_idxs[neg_idxs >= tszs] += 1` and the like, on tensors that require no grad
    program = (HEAD + "idx = torch.randint(0, 5, (3, 4))\nbig = idx >= 2\nalias = idx\nidx[idx >= 2] += 1\nm = torch.randn(3, 4)\n"
               "m[m < 0] *= 0.5\nm[~big] -= 1.0\nw = torch.randn(6, requires_grad=True)\nloss = (w[idx] * m).sum() + w[alias].sum()\n"
               "loss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["idx", "m", "w", "loss"])
    with pytest.raises(SpecError, match="a mask of the tensor's shape"):
        traced(HEAD + "m = torch.randn(3, 4)\nm[m.sum(1) > 0] += 1\nw = torch.randn(4, requires_grad=True)\n(m @ w).sum().backward()\n")


@pytest.mark.parametrize("head", ["with torch.inference_mode(mode=False):", "with torch.inference_mode(not train):",
                                  "with torch.inference_mode(train):", "with torch.no_grad(), torch.inference_mode(False):"])
def test_inference_mode_false_computes_with_grad(head: str, tmp_path: Path) -> None:
    # torch.inference_mode(False) enables grad (grad mode = not mode), as an eval helper's `inference_mode(not training)`
    program = (HEAD + "train = True\nx = torch.randn(3, requires_grad=True)\n" + head + "\n    q = x * x\n"
               "total = (q + x).sum()\ntotal.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "q", "total"])
    assert t.result.nodes["q"].requires_grad is (head != "with torch.inference_mode(train):")


def test_a_parameter_dict_held_by_a_name(tmp_path: Path) -> None:
    # the nn.ParameterDict docs' example at the top level: its parameters are pd.left and pd.right, as torch's
    # named_parameters() call them (they were temporaries' names)
    program = (HEAD + "pd = nn.ParameterDict({'left': nn.Parameter(torch.randn(2, 3)), 'right': nn.Parameter(torch.randn(2, 3))})\n"
               "pl = nn.ParameterList([nn.Parameter(torch.randn(3)) for _ in range(2)])\n"
               "loss = (pd['left'] * pd['right']).sum() + (pl[0] * pl[1]).sum()\nloss.backward()\n")
    t = traced(program)
    assert {"pd.left", "pd.right", "pl.0", "pl.1"} <= set(t.result.nodes)
    same_as_torch(t, in_torch(program, tmp_path), ["pd", "pl", "loss"])


def test_a_scheduler_imported_from_its_module(tmp_path: Path) -> None:
    # `from torch.optim.lr_scheduler import ExponentialLR` (the lr_scheduler docs) is accepted as the attribute path
    # `torch.optim.lr_scheduler.ExponentialLR` was: a scheduler changes nothing the first step reads
    program = (HEAD + "from torch.optim.lr_scheduler import ExponentialLR\nimport torch.optim.lr_scheduler as lrs\n"
               "model = nn.Linear(4, 2)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.01)\n"
               "scheduler = ExponentialLR(optimizer, gamma=0.9)\nother = lrs.StepLR(optimizer, step_size=2)\n"
               "x = torch.randn(3, 4)\nloss = model(x).pow(2).mean()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["model", "x", "loss"])
