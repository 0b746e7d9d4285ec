"""PyTorch as people write it: pasted programs trace as written and give the numbers torch gives.

Where a program is compared with torch, the same text is run by real torch here (runpy on a file the test
writes: our own test code, never user input) and every variable's value and gradient is compared."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.compiler import compile_spec
from services.errors import SpecError
from services.trace import Trace, trace
from shared.spec import TraceSpec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = ROOT.parent / "shared" / "seed" / "000_76228a6cdafaad98.txt"


def _refused(program: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program="import torch\n" + program))
    return info.value


def traced(program: str, **kw: Any) -> Trace:
    return trace(TraceSpec(program=program, **kw), inline_limit=10**6)


def in_torch(program: str, tmp_path: Path, dtype: str = "float32") -> dict[str, Any]:
    """Run the program in real torch; its globals (float64: as under torch.set_default_dtype)."""
    path = tmp_path / "prog.py"
    path.write_text(program)
    old = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        return runpy.run_path(str(path))
    finally:
        torch.set_default_dtype(old)


def same_as_torch(t: Trace, g: dict[str, Any], names: list[str], exact: bool = False) -> None:
    """Each variable's value and grad equals torch's (exactly for drawn leaves, else to float rounding)."""
    for name in names:
        want = g[name]
        params = {f"{name}.{k}": v for k, v in want.named_parameters()} if isinstance(want, torch.nn.Module) else {name: want}
        for key, tensor in params.items():
            got = t.arrays[f"torch/value/{key}"]
            if exact:
                np.testing.assert_array_equal(got, tensor.detach().numpy(), err_msg=f"value of {key}")
            else:
                np.testing.assert_allclose(got, tensor.detach().numpy(), rtol=2e-6, atol=1e-7, err_msg=f"value of {key}")
            if tensor.is_leaf and tensor.grad is not None:
                want_grad = tensor.grad.numpy()
                # atol relative to the grad's scale: a part that is 0 in theory (attention's key bias) is rounding
                # noise, whose digits depend on the CPU's kernels (AVX-512 or AVX2), in torch and here alike
                scale = float(np.abs(want_grad).max(initial=0.0))
                np.testing.assert_allclose(t.arrays[f"torch/grad/{key}"], want_grad, rtol=2e-5, atol=max(1e-7, 1e-5 * scale),
                                           err_msg=f"grad of {key}")


# ---- the tutorial's examples --------------------------------------------------------------------


def test_the_tutorial_examples_are_pasted_exactly() -> None:
    if not SEED.exists():
        pytest.skip("the tutorial (../shared/seed) is not beside this checkout")
    blocks = re.findall(r"```\n(.*?)```", SEED.read_text(), re.S)
    for example, marker in (("tutorial_conv.py", "nn.Conv2d"), ("tutorial_first.py", "y = x ** 2")):
        block = next(b for b in blocks if marker in b)
        assert (EXAMPLES / example).read_text().split("\n", 1)[1] == block


def test_tutorial_first_example_gives_seven() -> None:
    t = traced((EXAMPLES / "tutorial_first.py").read_text())
    assert t.result.nodes["x"].grad.data == 7.0 and t.result.nodes["y"].value.data == 10.0
    assert t.result.comparison.verdict == "agree"


def test_tutorial_conv_pasted_runs_and_its_weight_grad_is_the_window_sums() -> None:
    t = traced((EXAMPLES / "tutorial_conv.py").read_text(), engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    assert set(t.result.parameters) == {"conv.weight"}
    x = t.arrays["torch/value/x"][0, 0]
    windows = np.array([[x[i : i + 2, j : j + 2].sum() for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(t.arrays["torch/grad/conv.weight"][0, 0], windows, rtol=1e-6)
    assert t.result.nodes["output"].grad_fn == "ConvolutionBackward0"
    assert t.result.nodes["loss"].grad_fn == "SumBackward0"


def test_tutorial_conv_with_a_seed_equals_torch(tmp_path: Path) -> None:
    program = "import torch\ntorch.manual_seed(0)\n" + (EXAMPLES / "tutorial_conv.py").read_text()
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "output", "loss"])
    np.testing.assert_array_equal(t.arrays["torch/value/conv.weight"], g["conv"].weight.detach().numpy())
    np.testing.assert_array_equal(t.arrays["torch/grad/conv.weight"], g["conv"].weight.grad.numpy())
    np.testing.assert_allclose(t.arrays["torch/value/x"][0, 0, 0], [0.4556, 0.6323, 0.3489], atol=1e-4)


# ---- torch's random numbers ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_random_numbers_in_program_order(dtype: str, tmp_path: Path) -> None:
    program = (
        "import torch\ntorch.manual_seed(0)\nx = torch.randn(3)\n"
        "a = torch.rand(2, 3, requires_grad=True)\nk = torch.randint(0, 5, (4,))\n"
        "b = torch.randn_like(a)\nc = torch.rand_like(a)\nw = torch.empty(3, 2).uniform_(-1, 1)\nw.requires_grad_()\n"
        "n = torch.empty(2).normal_(0.5, 2.0)\ntorch.manual_seed(7)\nd = torch.randn(2, 2, requires_grad=True)\n"
        "y = ((a + b * c) @ w).sum() + (d * d).sum() + x.sum() + n.sum()\ny.backward()\n"
    )
    t = traced(program, dtype=dtype)
    g = in_torch(program, tmp_path, dtype)
    same_as_torch(t, g, ["x", "a", "k", "b", "c", "w", "n", "d"], exact=True)
    if dtype == "float32":
        np.testing.assert_allclose(t.arrays["torch/value/x"], [1.5410, -0.2934, -2.1788], atol=1e-4)
    assert t.result.comparison.verdict == "agree"


def test_without_a_seed_draws_from_torchs_default_seed() -> None:
    a = traced("x = torch.randn(3, requires_grad=True)\ny = x.sum()\n")
    b = traced("x = torch.randn(3, requires_grad=True)\ny = x.sum()\n", seed=67280421310721)
    gen = torch.Generator()  # a fresh generator starts from the default seed
    np.testing.assert_array_equal(a.arrays["torch/value/x"], torch.randn(3, generator=gen).numpy())
    np.testing.assert_array_equal(a.arrays["torch/value/x"], b.arrays["torch/value/x"])
    assert any("manual_seed" in n for n in a.result.notes)


def test_json_inputs_can_draw_torchs_numbers() -> None:
    spec = {"inputs": {"x": {"shape": [2, 3], "init": "normal", "rng": "torch", "seed": 0},
                       "u": {"shape": [3], "init": "uniform", "low": -2, "high": 2, "rng": "torch", "seed": 3},
                       "p": {"shape": [3], "init": "normal", "seed": 0}},
            "nodes": [{"name": "y", "op": "mul", "inputs": ["x", "u"]}, {"name": "l", "op": "sum", "inputs": ["y"]}]}
    t = trace(TraceSpec.model_validate(spec))
    torch.manual_seed(0)
    np.testing.assert_array_equal(t.arrays["torch/value/x"], torch.randn(2, 3).numpy())
    torch.manual_seed(3)
    np.testing.assert_array_equal(t.arrays["torch/value/u"], torch.empty(3).uniform_(-2, 2).numpy())
    pcg = np.random.Generator(np.random.PCG64(0)).normal(0, 1, size=3).astype(np.float32)
    np.testing.assert_array_equal(t.arrays["torch/value/p"], pcg)  # the numpy default stays


def test_the_api_compile_draws_nothing() -> None:
    g = compile_spec(TraceSpec(program="torch.manual_seed(0)\nx = torch.randn(1000, 1000, requires_grad=True)\ny = x.sum()\n"))
    assert g.leaves["x"].value is None and g.leaves["x"].shape == (1000, 1000)


# ---- names, backward and the other habits ------------------------------------------------------

MICROGRAD = """
import torch
a = torch.tensor(-4.0, requires_grad=True)
b = torch.tensor(2.0, requires_grad=True)
c = a + b
d = a * b + b**3
c += c + 1
c += 1 + c + (-a)
d += d * 2 + (b + a).relu()
d += 3 * d + (b - a).relu()
e = c - d
f = e**2
g = f / 2.0
g += 10.0 / f
g.backward()
"""


def test_micrograd_more_ops_and_a_name_means_its_last_binding() -> None:
    t = traced(MICROGRAD, dtype="float64", engines=["torch", "reference", "numeric"])
    r = t.result
    assert r.output == "g" and r.nodes["g"].value.data == pytest.approx(24.70408163265306, rel=1e-14)
    assert r.nodes["g@1"].value.data == pytest.approx(24.5, rel=1e-14)
    assert r.nodes["a"].grad.data == pytest.approx(138.83381924198252, rel=1e-12)
    assert r.nodes["b"].grad.data == pytest.approx(645.5772594752186, rel=1e-12)
    assert {"c@1", "c@2", "c", "d@1", "d@2", "d"} <= set(r.nodes)
    assert r.comparison.verdict == "agree"
    # `output` names agree with the program: the last binding.
    assert compile_spec(TraceSpec(program=MICROGRAD, output="g")).output == "g"
    assert compile_spec(TraceSpec(program=MICROGRAD, output="c")).output == "c"


@pytest.mark.parametrize(
    ("tail", "grad"),
    [
        ("y.sum().backward()\n", [3.0, 3.0]),
        ("loss = (y * y).mean()\nloss.backward()\n", [9.0, 18.0]),
        ("y.backward(torch.ones(2))\n", [3.0, 3.0]),
        ("y.backward(torch.ones_like(y))\n", [3.0, 3.0]),
        ("y.backward(gradient=torch.tensor([1.0, 10.0]))\n", [3.0, 30.0]),
        ("v = torch.tensor([0.5, 2.0])\ny.backward(v)\n", [1.5, 6.0]),
        ("(y * 2).sum().backward(retain_graph=True)\n", [6.0, 6.0]),
    ],
)
def test_backward_forms(tail: str, grad: list[float]) -> None:
    t = traced("x = torch.tensor([1.0, 2.0], requires_grad=True)\ny = 3 * x\n" + tail)
    np.testing.assert_allclose(t.arrays["torch/grad/x"], grad)
    assert t.result.comparison.verdict == "agree"


def test_nn_modules_sequential_losses_and_optimizer_lines(tmp_path: Path) -> None:
    program = (
        "import torch\nfrom torch import nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
        "net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))\n"
        "bn = nn.BatchNorm1d(3)\nemb = nn.Embedding(5, 4)\nidx = torch.tensor([0, 3, 3, 1, 4])\n"
        "x = emb(idx) + torch.randn(5, 4)\ny = torch.tensor([0, 2, 1, 1, 0])\ncriterion = nn.CrossEntropyLoss()\n"
        "out = bn(net(x))\nloss = criterion(out, y) + nn.MSELoss()(out, torch.zeros(5, 3))\n"
        "optimizer = torch.optim.SGD(net.parameters(), lr=0.1)\noptimizer.zero_grad()\nloss.backward()\noptimizer.step()\n"
    )
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    assert {"net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias", "bn.weight", "bn.bias", "emb.weight"} <= set(t.result.parameters)
    g = in_torch(program.replace("optimizer.step()\n", ""), tmp_path)  # step() would move the weights after backward
    same_as_torch(t, g, ["net", "bn", "emb", "x", "out", "loss"])
    np.testing.assert_allclose(t.arrays["torch/value/bn.running_mean"], g["bn"].running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(t.arrays["torch/value/bn.running_var"], g["bn"].running_var.numpy(), rtol=1e-6)
    assert any("optimizer.step()" in n for n in t.result.notes)


def test_no_grad_parameter_writes(tmp_path: Path) -> None:
    program = (
        "import torch\nimport torch.nn as nn\ntorch.manual_seed(1)\n"
        "fc = nn.Linear(3, 2)\nconv = nn.Conv2d(1, 2, 3)\nln = nn.LayerNorm(2)\n"
        "with torch.no_grad():\n"
        "    fc.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]))\n"
        "    fc.bias.zero_()\n    nn.init.kaiming_uniform_(conv.weight, a=0.1)\n    conv.bias.fill_(0.25)\n"
        "    ln.weight.data = torch.rand(2)\n    ln.bias.uniform_(-0.1, 0.1)\n"
        "x = torch.randn(2, 3)\nimg = torch.randn(1, 1, 4, 4)\n"
        "loss = ln(fc(x)).sum() + conv(img).pow(2).mean()\nloss.backward()\nprint(fc.weight.grad)\n"
    )
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["fc", "conv", "ln", "loss"])
    np.testing.assert_array_equal(t.arrays["torch/value/fc.weight"], [[1, 2, 3], [-1, 0.5, 0]])
    assert t.result.comparison.verdict == "agree"


def test_indexing_in_programs_matches_torch(tmp_path: Path) -> None:
    program = (
        "import torch\ntorch.manual_seed(2)\nx = torch.randn(4, 5, 3, requires_grad=True)\nidx = torch.tensor([2, 0, 2, 2])\n"
        "a = x[0]\nb = x[:, 1:]\nc = x[::2, ..., -1]\nd = x[..., None]\ne = x[[0, 2, 2]]\nf = x[idx, 1:4:2]\n"
        "g = x.index_select(1, idx) * 2\nh = torch.gather(x, 2, torch.tensor([[[0], [2], [2], [1], [0]]] * 4))\n"
        "n = x.shape[0]\nk = x.view(n, -1)[1:3, ::4]\n"
        "loss = a.sum() + (b ** 2).sum() + c.mean() + d.sum() + e.sum() + (f * f).sum() + g.sum() + h.sum() + k.sum()\n"
        "loss.backward()\n"
    )
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "a", "b", "c", "d", "e", "f", "g", "h", "k", "loss"])
    assert t.result.nodes["a"].grad_fn == "SelectBackward0" and t.result.nodes["e"].grad_fn == "IndexBackward0"


def test_flip_cumsum_outer_where_of_numbers_and_new_tensors_match_torch(tmp_path: Path) -> None:
    """torch.flip / x.flip(0), cumsum, torch.outer (RoPE's angles), torch.where(mask, 1.0, 0.0) and x.new_zeros /
    new_ones / new_full (x's dtype): values, grads and grad_fns as torch gives them."""
    program = (
        "import torch\ntorch.manual_seed(3)\nx = torch.randn(4, 3, requires_grad=True, dtype=torch.float64)\n"
        "t = torch.arange(4).float()\nfreqs = 1.0 / (10000 ** (torch.arange(0, 6, 2).float() / 6))\n"
        "angles = torch.outer(t, freqs)\na = x.flip(0)\nb = torch.flip(x, [0, 1])\nc = x.cumsum(dim=1)\n"
        "keep = torch.where(x > 0, 1.0, 0.0)\nz = x.new_zeros(4, 3)\no = x.new_ones((4, 3))\nf = x.new_full((3,), 0.5)\n"
        "loss = (a * angles.double() + b * c * keep + z + o).sum() + (x[0].outer(f) ** 2).sum()\nloss.backward()\n"
    )
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "angles", "a", "b", "c", "keep", "z", "o", "f", "loss"])
    nodes = t.result.nodes
    assert [nodes[k].grad_fn for k in ("a", "c")] == [type(g[k].grad_fn).__name__ for k in ("a", "c")] == ["FlipBackward0", "CumsumBackward0"]
    assert {nodes[k].value.dtype for k in ("z", "o", "f")} == {"float64"} and nodes["keep"].value.dtype == "float32"


