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


def test_a_0d_tensor_does_not_promote_a_tensor_with_dims(tmp_path: Path) -> None:
    # torch's tiers: a float64 0-d `scale` times a float32 x is float32 (randn_like then draws float32 numbers); a
    # ridge's float64 `lam * torch.eye(3)` added to float32 X.T @ X stays float32 for solve; an int64 tensor times a
    # float64 0-d tensor is float64; 0-d tensors alone promote as any tensors
    program = (HEAD + "x = torch.randn(16, requires_grad=True)\nscale = torch.tensor(0.5, dtype=torch.float64)\n"
               "y = scale * x\nnoise = torch.randn_like(y)\nlam = torch.tensor(0.1, dtype=torch.float64)\n"
               "X = torch.randn(5, 3, requires_grad=True)\nA = X.T @ X + lam * torch.eye(3)\nw = torch.linalg.solve(A, torch.randn(3))\n"
               "k = torch.arange(4) * scale\ns0 = scale * torch.tensor(2.0)\n"
               "loss = (y * noise).sum() + w.sum() + k.sum() + s0\nloss.backward()\n")
    t = traced(program)
    assert {n: t.result.nodes[n].dtype for n in ("y", "noise", "A", "k", "s0")} == {
        "y": "float32", "noise": "float32", "A": "float32", "k": "float64", "s0": "float64"}
    same_as_torch(t, in_torch(program, tmp_path), ["x", "y", "noise", "X", "A", "w", "loss"])


def test_a_draw_after_solve_triangular_follows_its_column_major_layout(tmp_path: Path) -> None:
    # torch's solve_triangular returns LAPACK's column-major X: randn_like(X) and dropout fill it in that order
    program = (HEAD + "L = torch.tril(torch.rand(3, 3)) + torch.eye(3)\nB = torch.randn(2, 3, 2, requires_grad=True)\n"
               "Z = torch.linalg.solve_triangular(L, B, upper=False)\nnoise = torch.randn_like(Z)\n"
               "R = torch.linalg.solve_triangular(L, B.transpose(1, 2), upper=False, left=False)\nd = F.dropout(R, 0.5)\n"
               "loss = (Z * noise).sum() + d.sum()\nloss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["B", "Z", "noise", "R", "d", "loss"])


def test_in_place_ops_under_no_grad_inside_a_helper_and_a_return_inside_with(tmp_path: Path) -> None:
    # the widely copied smooth_one_hot helper (scatter_ under no_grad on a tensor it made, then returned), a
    # sharpening helper's div_, and the knowledge-distillation teacher helper / ImageNet example's accuracy(), which
    # return inside `with torch.no_grad():`
    program = (HEAD + "def smooth_one_hot(true_labels, classes, smoothing=0.1):\n    confidence = 1.0 - smoothing\n"
               "    with torch.no_grad():\n        true_dist = torch.empty(size=(true_labels.size(0), classes))\n"
               "        true_dist.fill_(smoothing / (classes - 1))\n"
               "        true_dist.scatter_(1, true_labels.data.unsqueeze(1), confidence)\n    return true_dist\n\n\n"
               "def sharpen(p, T=0.5):\n    with torch.no_grad():\n        q = p ** (1 / T)\n        q.div_(q.sum(1, keepdim=True))\n"
               "    return q\n\n\nteacher = nn.Linear(4, 3)\nstudent = nn.Linear(4, 3)\n\n\n"
               "def get_teacher_logits(x):\n    teacher.eval()\n    with torch.no_grad():\n        return teacher(x)\n\n\n"
               "def accuracy(output, target):\n    with torch.no_grad():\n        pred = output.argmax(1)\n"
               "        return (pred == target).float().mean() * 100.0\n\n\n"
               "x = torch.randn(6, 4)\ny = torch.tensor([0, 2, 1, 1, 0, 2])\ntargets = smooth_one_hot(y, 3)\n"
               "t_logits = get_teacher_logits(x)\nsoft = sharpen(F.softmax(t_logits, dim=1))\ns_logits = student(x)\n"
               "acc = accuracy(s_logits, y)\nlogp = F.log_softmax(s_logits, dim=1)\n"
               "loss = -(targets * logp).sum(1).mean() - (soft * logp).sum(1).mean()\nloss.backward()\n")
    t = traced(program)
    assert not t.result.nodes["t_logits"].requires_grad
    same_as_torch(t, in_torch(program, tmp_path), ["targets", "t_logits", "soft", "s_logits", "acc", "student", "loss"])


def test_cross_products_as_torch(tmp_path: Path) -> None:
    # a look-at camera and the 6D rotation representation's Gram-Schmidt, with torch.cross, torch.linalg.cross and
    # Tensor.cross (dims given, broadcast, torch.cross's first dim of size 3)
    program = (HEAD + "eye = torch.randn(4, 3, requires_grad=True)\nup = torch.tensor([[0.0, 1.0, 0.0]])\n"
               "f = F.normalize(-eye, dim=-1)\nr = F.normalize(torch.cross(up.expand(4, 3), f, dim=-1), dim=-1)\n"
               "u = torch.linalg.cross(f, r)\nR = torch.stack([r, u, f], dim=-1)\nv = eye.cross(up.expand(4, 3), dim=1)\n"
               "w = torch.cross(eye.T, v.T)\nloss = (R * R.flip(0)).sum() + v.pow(2).sum() + w.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["u"].grad_fn == "LinalgCrossBackward0"
    same_as_torch(t, in_torch(program, tmp_path), ["eye", "f", "r", "u", "R", "v", "w", "loss"])


def test_tensor_type_strings_compare(tmp_path: Path) -> None:
    # the widely copied multi-class focal loss: `if alpha.type() != x.data.type(): alpha = alpha.type_as(x.data)`
    program = (HEAD + "x = torch.randn(6, 3, requires_grad=True)\ntarget = torch.tensor([0, 2, 1, 1, 0, 2])\n"
               "alpha = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)\nkind = x.type()\n"
               "if alpha.type() != x.data.type():\n    alpha = alpha.type_as(x.data)\nat = alpha.gather(0, target)\n"
               "logpt = F.log_softmax(x, dim=1).gather(1, target.view(-1, 1)).view(-1)\n"
               "loss = (-1 * (1 - logpt.exp()) ** 2 * logpt * at).mean()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["at"].dtype == "float32"
    g = in_torch(program, tmp_path)
    assert g["kind"] == "torch.FloatTensor"
    same_as_torch(t, g, ["x", "alpha", "at", "logpt", "loss"])
