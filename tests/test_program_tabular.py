"""Tabular, recommender and classic-ML code as repositories write it, traced against real torch: DLRM's MLP built as
`nn.Sequential(*layers)` of an nn.ModuleList and its triangle interaction (tril_indices), pytorch-fm's field offsets
(`(0, *field_dims[:-1])` summed up), NaN imputation with isnan, `float(t)` as `t.item()`."""

from __future__ import annotations

from pathlib import Path

from test_program_pytorch import in_torch, same_as_torch, traced

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"


def test_dlrm_and_pytorch_fm_idioms_as_torch(tmp_path: Path) -> None:
    program = (HEAD + "def create_mlp(ln):\n    layers = nn.ModuleList()\n    for i in range(len(ln) - 1):\n"
               "        layers.append(nn.Linear(ln[i], ln[i + 1]))\n        layers.append(nn.ReLU())\n"
               "    return nn.Sequential(*layers)\n\n\n"
               "field_dims = [3, 4, 2]\noffsets = torch.tensor((0, *field_dims[:-1])).cumsum(0)\n"
               "emb = nn.Embedding(sum(field_dims), 4)\nbot = create_mlp([5, 8, 4])\n"
               "dense = torch.randn(2, 5)\ndense[1, 3] = float('nan')\n"
               "dense = torch.where(torch.isnan(dense), torch.zeros_like(dense), dense)\n"
               "ids = torch.tensor([[0, 1, 1], [2, 3, 0]]) + offsets\nsparse = emb(ids)\nx = bot(dense)\n"
               "T = torch.cat([x.unsqueeze(1), sparse], dim=1)\nZ = torch.bmm(T, T.transpose(1, 2))\n"
               "li, lj = torch.tril_indices(4, 4, offset=-1)\nZflat = Z[:, li, lj]\n"
               "scale = float(Zflat.detach().abs().mean())\nloss = (Zflat / scale).pow(2).mean()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["emb", "bot", "offsets", "dense", "sparse", "x", "Z", "Zflat", "loss"])
    assert "bot.0.weight" in t.result.nodes and "bot.2.weight" in t.result.nodes  # nn.Sequential's own names