def test_method_aliases_in_place_function_statements_and_chained_names(tmp_path: Path) -> None:
    """x.swapaxes / movedim / narrow / select / unflatten / unbind trace as the op torch records (its grad_fn);
    `F.relu(h, inplace=True)` and `F.relu_(g)` as statements change h and g; `p = q = x.sum(0)` binds both names."""
    program = (
        "import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nx = torch.randn(2, 3, 4, requires_grad=True)\n"
        "a = x.swapaxes(0, 2)\nb = x.movedim(0, -1)\nc = x.movedim([0, 1], [2, 0])\nd = x.narrow(2, 1, 2)\n"
        "e = x.select(1, -1)\nf = x.unflatten(2, (2, -1))\nr0, r1, r2 = torch.unbind(x, 1)\nh = x * 1\n"
        "F.relu(h, inplace=True)\ng = x * 2\nF.relu_(g)\np = q = x.sum(0)\nq = q * 3\n"
        "loss = a.sum() + (b * b).sum() + c.mean() + d.sum() + e.pow(2).sum() + f.sum() + (r0 * r2).sum() + r1.sum()"
        " + h.sum() + g.sum() + p.sum() + q.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "a", "b", "c", "d", "e", "f", "r0", "r1", "r2", "h", "g", "p", "q", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ["a", "b", "c", "d", "e", "f", "r1"]] == \
        [type(g[k].grad_fn).__name__ for k in ["a", "b", "c", "d", "e", "f", "r1"]]  # r1: UnbindBackward0
    assert "narrow: start 3 and length 2 exceed dim 2" in str(_refused("x = torch.randn(2, 3, 4)\ny = x.narrow(2, 3, 2)\n"))


def test_f_pad_as_unet_crops_and_pads(tmp_path: Path) -> None:
    """F.pad with a tuple, a fill value and negative pads (crops), as U-Net's skip connections write it: torch's
    numbers and its grad_fn, ConstantPadNdBackward0; other modes are refused with the reason."""
    program = ("import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nx1 = torch.randn(1, 2, 5, 5, requires_grad=True)\n"
               "x2 = torch.randn(1, 2, 6, 7, requires_grad=True)\ndiffY = x2.size()[2] - x1.size()[2]\n"
               "diffX = x2.size()[3] - x1.size()[3]\nx1p = F.pad(x1, [diffX // 2, diffX - diffX // 2, diffY // 2, diffY - diffY // 2])\n"
               "x = torch.cat([x2, x1p], dim=1)\ny = F.pad(x, (1, 1), 'constant', -0.5)\nz = F.pad(y, (-1, -2, 0, 1))\n"
               "loss = (z * z).sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x1", "x2", "x1p", "x", "y", "z", "loss"])
    assert t.result.nodes["x1p"].grad_fn == type(g["x1p"].grad_fn).__name__ == "ConstantPadNdBackward0"
    assert "less than the corresponding input dimension" in str(
        _refused("import torch.nn.functional as F\nx = torch.randn(1, 2, 3)\ny = F.pad(x, (3, 1), mode='reflect')\n"))


