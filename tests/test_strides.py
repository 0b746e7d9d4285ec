"""torch's strides as gradtrace models them (services.strides), checked against torch's own tensors, and
the random draws that depend on them: dropout fills its mask in its input's memory order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_program_idioms import check

from services import strides

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
    "a no-op cast of a transpose bound to a name": (
        "x = torch.randn(2, 3, 4, requires_grad=True)\nh = x.transpose(1, 2).float()\ny = F.dropout(h, 0.5)\n"
        "loss = (y * torch.arange(24.).view(2, 4, 3)).sum()\n"),
    "zeros_like / ones_like / empty_like keep a transpose's layout": (
        "x = torch.randn(3, 4, requires_grad=True)\nxt = x.t()\na = F.dropout(torch.zeros_like(xt) + xt, 0.5)\n"
        "e = torch.empty_like(xt).normal_()\nb = torch.ones_like(xt).bernoulli_(0.3) * xt\n"
        "loss = (a * torch.arange(12.).view(4, 3)).sum() + (e * xt).sum() + b.sum()\n"),
    "linalg.inv and linalg.solve are column-major": (
        "w = torch.randn(3, 3, requires_grad=True)\na = torch.linalg.inv(w + 3 * torch.eye(3))\n"
        "b = torch.linalg.solve(w + 3 * torch.eye(3), torch.ones(3, 2))\nc = F.dropout(a, 0.5)\n"
        "loss = (a * torch.rand_like(a)).sum() + (b * torch.rand_like(b)).sum() + (c * torch.arange(9.).view(3, 3)).sum()\n"),
    "SDPA's result takes the query's layout (nanoGPT's transposes)": (
        "x = torch.randn(2, 5, 8, requires_grad=True)\nq = x.view(2, 5, 2, 4).transpose(1, 2)\n"
        "a = F.dropout(F.scaled_dot_product_attention(q, q, q, is_causal=True), 0.3)\n"
        "loss = (a * torch.arange(80.).view(2, 2, 5, 4)).sum()\n"),
    "SDPA with a 3-d mask runs torch's math path: a row-major result": (
        "x = torch.randn(2, 3, 8, requires_grad=True)\nq = x.view(2, 3, 2, 4).transpose(1, 2)\n"
        "a = F.dropout(F.scaled_dot_product_attention(q, q, q, attn_mask=torch.zeros(1, 3, 3)), 0.5)\n"
        "loss = (a * torch.arange(48.).view(2, 2, 3, 4)).sum()\n"),
    "einsum's result (a permuted bmm, a view, an outer product)": (
        "w = torch.randn(2, 3, 4, 5, requires_grad=True)\nv = torch.randn(2, 3, 5, 6, requires_grad=True)\n"
        "a = F.dropout(torch.einsum('bhqk,bhkd->bqhd', w, v), 0.5)\nb = torch.rand_like(torch.einsum('bhqk->bkqh', w))\n"
        "c = F.dropout(torch.einsum('bld,hd->bhl', w[0], v[0, 0, :, :5]), 0.5)\n"
        "loss = (a * torch.arange(144.).view(2, 4, 3, 6)).sum() + (b * w.permute(0, 3, 2, 1)).sum() + c.pow(2).sum()\n"),
}


@pytest.mark.parametrize("case", list(PROGRAMS))
def test_dropout_draws_in_torch_s_memory_order(case: str, tmp_path: Path) -> None:
    program = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n" + PROGRAMS[case] \
        + "loss.backward()\n"
    names = [n for n in ("w", "x", "img", "proj", "cls", "noise", "u", "k", "y", "a", "b", "c", "d", "e", "f", "loss")
             if f"\n{n} = " in program]
    check(program, names, tmp_path)


def test_einsum_layout_is_aten_s_for_random_equations() -> None:
    """services.ops.einsum.einsum_layout against torch.einsum's own strides: 3000 random equations of one or two
    operands (diagonals, size-1 letters, permuted operands, sums within one operand), every dim of size > 1."""
    import random

    from services.ops.einsum import einsum_layout, parse

    rng = random.Random(0)
    checked = 0
    for _ in range(3000):
        terms = ["".join(rng.sample("abcdeij", rng.randint(1, 4))) if rng.random() < 0.85 else
                 "".join(rng.choice("abcdeij") for _ in range(rng.randint(1, 4))) for _ in range(rng.choice([1, 2, 2]))]
        letters = sorted(set("".join(terms)))
        eq = ",".join(terms) + "->" + "".join(rng.sample(letters, rng.randint(0, len(letters))))
        sizes = {c: rng.choice([1, 2, 3, 4]) for c in letters}
        ops = []
        for t in terms:
            shape = [sizes[c] for c in t]
            perm = list(range(len(shape)))
            rng.shuffle(perm)
            ops.append(torch.randn(*[shape[i] for i in perm]).permute(*[perm.index(i) for i in range(len(shape))]))
        try:
            y = torch.einsum(eq, *ops)
        except RuntimeError:
            continue
        got = einsum_layout(*parse(eq, len(ops)), sizes, [o.stride() for o in ops]) or strides.contiguous(tuple(y.shape))
        assert all(g == w for g, w, n in zip(got, y.stride(), y.shape, strict=True) if n > 1), (eq, got, y.stride())
        checked += 1
    assert checked > 2000

