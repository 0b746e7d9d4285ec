"""torch's strides as gradtrace models them (services.compiler.strides), checked against torch's own tensors, and
the random draws that depend on them: dropout fills its mask in its input's memory order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_program_idioms import check

from services.compiler import strides

X = torch.zeros(2, 3, 4)
P = X.permute(1, 0, 2)
E = torch.zeros(3, 1).expand(3, 4).t()
CASES: dict[str, tuple[torch.Tensor, Callable[[], tuple[int, ...] | None]]] = {
    "permute": (P, lambda: strides.permuted(strides.contiguous((2, 3, 4)), [1, 0, 2])),
    "transpose": (X.transpose(0, 2), lambda: strides.transposed(strides.contiguous((2, 3, 4)), 0, 2)),
    "permute + broadcast pe": (P + torch.zeros(3, 1, 4), lambda: strides.iterated((3, 2, 4), [((3, 2, 4), P.stride()), ((3, 1, 4), (4, 4, 1))])),
    "contiguous + permute: the first decides": (torch.zeros(3, 2, 4) + P, lambda: strides.iterated(
        (3, 2, 4), [((3, 2, 4), (8, 4, 1)), ((3, 2, 4), P.stride())])),
    "reshape of a permute, a view": (X.permute(2, 0, 1).reshape(4, 6), lambda: strides.viewed(
        (4, 2, 3), strides.permuted(strides.contiguous((2, 3, 4)), [2, 0, 1]), (4, 6))),
    "slice of a permute": (P[:, 1:], lambda: strides.indexed((3, 2, 4), P.stride(), (slice(None), slice(1, None)))),
    "unsqueeze of a transpose": (X[0].t().unsqueeze(1), lambda: strides.unsqueezed((4, 3), (1, 4), 1)),
    "expand then t": (E, lambda: strides.transposed(strides.expanded((3, 1), (1, 1), (3, 4)), 0, 1)),
    "pointwise of expanded": (E * 2, lambda: strides.iterated((4, 3), [((4, 3), E.stride())])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_strides_are_torch_s(case: str) -> None:
    tensor, ours = CASES[case]
    assert ours() == tensor.stride()


def test_reshape_of_a_permute_that_copies_is_row_major() -> None:
    assert strides.viewed((3, 2, 4), P.stride(), (6, 4)) is None and P.reshape(6, 4)._base is not P


def test_size_one_dims_do_not_make_a_tensor_strided() -> None:
    """torch's is_contiguous ignores size-1 dims: (4, 1).t() is contiguous, so .contiguous() returns it (no clone)."""
    t = torch.zeros(4, 1).t()
    assert t.is_contiguous() and strides.is_contiguous((1, 4), t.stride()) and t.stride() != strides.contiguous((1, 4))


def test_memory_order_of_dense_and_overlapping_tensors() -> None:
    assert strides.memory_order((3, 2, 4), P.stride()) == [1, 0, 2]
    assert strides.memory_order((4, 3), E.stride()) is None  # expanded: empty_like falls back to row-major


PROGRAMS = {
    "after a pointwise op of a transpose": "x = torch.randn(3, 4, requires_grad=True)\ny = F.dropout(x.t() * 2, 0.5)\n"
                                           "loss = (y * torch.arange(12.).view(4, 3)).sum()\n",
    "positional encoding after a permute": "x = torch.randn(2, 5, 8, requires_grad=True)\npe = torch.randn(5, 1, 8)\n"
                                           "h = x.permute(1, 0, 2)\ny = nn.Dropout(0.3)(h + pe[:5])\n"
                                           "loss = (y * torch.arange(80.).view(5, 2, 8)).sum()\n",
    "ViT patches: flatten(2).transpose(1, 2) + pos": (
        "proj = nn.Conv2d(3, 8, 2, 2)\nimg = torch.randn(2, 3, 4, 4, requires_grad=True)\n"
        "t = proj(img).flatten(2).transpose(1, 2)\npos = torch.randn(1, 4, 8)\ny = F.dropout(t + pos, 0.2)\n"
        "loss = (y * torch.arange(64.).view(2, 4, 8)).sum()\n"),
    ".contiguous(), reshape views and copies, expands": (
        "x = torch.randn(2, 3, 4, requires_grad=True)\na = F.dropout(x.transpose(1, 2).contiguous(), 0.5)\n"
        "b = F.dropout(x.permute(2, 0, 1).reshape(4, 6), 0.5)\nc = F.dropout(x.permute(1, 0, 2).reshape(3, 8), 0.5)\n"
        "cls = torch.randn(1, 3, 4, requires_grad=True)\nd = F.dropout(cls.expand(2, -1, -1).transpose(0, 1), 0.5)\n"
        "e = F.dropout(F.dropout(x.transpose(0, 2), 0.3).permute(1, 0, 2), 0.4)\n"
        "w = torch.arange(24.)\nloss = (a.reshape(-1) * w).sum() + (b.reshape(-1) * w).sum() + (c.reshape(-1) * w).sum() "
        "+ (d.reshape(-1) * w).sum() + (e.reshape(-1) * w).sum()\n"),
    "non-dense: slices and expands of strided tensors (empty_like's dense order)": (
        "w = torch.randn(4, 5, 6, requires_grad=True)\nx = w.permute(2, 0, 1)[:, :, :3]\na = F.dropout(x, 0.5)\n"
        "b = torch.randn_like(w.transpose(0, 1)[:4]) * w.transpose(0, 1)[:4]\nc = F.dropout(w[:1].expand(3, 5, 6).transpose(1, 2), 0.5)\n"
        "loss = (a * torch.arange(72.).view(6, 4, 3)).sum() + b.sum() + (c * torch.arange(90.).view(3, 6, 5)).sum()\n"),
    "ops whose result is contiguous or keeps the layout": (
        "w = torch.randn(6, 8, requires_grad=True)\nt = w.t()\na = F.dropout(t.masked_fill(t > 1, 0.0), 0.5)\n"
        "b = F.dropout(F.logsigmoid(t), 0.5)\nc = F.dropout(2 ** t, 0.5)\nd = F.dropout(t.chunk(2, 1)[0], 0.5)\n"
        "e = F.dropout(t.flip(0) + t.sort(-1)[0], 0.5)\nf = F.dropout(t.unbind(1)[2].unsqueeze(0).expand(2, 8), 0.5)\n"
        "loss = sum((v * torch.arange(v.numel(), dtype=v.dtype).view(v.shape)).sum() for v in (a, b, c, d, e, f))\n"),
    "randn_like / rand_like / randint_like of a permute": (
        "x = torch.randn(2, 3, 4, requires_grad=True)\nh = (x * 2).permute(2, 0, 1)\nnoise = torch.randn_like(h)\n"
        "u = torch.rand_like(x.transpose(0, 1))\nk = torch.randint_like(h, 0, 5)\ny = F.dropout(h + 0.1 * noise, 0.5)\n"
        "loss = (y * torch.arange(24.).view(4, 2, 3)).sum() + (u * x.transpose(0, 1)).sum() + (k * h).sum()\n"),
}


@pytest.mark.parametrize("case", list(PROGRAMS))
def test_dropout_draws_in_torch_s_memory_order(case: str, tmp_path: Path) -> None:
    program = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n" + PROGRAMS[case] \
        + "loss.backward()\n"
    names = [n for n in ("w", "x", "img", "proj", "cls", "noise", "u", "k", "y", "a", "b", "c", "d", "e", "f", "loss")
             if f"\n{n} = " in program]
    check(program, names, tmp_path)