def test_reflection_and_replication_padding_as_cyclegan_writes_it(tmp_path: Path) -> None:
    """CycleGAN's residual block (nn.ReflectionPad2d before each conv), nn.ReplicationPad2d, nn.CircularPad1d and
    F.pad in reflect mode: torch's numbers and grad_fns (ReflectionPad2DBackward0, ReplicationPad2DBackward0)."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "class ResnetBlock(nn.Module):\n    def __init__(self, dim):\n        super().__init__()\n"
               "        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.GroupNorm(dim, dim),\n"
               "                                        nn.ReLU(True), nn.ReplicationPad2d((1, 1, 1, 1)), nn.Conv2d(dim, dim, 3))\n"
               "    def forward(self, x):\n        return x + self.conv_block(x)\n"
               "blk = ResnetBlock(2)\nx = torch.randn(2, 2, 5, 5, requires_grad=True)\ny = blk(x)\n"
               "r = F.pad(x, (2, 1, 0, 3), mode='reflect')\nc = nn.CircularPad1d((1, 2))(x.flatten(2))\n"
               "loss = (y * y).mean() + r.sin().sum() + c.pow(2).sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["blk", "x", "y", "r", "c", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("blk.conv_block.0.out", "blk.conv_block.4.out", "r")] == \
        ["ReflectionPad2DBackward0", "ReplicationPad2DBackward0", type(g["r"].grad_fn).__name__]


def test_instance_norm_with_an_in_place_relu_after_it(tmp_path: Path) -> None:
    """nn.InstanceNorm2d (style transfer's, affine and not) followed by nn.ReLU(True), F.instance_norm and
    nn.InstanceNorm1d: torch's numbers. torch's instance_norm returns a view of a temporary: the in-place ReLU
    after it must not lose that node's grad (ViewBackward0, as torch shows it)."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.InstanceNorm2d(3), nn.ReLU(True), nn.Conv2d(3, 3, 1),\n"
               "                    nn.InstanceNorm2d(3, affine=True))\nx = torch.randn(2, 2, 4, 4, requires_grad=True)\ny = net(x)\n"
               "s = torch.randn(2, 4, 5, requires_grad=True)\nz = F.instance_norm(s, eps=1e-3)\n"
               "n1 = nn.InstanceNorm1d(4, affine=True)\nz2 = n1(s * 2)\nloss = (y * y).mean() + (z * z2).sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["net", "x", "y", "s", "z", "n1", "z2", "loss"])
    assert t.result.nodes["net.1.out"].grad_fn == "ViewBackward0" and t.result.nodes["net.1.out"].grad is not None
    assert "unsqueeze(0)" in str(_refused("import torch.nn as nn\nn = nn.InstanceNorm2d(3)\ny = n(torch.randn(3, 4, 4))\n"))


def test_a_contrastive_loss_reads_the_diagonal(tmp_path: Path) -> None:
    """CLIP-style: logits between two embeddings, the positives on `logits.diagonal()` (a view: DiagonalBackward0)."""
    program = ("import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\na = torch.randn(4, 8, requires_grad=True)\n"
               "b = torch.randn(4, 8, requires_grad=True)\nlogits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.07\n"
               "pos = logits.diagonal()\nloss = (torch.logsumexp(logits, dim=1) - pos).mean()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["a", "b", "logits", "pos", "loss"])
    assert t.result.nodes["pos"].grad_fn == "DiagonalBackward0"


def test_position_ids_from_an_attention_mask_as_transformers_builds_them(tmp_path: Path) -> None:
    """Hugging Face's position ids: `attention_mask.long().cumsum(-1) - 1`, then `masked_fill_(attention_mask == 0,
    1)` on the int64 tensor, then an embedding lookup: torch's ids and grads."""
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\n"
               "attention_mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])\n"
               "position_ids = attention_mask.long().cumsum(-1) - 1\nposition_ids.masked_fill_(attention_mask == 0, 1)\n"
               "wpe = nn.Embedding(4, 3)\nh = wpe(position_ids)\nloss = (h * h).sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["position_ids", "wpe", "h", "loss"], exact=False)
    assert t.result.nodes["position_ids"].value.dtype == "int64"


def test_in_place_functions_in_every_form(tmp_path: Path) -> None:
    """`F.leaky_relu(h, 0.2, inplace=True)` and `F.elu(e, inplace=True)` (no tensor method behind them) and
    `g = F.relu_(k)` (g is k, changed): torch's numbers; a note says node 'k' is k before the change."""
    program = ("import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nx = torch.randn(3, 4, requires_grad=True)\n"
               "h = x * 2\nF.leaky_relu(h, 0.2, inplace=True)\nk = x * 3\ng = F.relu_(k)\ne = x * 0.5\n"
               "F.elu(e, inplace=True)\nloss = h.sum() + g.sum() + k.sum() + e.sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "h", "g", "e", "loss"])
    assert "line 8: `k` changes in place the tensor node 'k' shows: 'k' is its value before the change, 'g' after" in t.result.notes


def test_unflatten_and_padding_modules_in_a_decoder(tmp_path: Path) -> None:
    """nn.Unflatten (a decoder's `nn.Unflatten(1, (2, 3, 3))`), nn.ZeroPad2d, nn.ConstantPad2d with 4 sides and a
    value, nn.ConstantPad1d: torch's numbers and grad_fns (ViewBackward0, ConstantPadNdBackward0)."""
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\n"
               "dec = nn.Sequential(nn.Linear(4, 2 * 3 * 3), nn.Unflatten(1, (2, 3, 3)), nn.ZeroPad2d(1), nn.Conv2d(2, 1, 3),\n"
               "                    nn.ConstantPad2d((1, 0, 0, 1), -0.5))\npad1 = nn.ConstantPad1d(2, 1.5)\nz = torch.randn(5, 4)\n"
               "img = dec(z)\nseq = pad1(img.flatten(2))\nloss = (img ** 2).sum() + seq.mean()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["dec", "img", "seq", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("dec.1.out", "dec.2.out")] == ["ViewBackward0", "ConstantPadNdBackward0"]
    assert "do not make dim 1" in str(_refused("import torch.nn as nn\nu = nn.Unflatten(1, (2, 2))\ny = u(torch.ones(3, 5))\n"))


def test_relu6_module_and_function_are_torch_s_hardtanh(tmp_path: Path) -> None:
    """nn.ReLU6 (MobileNet's, in place inside an nn.Sequential) and F.relu6: hardtanh(0, 6), as torch computes it."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "net = nn.Sequential(nn.Linear(3, 4), nn.ReLU6(inplace=True), nn.Linear(4, 2))\nx = torch.randn(5, 3) * 8\n"
               "y = F.relu6(net(x) * 5)\nloss = y.sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["net", "y", "loss"])
    assert t.result.nodes["y"].grad_fn == t.result.nodes["net.1.out"].grad_fn == "HardtanhBackward0"


def test_chunk_unpacking_names_each_piece_and_shapes_fold() -> None:
    t = traced(
        "x = torch.randn(2, 6, requires_grad=True)\nq, k, v = x.chunk(3, dim=-1)\nB, C = x.shape\n"
        "w = (q * k + v).reshape(B * 2, C // 6)\nm = w.max(dim=0).values\nloss = m.sum() + w[0].sum()\nloss.backward()\n"
    )
    assert {"q", "k", "v"} <= set(t.result.nodes) and t.result.nodes["q"].shape == [2, 2]
    assert t.result.nodes["w"].shape == [4, 1]
    assert t.result.comparison.verdict == "agree"


def test_one_piece_taken_from_chunk_split_unbind_meshgrid_is_the_statements_variable(tmp_path: Path) -> None:
    """`h = h.chunk(3, 1)[1]` names that piece h (h@2 when h is bound again), twice in a row too (it was refused:
    "name 'h#1.0' is defined twice"); torch.split / torch.unbind / torch.meshgrid alike; torch's numbers."""
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(2, 6, requires_grad=True)\nh = x * 2\n"
               "h = h.chunk(3, 1)[1]\nh = torch.split(h, 1, dim=1)[-1]\nu = torch.unbind(x, 1)[3]\n"
               "g = torch.meshgrid(x[0], x[1], indexing='ij')[1]\nq = x.split([2, 4], 1)[1].sum(0)\n"
               "loss = (h * h).sum() + u.sum() + g.sum() + q.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["x", "h", "u", "g", "q", "loss"])
    nodes = t.result.nodes
    assert (nodes["h@2"].op, nodes["h@2"].shape, nodes["h"].op, nodes["h"].shape) == ("chunk", [2, 2], "split", [2, 1])
    assert (nodes["u"].op, nodes["g"].op, nodes["g"].grad_fn) == ("unbind", "expand", "ExpandBackward0")
    assert {"h#1.0", "h#1.2", "h#2.0", "u#1.0", "q#1.0"} <= set(nodes)  # the pieces not taken keep temporaries


def test_parallel_assignment_and_a_sequential_of_own_modules_name_their_results(tmp_path: Path) -> None:
    """`mu, logvar = fc_mu(h), fc_var(h)` (a VAE; Llama's `xq, xk, xv = self.wq(x), ...`) names each item by its
    target (were fc_mu.out, fc_var.out), `u, v = v, u * v` evaluates both before binding; `y = seq(x)` of an
    nn.Sequential ending in the program's own module names its result y (was seq.1.x)."""
    program = ("import torch\nimport torch.nn as nn\n\n\nclass B(nn.Module):\n    def __init__(self):\n"
               "        super().__init__()\n        self.fc = nn.Linear(4, 4)\n\n    def forward(self, x):\n"
               "        x = x + self.fc(x)\n        return x\n\n\ntorch.manual_seed(0)\nseq = nn.Sequential(B(), B())\n"
               "fc_mu, fc_var = nn.Linear(4, 2), nn.Linear(4, 2)\nx = torch.randn(3, 4, requires_grad=True)\ny = seq(x)\n"
               "mu, logvar = fc_mu(y), fc_var(y)\nu, v = mu.exp(), logvar * 2\nu, v = v, u * v\n"
               "loss = (u + v).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["seq", "fc_mu", "fc_var", "x", "y", "mu", "logvar", "v", "loss"])
    nodes = t.result.nodes
    assert (nodes["y"].op, nodes["mu"].op, nodes["logvar"].op, nodes["v"].op, nodes["u@1"].op) == ("add", "linear", "linear", "mul", "exp")


def test_dropout_masks_follow_torch_and_eval_turns_them_off(tmp_path: Path) -> None:
    program = (
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(3)\n"
        "x = torch.randn(4, 6, requires_grad=True)\ndrop = nn.Dropout(p=0.3)\n"
        "y = F.dropout(x, 0.5) + drop(x)\nz = F.dropout(x, p=0.2, training=False)\nloss = (y * z).sum()\nloss.backward()\n"
    )
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "y", "loss"])
    assert "z" not in t.result.nodes  # dropout with training=False is the input itself, as in torch
    for turn_off in ("drop.eval()", "drop.train(False)", "drop.train(mode=False)", "net.train(mode=False)"):
        off = traced("import torch.nn as nn\ndrop = nn.Dropout(0.5)\nnet = nn.Sequential(drop)\n" + turn_off +
                     "\nx = torch.randn(3, requires_grad=True)\ny = drop(x).sum()\n")
        assert [n.op for n in off.result.nodes.values() if not n.is_leaf] == ["sum"], turn_off
    on = traced("import torch.nn as nn\ndrop = nn.Dropout(0.5)\ndrop.eval()\ndrop.train(mode=True)\n"
                "x = torch.randn(3, requires_grad=True)\ny = drop(x).sum()\n")
    assert [n.op for n in on.result.nodes.values() if not n.is_leaf] == ["dropout", "sum"]


# ---- the two new examples, as programs and as model specs ---------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("example", ["resnet_block", "transformer_block"])
def test_example_programs_equal_torch_and_finite_differences(example: str, dtype: str, tmp_path: Path) -> None:
    program = (EXAMPLES / f"{example}.py").read_text()
    t = traced(program, dtype=dtype, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree", [p.failures for p in t.result.comparison.pairs]
    g = in_torch(program, tmp_path, dtype)
    modules = [k for k, v in g.items() if isinstance(v, torch.nn.Module)]
    same_as_torch(t, g, [*modules, "loss"] + (["x"] if example == "resnet_block" else []))  # the transformer rebinds x


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("example", ["resnet_block", "transformer_block"])
def test_example_model_specs_agree_with_torch_and_finite_differences(example: str, dtype: str) -> None:
    spec = TraceSpec.model_validate_json((EXAMPLES / f"{example}.json").read_text())
    t = trace(spec.model_copy(update={"dtype": dtype}), inline_limit=10**6)
    assert t.result.comparison.verdict == "agree", [p.failures for p in t.result.comparison.pairs]
    assert "numeric" in t.result.engines


def test_transformer_model_spec_is_nn_multiheadattention() -> None:
    """The self_attention layer is nn.MultiheadAttention(batch_first=True) with a causal mask, parameters and all."""
    t = trace(TraceSpec.model_validate_json((EXAMPLES / "transformer_block.json").read_text()), inline_limit=10**6)
    torch.manual_seed(1)
    x = torch.randn(1, 8, 16, requires_grad=True)
    torch.manual_seed(0)
    ln1, attn = torch.nn.LayerNorm(16), torch.nn.MultiheadAttention(16, 2, batch_first=True)
    ln2, fc1, fc2 = torch.nn.LayerNorm(16), torch.nn.Linear(16, 64), (torch.nn.GELU(), torch.nn.Linear(64, 16))[1]
    h = ln1(x)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(8)
    r1 = x + attn(h, h, h, attn_mask=mask, need_weights=False, is_causal=True)[0]
    loss = (r1 + fc2(torch.nn.functional.gelu(fc1(ln2(r1))))).mean()
    loss.backward()
    np.testing.assert_array_equal(t.arrays["torch/value/attn.in_proj_weight"], attn.in_proj_weight.detach().numpy())
    np.testing.assert_allclose(t.arrays["torch/value/loss"], loss.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(t.arrays["torch/grad/x"], x.grad.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(t.arrays["torch/grad/attn.in_proj_weight"], attn.in_proj_weight.grad.numpy(), rtol=1e-4, atol=1e-7)


# ---- what is rejected, and how -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "line", "needle"),
    [
        ("import torch.nn as nn\nconv = nn.Conv2d(1, 1)\n", 2, "kernel_size"),
        ("import torch.nn as nn\nrnn = nn.Conv3d(3, 4, 2)\n", 2, "unknown function 'nn.Conv3d'"),
        ("import torch.nn as nn\nlin = nn.Linear(3, 2)\nlin.weight += 0.1\n", 3, "a leaf Variable that requires grad"),
        ("import torch.nn as nn\nfc = nn.Linear(3, 4, device='cuda', dtype=torch.float64)\n", 2, "nn.Linear"),
        ("x = torch.rand(3, requires_grad=True)\nv = torch.ones(3)\nwith torch.no_grad():\n    x -= 0.1 * v\n", 4,
         "optimizer's step"),
        ("import torch.nn as nn\nl = nn.Linear(2, 2)\nn1 = nn.Sequential(l, 3)\n", 3, "takes modules"),
        ("x = torch.rand(3, requires_grad=True)\ny = x.relu_()\n", 2, "in-place"),
        ("x = torch.rand(3, requires_grad=True)\nx[0] = 1\n", 2, "a leaf tensor that requires grad"),
        ("x = torch.rand(3, requires_grad=True)\ny = (x * 2).requires_grad_()\n", 2, "not a leaf"),
        ("x = torch.rand(3, requires_grad=True)\ny = x.item()\n", 2, "a Tensor with 3 elements cannot be converted to Scalar"),
        ("x = torch.rand(2, 3, requires_grad=True)\ny = torch.where(x, x, 0.0)\n", 2, "bool"),
        ("torch.manual_seed(0.5)\n", 1, "integer seed"),
    ],
)
def test_unsupported_pytorch_is_rejected_with_its_line(program: str, line: int, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program=program))
    assert info.value.line == line, str(info.value)
    assert needle in str(info.value)


# ---- loops -----------------------------------------------------------------------------------------


def test_a_range_loop_is_unrolled_and_gives_torch_s_numbers(tmp_path: Path) -> None:
    program = ("import torch\nx = torch.tensor(2.0, requires_grad=True)\nw = torch.tensor([0.5, -1.0], requires_grad=True)\n"
               "y = x\nsteps = 3\nfor i in range(steps):\n    y = y * x + i\nh = w * 0\n"
               "for i in range(1, 3):\n    for j in range(i):\n        h = torch.tanh(h + w * y / (i + j))\n"
               "loss = h.sum()\nloss.backward()\n")
    t, g = traced(program), in_torch(program, tmp_path)
    assert float(t.result.nodes["y"].value.data) == g["y"].item() == ((2 * 2 + 0) * 2 + 1) * 2 + 2
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, g, ["x", "w", "y", "h", "loss"])
    # each binding of a rebound name is its own node, the last one has the bare name, as outside loops (`y = x`
    # binds x itself: no node); h is bound once before the loops and once per inner iteration (1 + 2)
    assert {"y@2", "y@3", "y", "h@1", "h@2", "h@3", "h"} <= set(t.result.nodes) and "h@4" not in t.result.nodes
    assert t.result.nodes["y"].grad_fn == "AddBackward0"


@pytest.mark.parametrize(("program", "message", "line"), [
    ("x = torch.ones(2, requires_grad=True)\nn = x.sum()\nfor i in range(n):\n    x = x * 2\n", "constant bounds", 3),
    ("x = torch.ones(2, requires_grad=True)\nfor i in range(3):\n    if x.sum() > i:\n        x = x * 2\n", "depend on the data", 3),
    ("x = torch.ones(2, requires_grad=True)\nfor i in range(3):\n    if (x > 0).all():\n        break\n", "tests a tensor's values", 3),
    ("x = torch.ones(2, requires_grad=True)\nopt = torch.optim.SGD([x], lr=0.1)\nfor g in opt:\n    x = x * 2\n",
     "needs their length", 3),
    ("x = torch.ones(2, requires_grad=True)\nwhile True:\n    x = x * 2\n", "ever become false", 2),
    ("x = torch.ones(2, requires_grad=True)\nfor i in range(10**9):\n    x = x * 2\n", "(1,000,000,000 iterations)", 2),
    ("x = torch.ones(2, requires_grad=True)\nfor i in range(30000):\n    x = x * 2\n", "over 20,000 statements", 2),
])
def test_loops_that_cannot_be_unrolled_are_refused_at_their_line(program: str, message: str, line: int) -> None:
    with pytest.raises(SpecError) as e:
        compile_spec(TraceSpec(program="import torch\n" + program))
    assert message in str(e.value) and e.value.line == line + 1, (str(e.value), e.value.line)


def test_the_rnn_example_equals_torch_step_by_step(tmp_path: Path) -> None:
    program = (EXAMPLES / "rnn_unrolled.py").read_text()
    t, g = traced(program), in_torch(program, tmp_path)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, g, ["x", "W_xh", "W_hh", "h", "loss"])
    steps = ["h@2", "h@3", "h@4", "h"]  # h@1 is the zeros it starts from
    assert all(t.result.nodes[s].grad_fn == "TanhBackward0" for s in steps)
    # the gradient reaching each step's hidden state is what torch gives it (hooks on the same code)
    hs: list[torch.Tensor] = []
    torch.manual_seed(0)
    x = torch.randn(4, 3)
    W_xh, W_hh = torch.randn(3, 5, requires_grad=True), torch.randn(5, 5, requires_grad=True)
    h = torch.zeros(5)
    for k in range(4):
        h = torch.tanh(x[k] @ W_xh + h @ W_hh)
        h.retain_grad()
        hs.append(h)
    h.sum().backward()
    for name, ref in zip(steps, hs, strict=True):
        np.testing.assert_allclose(t.arrays[f"torch/grad/{name}"], ref.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_small_torch_forms_people_write(tmp_path: Path) -> None:
    """torch.fliplr / flipud and their methods (FlipBackward0), `F.relu(h, True)` and `F.leaky_relu(h, 0.1, True)`
    with a positional inplace, `cumsum(1, dtype=torch.float32)` of a bool mask (one CumsumBackward0), and
    `x.new_tensor(...)` in x's dtype: torch's numbers."""
    program = ("import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nx = torch.randn(3, 4, requires_grad=True)\n"
               "y = x.fliplr() + x.flipud() * torch.fliplr(x)\nv = torch.flipud(x[0])\nh = x * 2\nF.leaky_relu(h, 0.1, True)\n"
               "k = x * 3\nr = F.relu(k, False)\nm = (x > 0).cumsum(dim=1, dtype=torch.float32)\nc = x.cumsum(0, dtype=torch.float64)\n"
               "t = x.new_tensor([1, 2, 3, 4])\nloss = y.sum() + (v * v).sum() + h.sum() + (r * m * t).sum() + c.sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "y", "v", "r", "m", "c", "t", "loss"])
    assert t.result.nodes["v"].grad_fn == "FlipBackward0" and t.result.nodes["t"].value.dtype == "float32"
    assert t.result.nodes["c"].grad_fn == "CumsumBackward0" and t.result.nodes["c"].value.dtype == "float64"
    assert "input must be >= 2-d" in str(_refused("y = torch.fliplr(torch.ones(3))\n"))


def test_map_and_sorted_of_known_values(tmp_path: Path) -> None:
    """map(f, xs) and map(f, xs, ys) as the comprehension they are, sorted() of a dict's keys and of numbers; a
    sort by tensor values (key=) is refused with the reason."""
    program = ("import torch\ntorch.manual_seed(0)\nxs = [torch.randn(3, requires_grad=True) for _ in range(3)]\n"
               "ws = [0.5, 2.0, 1.5]\nzs = list(map(torch.sin, xs))\nys = list(map(lambda a, w: a * w, xs, ws))\n"
               "cfg = {'b': 2, 'a': 3}\norder = sorted(cfg)\nsizes = sorted([4, 2, 3], reverse=True)\n"
               "loss = sum(z.sum() for z in zs) + sum(map(lambda t: t.pow(2).sum(), ys)) * cfg[order[0]] * sizes[0]\n"
               "loss.backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    np.testing.assert_allclose(t.arrays["torch/value/loss"], g["loss"].detach().numpy(), rtol=1e-6)
    for k in range(3):
        np.testing.assert_allclose(t.arrays[f"torch/grad/xs#{k + 1}"], g["xs"][k].grad.numpy(), rtol=1e-5)
    assert "key=" in str(_refused("xs = [torch.ones(2), torch.zeros(2)]\nys = sorted(xs, key=lambda t: t.sum().item())\n"))


def test_a_text_cnn_with_conv1d_as_people_write_it(tmp_path: Path) -> None:
    """Kim's text CNN: nn.Embedding, transpose(1, 2), nn.Conv1d of several widths in a ModuleList (padding 'same' for
    the odd ones), max over time, and an nn.ConvTranspose1d: torch's numbers and ConvolutionBackward0."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "class TextCNN(nn.Module):\n    def __init__(self, vocab, d, n_filters, sizes, n_cls):\n        super().__init__()\n"
               "        self.emb = nn.Embedding(vocab, d)\n"
               "        self.convs = nn.ModuleList([nn.Conv1d(d, n_filters, k, padding='same' if k % 2 else 0) for k in sizes])\n"
               "        self.up = nn.ConvTranspose1d(n_filters, 2, 4, stride=2, padding=1)\n"
               "        self.fc = nn.Linear(n_filters * len(sizes), n_cls)\n    def forward(self, x):\n"
               "        e = self.emb(x).transpose(1, 2)\n        hs = [F.relu(c(e)) for c in self.convs]\n        u = self.up(hs[0])\n"
               "        pooled = [h.max(dim=2)[0] for h in hs]\n        return self.fc(torch.cat(pooled, 1)), u\n"
               "model = TextCNN(20, 6, 4, [3, 4, 5], 3)\ntokens = torch.randint(0, 20, (2, 9))\nlogits, u = model(tokens)\n"
               "loss = F.cross_entropy(logits, torch.tensor([0, 2])) + u.pow(2).mean()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["model", "logits", "u", "loss"])
    assert t.result.nodes["u"].grad_fn == "ConvolutionBackward0"


def test_view_of_a_layout_torch_cannot_view_fails_as_in_torch(tmp_path: Path) -> None:
    """`x.transpose(1, 2).view(...)` without .contiguous() raises in torch ("view size is not compatible"): the trace
    fails with torch's message, the node and the line; with .contiguous() (or reshape) it runs, ViewBackward0 over
    CloneBackward0 as torch shows it."""
    bad = "import torch\nx = torch.randn(2, 3, 4, requires_grad=True)\ny = x.transpose(1, 2).view(2, -1)\nloss = y.sum()\n"
    with pytest.raises(RuntimeError, match=r"view size is not compatible.*node 'y', line 3"):
        traced(bad)
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(2, 3, 4, requires_grad=True)\nh = x.transpose(1, 2).contiguous()\n"
               "y = h.view(2, -1)\nz = x.permute(2, 0, 1).contiguous().view(4, 6)\nw = x.view(6, 4)\nr = x.transpose(0, 1).reshape(-1)\n"
               "loss = (y * y).sum() + z.sum() + w.sin().sum() + r.sum()\nloss.backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "y", "z", "w", "r", "loss"])
    assert t.result.nodes["y"].grad_fn == "ViewBackward0" and t.result.nodes["y"].next_functions[0].grad_fn == "CloneBackward0"


def test_an_in_place_chain_names_its_last_value(tmp_path: Path) -> None:
    """`y = (x * 2).add_(1).mul_(3)` and the old VAE's `z = eps.mul(std).add_(mu)`: the variable names the chain's
    last value (the earlier ones are y#1, y#2), as torch's y is; `w = torch.empty(3).uniform_(-1, 1)` still names
    the leaf."""
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(3, requires_grad=True)\ny = (x * 2).add_(1).mul_(3)\n"
               "mu = torch.randn(3, requires_grad=True)\neps = torch.randn(3)\nz = eps.mul(x.exp()).add_(mu)\n"
               "w = torch.empty(3).uniform_(-1, 1)\nloss = (y * z * w).sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "y", "mu", "z", "w", "loss"])
    assert [t.result.nodes[k].op for k in ("y#1", "y#2", "y", "z", "w")] == ["mul", "add", "mul", "add", "input"]


def test_batch_norm_in_eval_mode_as_the_fgsm_tutorial_runs_it(tmp_path: Path) -> None:
    """The FGSM tutorial's pattern: `model.eval()`, one image that requires grad, the loss's gradient on the input.
    BatchNorm then uses its running statistics: a fresh module's (zeros and ones, leaves named as torch's buffers) or
    those a training-mode call left (batch_norm_running nodes); track_running_stats=False keeps batch statistics."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10),\n"
               "                      nn.BatchNorm1d(10), nn.BatchNorm1d(10, track_running_stats=False))\n"
               "fresh = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, eps=1e-3))\nfresh.eval()\n"
               "x = torch.randn(8, 1, 6, 6)\nwarm = model(x)\nmodel.eval()\ndata = torch.randn(2, 1, 6, 6, requires_grad=True)\n"
               "output = model(data)\nloss = F.nll_loss(F.log_softmax(output, dim=1), torch.tensor([3, 1])) + fresh(data).pow(2).mean()\n"
               "model.zero_grad()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["model", "fresh", "data", "output", "loss"])
    nodes = t.result.nodes
    assert nodes["model.1.out#2"].op == "batch_norm_eval" and nodes["model.1.out#2"].grad_fn == "NativeBatchNormBackward0"
    assert nodes["fresh.1.running_var"].is_leaf and nodes["fresh.1.running_var"].value.data == [1.0, 1.0]
    assert nodes["output"].op == "batch_norm"  # no running statistics: the batch's, in eval mode too


def test_upsampling_as_unet_and_super_resolution_write_it(tmp_path: Path) -> None:
    """U-Net's Up block (nn.Upsample bilinear with align_corners, F.pad, torch.cat), a sub-pixel head (nn.PixelShuffle),
    nn.UpsamplingNearest2d / UpsamplingBilinear2d and F.interpolate by size: torch's numbers and grad_fns."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "class Up(nn.Module):\n    def __init__(self, in_ch, out_ch):\n        super().__init__()\n"
               "        self.up = nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True)\n"
               "        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)\n    def forward(self, x1, x2):\n        x1 = self.up(x1)\n"
               "        diffY = x2.size()[2] - x1.size()[2]\n        diffX = x2.size()[3] - x1.size()[3]\n"
               "        x1 = F.pad(x1, [diffX // 2, diffX - diffX // 2, diffY // 2, diffY - diffY // 2])\n"
               "        return self.conv(torch.cat([x2, x1], dim=1))\n"
               "up = Up(4, 2)\nx1 = torch.randn(1, 2, 3, 3, requires_grad=True)\nx2 = torch.randn(1, 2, 7, 7, requires_grad=True)\n"
               "y = up(x1, x2)\nsr = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.PixelShuffle(2), nn.UpsamplingNearest2d(scale_factor=2),\n"
               "                   nn.UpsamplingBilinear2d(size=(20, 20)))\nz = sr(y)\nm = F.interpolate(x2, size=(4, 9))\n"
               "loss = z.pow(2).mean() + m.sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["up", "sr", "x1", "x2", "y", "z", "m", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("sr.1.out", "sr.2.out", "z", "m")] == [
        "PixelShuffleBackward0", "UpsampleNearest2DBackward0", "UpsampleBilinear2DBackward0", "UpsampleNearest2DBackward0"]


def test_losses_torch_composes_and_their_modules(tmp_path: Path) -> None:
    """F.l1_loss / nn.L1Loss, F.kl_div / nn.KLDivLoss (distillation: batchmean, and log_target), F.cosine_similarity /
    nn.CosineSimilarity (broadcast too) built from the ops torch composes them of, and F.smooth_l1_loss / nn.HuberLoss
    (ops of their own): torch's numbers and grad_fns."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "a = torch.randn(4, 5, requires_grad=True)\nb = torch.randn(4, 5, requires_grad=True)\nl1 = F.l1_loss(a, b)\n"
               "l1m = nn.L1Loss(reduction='sum')(a, b.detach())\nsl = F.smooth_l1_loss(a, b, beta=0.5)\n"
               "hb = nn.HuberLoss(reduction='sum', delta=0.3)(a, b)\nT = 2.0\n"
               "kl = nn.KLDivLoss(reduction='batchmean')(F.log_softmax(a / T, dim=1), F.softmax(b / T, dim=1)) * T * T\n"
               "kl2 = F.kl_div(F.log_softmax(a, dim=1), F.log_softmax(b, dim=1), reduction='sum', log_target=True)\n"
               "cs = nn.CosineSimilarity(dim=1, eps=1e-6)(a, b)\ncs2 = F.cosine_similarity(a, b[0:1], dim=-1)\n"
               "loss = l1 + l1m + sl + hb + kl + kl2 + (1 - cs).mean() + cs2.sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["a", "b", "l1", "l1m", "sl", "hb", "kl", "kl2", "cs", "cs2", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("l1", "sl", "hb", "kl2", "cs")] == [
        type(g[k].grad_fn).__name__ for k in ("l1", "sl", "hb", "kl2", "cs")]


def test_a_hook_that_prints_a_gradient_is_accepted_and_one_that_changes_it_refused(tmp_path: Path) -> None:
    """The tutorials' `h.register_hook(lambda grad: print(grad))` (or a def that prints) to see a gradient torch does
    not keep: accepted, with a note pointing at that node's grad; a hook returning a new gradient is refused."""
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(3, requires_grad=True)\nh = x * 3\n"
               "h.register_hook(lambda grad: print('h.grad', grad))\ndef show(g):\n    print(g)\n"
               "y = h.sin()\ny.register_hook(show)\nloss = y.sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "h", "y", "loss"])
    assert any("the hook on 'h' only looks at its gradient" in n for n in t.result.notes)
    for hook in ("lambda g: g * 10", "lambda g: g.mul_(10)", "lambda g: print(g.mul_(0.5))", "scale", "alias", "row"):
        assert "changes the gradient" in str(_refused("x = torch.ones(3, requires_grad=True)\nh = x * 2\n"
                                                      "def scale(g):\n    g[0] = 0\n"
                                                      "def alias(grad):\n    g = grad\n    g *= 3.0\n"
                                                      "def row(grad):\n    r = grad[0:2]\n    r.zero_()\n"
                                                      f"h.register_hook({hook})\nh.sum().backward()\n")), hook


GRAD_KEEPERS = """
import torch
from torch import nn
torch.manual_seed(0)
grads = {}
store = []


def save_grad(name):
    def hook(grad):
        grads[name] = grad
    return hook


class GradCAM:
    def __init__(self, model):
        self.model = model
        self.gradients = None

    def save_gradient(self, grad):
        self.gradients = grad

    def __call__(self, x):
        feats = self.model[0](x)
        feats.register_hook(self.save_gradient)
        return self.model[1:](feats)


net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
cam = GradCAM(net)
x = torch.randn(1, 1, 6, 6, requires_grad=True)
out = cam(x)
out.register_hook(save_grad("out"))
handle = out.register_hook(lambda g: store.append(g.clone()))
handle.remove()
score = out[0, 1]
score.backward()
"""


def test_hooks_that_keep_a_gradient_are_accepted(tmp_path: Path) -> None:
    """The classic `save_grad(name)` hook factory (an inner def), Grad-CAM's method hook on a plain class called
    through __call__, a lambda appending to a list, a hook's handle removed: each only keeps the gradient, which the
    result has for every node; values and grads are torch's."""
    t = traced(GRAD_KEEPERS)
    g = in_torch(GRAD_KEEPERS, tmp_path)
    same_as_torch(t, g, ["net", "x", "out", "score"])
    np.testing.assert_allclose(t.arrays["torch/grad/out"], g["grads"]["out"].numpy(), rtol=1e-6)
    assert sum("only looks at its gradient" in n for n in t.result.notes) == 3


def test_topk_sort_and_argsort_as_people_use_them(tmp_path: Path) -> None:
    """Top-k accuracy (`_, pred = output.topk(k, 1, True, True)`), `vals, idx = x.topk(3, dim=1)`, `.values` /
    `.indices`, torch.sort descending with ties, x.argsort(): torch's values, indices and grads (TopkBackward0,
    SortBackward0)."""
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(4, 6, requires_grad=True)\nvals, idx = x.topk(3, dim=1)\n"
               "small = torch.topk(x, 2, largest=False).values\ns, order = torch.sort(x, dim=0, descending=True)\n"
               "a = x.argsort(dim=1)\ntarget = torch.tensor([1, 3, 0, 5])\n_, pred = x.topk(2, 1, True, True)\n"
               "correct = pred.eq(target.view(-1, 1).expand_as(pred))\nt = torch.tensor([1.0, 3.0, 1.0, 2.0, 3.0], requires_grad=True)\n"
               "td, tdi = t.sort(descending=True)\nloss = (vals * vals).sum() + small.sum() + (s * torch.arange(6.0)).sum() + "
               "(x.gather(1, a) * torch.arange(6.0)).sum() + correct.float().sum() + (td * torch.arange(5.0)).sum()\nloss.backward()\n")
    t = traced(program)  # ties in t: finite differences cannot see which tied element a gradient goes to
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "vals", "idx", "small", "s", "order", "a", "pred", "correct", "t", "td", "tdi", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("vals", "s")] == ["TopkBackward0", "SortBackward0"]


def test_einsum_as_attention_code_writes_it(tmp_path: Path) -> None:
    """torch.einsum in attention ('bhqd,bhkd->bhqk' then 'bhqk,bhkd->bhqd'), with its operands in a list, an implicit
    output and '...': torch's numbers."""
    program = ("import torch\nimport math\ntorch.manual_seed(0)\nq = torch.randn(2, 2, 3, 4, requires_grad=True)\n"
               "k = torch.randn(2, 2, 5, 4, requires_grad=True)\nv = torch.randn(2, 2, 5, 4, requires_grad=True)\n"
               "att = torch.einsum('bhqd,bhkd->bhqk', q, k) / math.sqrt(4)\nout = torch.einsum('bhqk,bhkd->bhqd', [att.softmax(-1), v])\n"
               "w = torch.randn(4, 6, requires_grad=True)\nproj = torch.einsum('...d,de', out, w)\nloss = proj.pow(2).mean()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["q", "k", "v", "att", "out", "w", "proj", "loss"])


def test_arranging_functions_and_matrix_ops(tmp_path: Path) -> None:
    """torch.tile / x.tile(...), broadcast_to, hstack / vstack, meshgrid ('ij' and 'xy'), repeat_interleave, diag,
    linalg.vector_norm / linalg.norm, norm with p 3 and inf, roll, cumprod, linalg.inv, det, linalg.solve, trace, mv:
    torch's numbers."""
    program = PROGRAM_ARRANGING
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "v", "u", "a", "b", "c", "d", "e", "X", "Y", "P", "Q", "f", "h", "i", "j", "n1", "n2", "r",
                         "cp", "A", "inv", "det", "sol", "tr", "mv", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("f", "r", "cp", "inv", "det", "sol", "tr", "mv")] == [
        type(g[k].grad_fn).__name__ for k in ("f", "r", "cp", "inv", "det", "sol", "tr", "mv")]


PROGRAM_ARRANGING = """import torch
torch.manual_seed(0)
x = torch.randn(3, 4, requires_grad=True)
v = torch.randn(4, requires_grad=True)
u = torch.randn(3, requires_grad=True)
a = torch.tile(x, (2,)) + 0
b = x.tile(2, 1, 1)
c = torch.broadcast_to(v, (3, 4))
d = torch.hstack([x, x * 2]) + torch.hstack([v, v]).sum()
e = torch.vstack([x, v]) + torch.vstack([v, v * 3]).sum()
X, Y = torch.meshgrid(u, v, indexing="ij")
P, Q = torch.meshgrid(u, v, indexing="xy")
f = x.repeat_interleave(2, dim=0)
h = torch.repeat_interleave(v, 3)
i = torch.diag(v) + torch.diag(x[:, :3]).sum()
j = torch.diag(v, 1)
n1 = torch.linalg.vector_norm(x, dim=1) + torch.linalg.norm(x) + x.norm(p=3, dim=0).sum() + x.norm(p=float("inf"))
n2 = torch.linalg.vector_norm(x, ord=float("-inf"), dim=0)
r = torch.roll(x, 1, 0) + torch.roll(x, shifts=(1, -2), dims=(0, 1)) + x.roll(3)
cp = torch.cumprod(x, dim=1)
A = torch.randn(3, 3, requires_grad=True)
inv = torch.linalg.inv(A + 3 * torch.eye(3))
det = torch.det(A)
sol = torch.linalg.solve(A + 3 * torch.eye(3), u)
tr = torch.trace(x)
mv = torch.mv(x, v)
loss = a.sum() + b.pow(2).sum() + (c * x).sum() + d.pow(2).sum() + e.sin().sum() + (X * Y).sum() + (P * P * Q).sum() + f.pow(2).sum() + h.sin().sum() + (i * i).sum() + j.sum() + n1.sum() + n2.sum() + (r * x).sum() + cp.sum() + inv.sum() + det + sol.pow(2).sum() + tr + mv.sum()
loss.backward()
"""


def test_small_python_and_autograd_forms(tmp_path: Path) -> None:
    """abs() and round() of numbers are Python's (of tensors, the ops), `logp[range(4), labels]` (the hand-written NLL),
    `with torch.set_grad_enabled(phase == 'train'):` (the transfer-learning tutorial): torch's numbers. torch's
    refusals are refused: backward(gradient) of another shape, an in-place change of an expanded tensor."""
    program = ("import torch\nimport torch.nn.functional as F\ntorch.manual_seed(0)\nx = torch.randn(4, 3, requires_grad=True)\n"
               "labels = torch.tensor([0, 2, 1, 2])\nlogp = F.log_softmax(x, dim=1)\nnll = -logp[range(4), labels].mean()\n"
               "k = abs(-2) * round(1.6)\nr = abs(x).sum()\nphase = 'val'\nwith torch.set_grad_enabled(phase == 'train'):\n"
               "    frozen = x * 3\nloss = nll * k + (frozen * x).sum() + r\nloss.backward()\n")
    t = traced(program)
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "logp", "nll", "frozen", "loss"])
    assert not t.result.nodes["frozen"].requires_grad
    assert "__round__" in str(_refused("x = torch.ones(3, requires_grad=True)\nr = round(x.sum())\n"))
    diff = traced("import torch\nx = torch.ones(3, requires_grad=True)\nz = abs(x - 2)\nloss = z.sum()\n")
    assert [n.op for n in diff.result.nodes.values() if not n.is_leaf] == ["sub", "abs", "sum"]  # x - 2 evaluated once
    assert "repeat_interleave" in str(_refused("x = torch.ones(2, 3)\ny = x.repeat_interleave(2, dim=2)\n"))
    assert "must be a constant" in str(_refused("import torch.nn.functional as F\nx = torch.ones(2, 3, 4)\n"
                                                "y = F.instance_norm(x, torch.zeros(3), torch.ones(3))\n"))
    norm = traced("import torch\nimport torch.nn.functional as F\nx = torch.randn(2, 3, 4, requires_grad=True)\n"
                  "w = torch.randn(3, requires_grad=True)\ny = F.instance_norm(x, None, None, w, None)\nloss = y.sum()\n")
    assert norm.result.nodes["y"].inputs == ["x", "w"]  # weight in its slot, as torch binds it
    assert "Mismatch in shape" in str(_refused("x = torch.ones(3, requires_grad=True)\ny = x * 2\ny.backward(torch.ones(1))\n"))
    assert "expanded tensor" in str(_refused("x = torch.ones(3, 1, requires_grad=True)\ny = (x * 1).expand(3, 4)\n"
                                             "y.add_(1)\ny.sum().backward()\n"))


