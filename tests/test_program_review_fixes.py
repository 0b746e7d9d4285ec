"""Programs from the reviews of graphics and physics code (NeRF, SDFs, rotations), training tricks (quantization,
distillation, adversarial examples) and linear algebra, traced against real torch: `x.to(other)`, an object as a
lambda's default (nerf-pytorch's get_embedder), int64 powers, and autograd.grad results computed with before a
later backward() (refused: torch's .grad holds that backward's gradients)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

from services.errors import SpecError

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"


def test_to_another_tensor_takes_its_dtype(tmp_path: Path) -> None:
    # kornia's total_variation: `x.abs().to(x)`; `.to(d)` of a float64 tensor casts as torch does
    program = (HEAD + "x = torch.rand(3, requires_grad=True)\nd = torch.rand(3, dtype=torch.float64)\n"
               "y = x.abs().to(x)\nz = y.to(d) * d\nloss = z.sum().to(x)\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["z"].dtype == "float64" and t.result.nodes["loss"].dtype == "float32"
    same_as_torch(t, in_torch(program, tmp_path), ["x", "y", "z", "loss"])


def test_an_object_as_a_lambdas_default(tmp_path: Path) -> None:
    # nerf-pytorch's get_embedder: `embed = lambda x, eo=embedder_obj: eo.embed(x)`
    program = (HEAD + "class Embedder:\n    def __init__(self, n):\n        self.n = n\n\n"
               "    def embed(self, x):\n        return torch.cat([torch.sin(2.0 ** i * x) for i in range(self.n)], -1)\n\n\n"
               "embedder_obj = Embedder(3)\nembed = lambda x, eo=embedder_obj: eo.embed(x)\n"
               "x = torch.rand(4, requires_grad=True)\ny = embed(x)\nloss = (y * y).sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "y", "loss"])


def test_an_int64_tensor_to_a_non_negative_int_power(tmp_path: Path) -> None:
    # mip-NeRF's integrated positional encoding: `scales ** 2` of an int64 tensor stays int64, as in torch
    program = (HEAD + "x = torch.rand(3, requires_grad=True)\nscales = torch.tensor([1, 2, 4])\ns2 = scales ** 2\n"
               "s3 = torch.pow(scales, 3) * scales.pow(0)\ny = x * s2 + x * s3\nloss = y.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["s2"].dtype == "int64" and t.result.nodes["s2"].value.data == [1, 4, 16]
    same_as_torch(t, in_torch(program, tmp_path), ["x", "y", "loss"])


def test_autograd_grad_computed_with_before_a_later_backward_is_refused() -> None:
    # an SDF's normals or eikonal norm looked at, then the loss's backward(): torch's .grad holds that pass, which
    # the trace cannot reach (it gave autograd.grad's gradients, for a w autograd.grad was not even asked for)
    program = ("import torch\nw = torch.tensor([1.0, 2.0], requires_grad=True)\nx = torch.tensor([3.0, 4.0], requires_grad=True)\n"
               "y = w * x\ng = torch.autograd.grad(y.sum(), x, retain_graph=True)[0]\ngn = g.norm()\n"
               "loss = y.abs().mean()\nloss.backward()\n")
    with pytest.raises(SpecError, match=r"cannot follow the torch\.autograd\.grad of line 5 .* the backward\(\) of line 8"):
        traced(program)
    # without a later backward(), the trace ends there with a note, as before; a printed result still gives way to it
    ends = program.replace("loss = y.abs().mean()\nloss.backward()\n", "")
    assert any("the trace ends" in n for n in traced(ends).result.notes)
    printed = program.replace("gn = g.norm()", "print(g)")
    assert traced(printed).result.output == "loss"
    # a minus sign on it names what it is
    with pytest.raises(SpecError, match="computes with the gradient torch.autograd.grad returns"):
        traced(program.replace("g = torch.autograd.grad", "g = -torch.autograd.grad"))