def test_scatter_family_as_people_write_it(tmp_path: Path) -> None:
    """The one-hot idiom `torch.zeros(n, c).scatter_(1, labels.unsqueeze(1), 1.0)`, x.scatter with a number and with a
    tensor, scatter_add, index_add_ into zeros and torch.index_add with alpha: torch's numbers and grad_fns."""
    program = ("import torch\ntorch.manual_seed(0)\nx = torch.randn(3, 5, requires_grad=True)\nlabels = torch.tensor([1, 0, 4])\n"
               "onehot = torch.zeros(3, 5).scatter_(1, labels.unsqueeze(1), 1.0)\ny = x.scatter(1, labels.view(-1, 1), 0.0)\n"
               "src = torch.randn(3, 2, requires_grad=True)\nidx = torch.tensor([[0, 2], [1, 1], [4, 3]])\nz = x.scatter_add(1, idx, src)\n"
               "w = torch.scatter(x, 1, idx, src * 2)\nacc = torch.zeros(4, 5)\nacc.index_add_(0, torch.tensor([0, 2, 0]), x)\n"
               "v = torch.index_add(x, 0, torch.tensor([2, 0]), x[:2] * 2, alpha=0.5)\n"
               "loss = (x * onehot).sum() + y.pow(2).sum() + z.sin().sum() + w.pow(2).sum() + acc.pow(2).sum() + v.pow(2).sum()\n"
               "loss.backward()\n")
    t = traced(program)  # idx repeats 1: torch's gradient of the overwritten src element, which finite differences see as 0
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "onehot", "y", "src", "z", "w", "acc", "v", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("y", "z", "w", "v")] == [type(g[k].grad_fn).__name__ for k in ("y", "z", "w", "v")]


def test_one_dimensional_pooling_as_text_and_audio_cnns_write_it(tmp_path: Path) -> None:
    """F.max_pool1d over time (`F.max_pool1d(h, h.size(2))`), with stride and padding, F.avg_pool1d,
    F.adaptive_avg_pool1d, and nn.MaxPool1d / AvgPool1d / AdaptiveAvgPool1d in an nn.Sequential: torch's numbers; torch
    runs them as the 2-d pool between an unsqueeze and a squeeze (SqueezeBackward1), and so does the trace."""
    program = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "h = torch.randn(2, 4, 9, requires_grad=True)\na = F.max_pool1d(h, h.size(2)).squeeze(2)\n"
               "b = F.max_pool1d(h, 3, stride=2, padding=1)\nc = F.avg_pool1d(h, 2)\nd = F.adaptive_avg_pool1d(h[0], 3)\n"
               "net = nn.Sequential(nn.Conv1d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.AvgPool1d(2, stride=1),\n"
               "                    nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2))\ny = net(h)\n"
               "loss = a.sum() + b.pow(2).sum() + c.sin().sum() + d.pow(2).sum() + y.pow(2).sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["h", "a", "b", "c", "d", "net", "y", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("b", "c")] == [type(g[k].grad_fn).__name__ for k in ("b", "c")] == ["SqueezeBackward1"] * 2


def test_randint_with_keywords_draws_as_torch(tmp_path: Path) -> None:
    """torch.randint(low=0, high=3, size=(4,)), randint(high=5, size=...), randint(1, high=4, size=...): torch's
    numbers, in order with the other draws."""
    program = ("import torch\ntorch.manual_seed(0)\na = torch.randint(low=0, high=3, size=(4,))\n"
               "b = torch.randint(high=5, size=(2, 2))\nc = torch.randint(1, high=4, size=(3,))\n"
               "w = torch.randn(4, requires_grad=True)\nloss = (w * a).sum() + b.sum() * w.sum() + (c.float() * w[:3]).sum()\n"
               "loss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["a", "b", "c", "w", "loss"], exact=True)


FORWARD_HOOKS = """
import torch
import torch.nn as nn
import torch.nn.functional as F
torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


activation = {}


def get_activation(name):
    def hook(model, input, output):
        activation[name] = output.detach()
    return hook


def grad_seen(module, grad_input, grad_output):
    print(grad_output[0].norm())


model = Net()
h1 = model.fc1.register_forward_hook(get_activation('fc1'))
model.fc2.register_full_backward_hook(grad_seen)
seq = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
seq[1].register_forward_hook(lambda m, i, o: o * 2)
model.register_forward_pre_hook(lambda m, inp: (inp[0] * 0.5,))
x = torch.randn(2, 4)
out = model(x)
feat = activation['fc1'] * 1.0
y = seq(out)
h1.remove()
out2 = model(x)
loss = y.sum() + (feat * out.sum()).sum() + out2.sum()
loss.backward()
"""


def test_forward_hooks_run_where_torch_runs_them(tmp_path: Path) -> None:
    """The activations idiom (`get_activation(name)` storing `output.detach()`), a hook returning a new output
    (named as the caller's variable), a pre-hook scaling the input, `handle.remove()` before a second call, and a
    backward hook that only looks (noted): torch's values and grads."""
    t = traced(FORWARD_HOOKS)
    same_as_torch(t, in_torch(FORWARD_HOOKS, tmp_path), ["model", "seq", "x", "out", "feat", "y", "out2", "loss"])
    assert any("backward hook only looks" in n for n in t.result.notes)
    e = _refused("import torch.nn as nn\nlin = nn.Linear(2, 2)\nlin.register_full_backward_hook(lambda m, gi, go: (gi[0] * 2,))\n"
                 "lin(torch.ones(1, 2)).sum().backward()\n")
    assert "backward hook that changes the gradients" in str(e)


def test_2017_tutorial_code_with_variable_legacy_types_and_size_average(tmp_path: Path) -> None:
    """`dtype = torch.FloatTensor`, `Variable(torch.randn(N, D).type(dtype), requires_grad=True)`,
    `nn.MSELoss(size_average=False)` (reduction='sum', noted), and ops that give back their input (dropout with p=0,
    nn.Identity, unary +): each variable names its tensor, torch's numbers."""
    program = ("import torch\nfrom torch.autograd import Variable\nimport torch.nn as nn\ndtype = torch.FloatTensor\n"
               "torch.manual_seed(0)\nx = Variable(torch.randn(8, 5).type(dtype), requires_grad=False)\n"
               "y = Variable(torch.randn(8, 2).type(dtype), requires_grad=False)\n"
               "w1 = Variable(torch.randn(5, 6).type(dtype), requires_grad=True)\n"
               "w2 = Variable(torch.randn(6, 2).type(dtype), requires_grad=True)\n"
               "h = nn.Dropout(0.0)(x.mm(w1))\nh2 = nn.Identity()(h.clamp(min=0))\ny_pred = +(h2.mm(w2))\n"
               "loss = nn.MSELoss(size_average=False)(y_pred, y)\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "y", "w1", "w2", "h", "h2", "y_pred", "loss"])
    assert any("reduction='sum'" in n for n in t.result.notes)


def test_logaddexp_and_calculate_gain(tmp_path: Path) -> None:
    program = ("import torch\nfrom torch import nn\ntorch.manual_seed(0)\nx = torch.randn(3, 4, requires_grad=True)\n"
               "y = torch.randn(3, 4, requires_grad=True)\nz = torch.logaddexp(x, y * 2)\nlin = nn.Linear(4, 2)\n"
               "nn.init.xavier_uniform_(lin.weight, gain=nn.init.calculate_gain('relu'))\n"
               "g = nn.init.calculate_gain('leaky_relu', 0.2) + nn.init.calculate_gain('tanh')\n"
               "loss = (lin(z) * g).sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "y", "z", "lin", "loss"])
    assert t.result.nodes["z"].grad_fn == "LogaddexpBackward0"


def test_backward_with_a_one_hot_gradient_made_from_numbers(tmp_path: Path) -> None:
    """Grad-CAM's `one_hot = torch.zeros_like(out); one_hot[0, k] = 1; out.backward(gradient=one_hot)`: a gradient
    made from numbers alone is known before anything runs; one drawn (`torch.rand(3)`) is drawn in the stream
    (tests/test_program_review_more.py); one computed from the program's tensors is refused."""
    program = ("import torch\nfrom torch import nn\ntorch.manual_seed(0)\nnet = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))\n"
               "x = torch.randn(2, 4, requires_grad=True)\nout = net(x)\none_hot = torch.zeros_like(out)\none_hot[0, 2] = 1\n"
               "one_hot[1] = 0.5 * torch.ones(3)\nout.backward(gradient=one_hot)\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["net", "x", "out"])
    assert "made from numbers" in str(_refused("x = torch.ones(3, requires_grad=True)\ny = x * 2\n"
                                               "y.backward(gradient=torch.rand(3) * 2)\n"))


def test_echoes_then_writes_and_plain_tensors_on_objects(tmp_path: Path) -> None:
    """d2l's parameter management: `net[0].weight.data[0]` echoed, then `net.apply(init_normal)` (the echo keeps no
    view of the weight); `self.total += t` on a plain tensor an object holds (a new node, as `total += t`)."""
    program = ("import torch\nfrom torch import nn\ntorch.manual_seed(0)\nnet = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))\n"
               "X = torch.rand(size=(2, 4))\nnet(X).shape\nnet[0].weight.data[0]\nnet[2].weight.T\n\n\ndef init_normal(m):\n"
               "    if type(m) == nn.Linear:\n        nn.init.normal_(m.weight, mean=0, std=0.01)\n        nn.init.zeros_(m.bias)\n\n\n"
               "net.apply(init_normal)\n\n\nclass Acc:\n    def __init__(self):\n        self.total = torch.zeros(8)\n        self.n = 0\n\n"
               "    def add(self, t):\n        self.total += t\n        self.n += 1\n\n\nacc = Acc()\nh = net[0](X)\n"
               "acc.add(h[0])\nacc.add(h[1] * 2.0)\nloss = net(X).sum() + (acc.total * acc.n).sum()\nloss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["net", "X", "h", "loss"])
    assert "low= with high=" in str(_refused("a = torch.randint(low=2, size=(3,))\n"))


def test_hooks_and_fills_found_by_review(tmp_path: Path) -> None:
    """A forward hook that ablates its output in place (`o[:, 0] = 0.0`) changes what follows, as torch's; a fill of
    a view indexed by names (`self.emb.weight.data[self.padding_idx].zero_()`, `h[:, :k].zero_()`, `fill_(value=)`);
    `Variable(w, requires_grad=True)` is a new tensor, w does not require grad."""
    program = ("import torch\nimport torch.nn as nn\nfrom torch.autograd import Variable\ntorch.manual_seed(0)\n\n\n"
               "def ablate(m, i, o):\n    o[:, 0] = 0.0\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
               "        super().__init__()\n        self.padding_idx = 0\n        self.emb = nn.Embedding(5, 3)\n"
               "        self.emb.weight.data[self.padding_idx].zero_()\n\n    def forward(self, idx):\n        return self.emb(idx)\n\n\n"
               "m = M()\nnet = nn.Sequential(nn.Linear(3, 4), nn.Tanh())\nnet[0].register_forward_hook(ablate)\n"
               "idx = torch.tensor([0, 1, 2, 0])\ne = m(idx)\ny = net(e)\nk = 2\nh = y * 1.0\nh[:, :k].zero_()\n"
               "h[1].fill_(value=2.0)\nw = torch.randn(4)\nv = Variable(w, requires_grad=True)\n"
               "loss = (h * v).sum() + w.sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["m", "net", "e", "y", "w", "v", "loss"])


def test_a_hook_replacing_the_output_of_a_program_module_names_it_as_the_caller(tmp_path: Path) -> None:
    """`net.register_forward_hook(lambda m, i, o: o * 2)` on the program's own nn.Module: `z = net(x)` is the hook's
    output, as torch's z, and the module's own output keeps a name of its own."""
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
               "        super().__init__()\n        self.fc = nn.Linear(3, 2)\n\n    def forward(self, x):\n"
               "        return self.fc(x).tanh()\n\n\ndef hook(m, i, o):\n    return o * 2\n\n\nnet = Net()\n"
               "net.register_forward_hook(hook)\nx = torch.randn(4, 3)\nz = net(x)\nloss = z.sum()\nloss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["net", "x", "z", "loss"])
