"""Tabular, recommender and classic-ML code as repositories write it, traced against real torch: DLRM's MLP built as
`nn.Sequential(*layers)` of an nn.ModuleList and its triangle interaction (tril_indices), pytorch-fm's field offsets
(`(0, *field_dims[:-1])` summed up), NaN imputation with isnan, `float(t)` as `t.item()`."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_d2l_load_array_shuffled_batches_and_what_is_drawn_after_them(tmp_path: Path) -> None:
    """d2l's `load_array` (TensorDataset(*arrays), DataLoader(dataset, batch_size, shuffle=True)) and its loop: the
    batch is the rows torch's RandomSampler picks, and the dropout mask drawn after it is torch's (iterating draws a
    base seed and the sampler's seed from torch's generator, as torch's iterator does); `next(iter(loader))`."""
    program = ("import torch\nimport torch.nn as nn\nfrom torch.utils import data\ntorch.manual_seed(0)\n\n\n"
               "def load_array(data_arrays, batch_size, is_train=True):\n"
               "    dataset = data.TensorDataset(*data_arrays)\n"
               "    return data.DataLoader(dataset, batch_size, shuffle=is_train)\n\n\n"
               "features = torch.normal(0, 1, (25, 2))\nlabels = features @ torch.tensor([2, -3.4]).reshape(2, 1) + 4.2\n"
               "data_iter = load_array((features, labels), 10)\nfirst_X, first_y = next(iter(data_iter))\n"
               "net = nn.Sequential(nn.Linear(2, 1), nn.Dropout(0.5))\nloss = nn.MSELoss()\n"
               "for X, y in data_iter:\n    l = loss(net(X), y)\n    l.backward()\n    break\n")
    t = traced(program, engines=["torch", "reference"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["first_X", "first_y", "X", "y", "net", "l"], exact=True)


def test_data_loader_in_order_drop_last_and_a_one_tensor_dataset(tmp_path: Path) -> None:
    """`len(ds)`, `ds[0]`, `len(loader)` with drop_last, `for i, (xb, yb) in enumerate(loader)` inside an epoch loop
    (the second batch trained on), a one-tensor dataset's batch unpacked as `(xs,)`, a worker count (no numbers
    change); a DataLoader of something else than a TensorDataset is refused, naming the line."""
    program = (HEAD + "from torch.utils.data import DataLoader, TensorDataset\n"
               "X = torch.randn(23, 4)\ny = torch.randint(0, 3, (23,))\nds = TensorDataset(X, y)\nn = len(ds)\nx0, y0 = ds[0]\n"
               "loader = DataLoader(ds, batch_size=8, shuffle=False, drop_last=True, num_workers=0)\nnb = len(loader)\n"
               "model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.2), nn.Linear(6, 3))\n"
               "only = DataLoader(TensorDataset(X), batch_size=5, shuffle=True)\nfor (xs,) in only:\n    first = xs\n    break\n"
               "for epoch in range(2):\n    for i, (xb, yb) in enumerate(loader):\n        if i == 1:\n"
               "            out = model(xb)\n"
               "            loss = F.cross_entropy(out, yb) * nb + first.sum() * 0.5 + x0.sum() * n\n"
               "            loss.backward()\n            break\n    break\n")
    t = traced(program, engines=["torch", "reference"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x0", "y0", "xs", "xb", "yb", "model", "out", "loss"], exact=True)  # (first is xs)
    assert g["nb"] == 2 and g["n"] == 23
    import pytest

    from services.compiler import compile_spec
    from services.errors import SpecError
    from shared.spec import TraceSpec

    with pytest.raises(SpecError, match="DataLoader over the tensor 'X' is not traced") as info:
        compile_spec(TraceSpec(program=HEAD + "from torch.utils.data import DataLoader\nX = torch.randn(4, 2)\n"
                                              "loader = DataLoader(X, batch_size=2)\n"))
    assert info.value.line == 7


def test_a_sparse_embedding_traces_as_its_dense_gradient(tmp_path: Path) -> None:
    """nn.Embedding(sparse=True) (recommenders): the same numbers, the gradient shown dense (noted); max_norm is
    refused in torch's terms."""
    program = HEAD + "emb = nn.Embedding(6, 3, sparse=True)\nids = torch.tensor([[1, 2], [2, 5]])\nloss = emb(ids).pow(2).sum()\nloss.backward()\n"
    t = traced(program, engines=["torch", "reference"])
    g = in_torch(program, tmp_path)
    import numpy as np
    import pytest

    from services.compiler import compile_spec
    from services.errors import SpecError
    from shared.spec import TraceSpec

    np.testing.assert_allclose(t.arrays["torch/grad/emb.weight"], g["emb"].weight.grad.to_dense().numpy(), rtol=1e-6)
    assert any("sparse=True" in n for n in t.result.notes)
    with pytest.raises(SpecError, match=r"max_norm=1.0 is not traced \(gradtrace takes max_norm=None"):
        compile_spec(TraceSpec(program=HEAD + "e = nn.Embedding(5, 3, max_norm=1.0)\n"))


def test_triangle_indices_of_a_non_square_matrix_index_it(tmp_path: Path) -> None:
    """`idx = torch.triu_indices(3, 5, 1)`, `x[idx[0], idx[1]]` and `rows, cols = torch.tril_indices(...)`: each row's
    own bounds decide the index check (not the whole tensor's, which would refuse index 4 of a dim of 3)."""
    program = (HEAD + "idx = torch.triu_indices(3, 5, 1)\nx = torch.randn(3, 5, requires_grad=True)\n"
               "rows, cols = torch.tril_indices(3, 5, 1)\nloss = x[idx[0], idx[1]].sum() + x[rows, cols].pow(2).sum()\n"
               "loss.backward()\n")
    t = traced(program, engines=["torch", "reference"])
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["idx", "x", "loss"], exact=True)


def test_a_loop_over_an_iterator_goes_on_from_where_next_left_it(tmp_path: Path) -> None:
    """`it = iter(loader); next(it); for (xb,) in it:` takes batches 1 and 2, as Python's iterator does; with workers
    the sampler's seed is drawn when the iterator is made (what is drawn between then and the first batch is
    torch's too)."""
    program = (HEAD + "from torch.utils.data import DataLoader, TensorDataset\nX = torch.arange(10.).view(10, 1)\n"
               "w = torch.ones(1, requires_grad=True)\nloader = DataLoader(TensorDataset(X), batch_size=4)\n"
               "it = iter(loader)\nfirst = next(it)[0]\ntotal = first.sum() * 0\nfor (xb,) in it:\n"
               "    total = total + (xb * w).sum()\n"
               "shuffled = DataLoader(TensorDataset(X), batch_size=3, shuffle=True, num_workers=2)\n"
               "it2 = iter(shuffled)\nnoise = torch.rand(2)\n(sb,) = next(it2)\n"
               "loss = total + (sb * w).sum() + noise.sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference"])
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["first", "xb", "sb", "noise", "w", "loss"], exact=True)
    assert float(g["total"]) == 39.0


@pytest.mark.parametrize(("body", "match"), [
    ("loader = DataLoader(TensorDataset(torch.zeros(0, 2)), batch_size=2, shuffle=True)\n", "num_samples should be a positive"),
    ("loader = DataLoader(TensorDataset(torch.zeros(4, 2)), batch_size=2, num_workers=2, persistent_workers=True)\n",
     "persistent_workers"),
    ("x = torch.randn(3, requires_grad=True)\ny = x.masked_select(torch.tensor([1, 0, 1]) + 0)\n", "expected BoolTensor"),
])
def test_data_loader_and_mask_settings_torch_refuses_or_gradtrace_does_not_follow(body: str, match: str) -> None:
    from services.compiler import compile_spec
    from services.errors import SpecError
    from shared.spec import TraceSpec

    with pytest.raises(SpecError, match=match):
        compile_spec(TraceSpec(program=HEAD + "from torch.utils.data import DataLoader, TensorDataset\n" + body))


def test_gaussian_nll_loss_as_torch(tmp_path: Path) -> None:
    """nn.GaussianNLLLoss / F.gaussian_nll_loss (probabilistic forecasting, uncertainty heads): var the input's shape,
    without its last dim (unsqueezed), heteroscedastic with a last dim of 1, `full`, each reduction; var clamped to eps
    outside the graph (tiny variances: the gradient passes unclamped, as torch's); torch's numbers and grad_fns."""
    program = (HEAD + "mu = torch.randn(5, 3, requires_grad=True)\ny = torch.randn(5, 3)\n"
               "raw = torch.randn(5, 3, requires_grad=True)\nvar = F.softplus(raw) * torch.tensor([1.0, 1e-8, 1.0])\n"
               "l1 = nn.GaussianNLLLoss()(mu, y, var)\nl2 = F.gaussian_nll_loss(mu, y, var[:, 0], full=True, reduction='sum')\n"
               "l3 = F.gaussian_nll_loss(mu, y, var[:, :1], eps=1e-3, reduction='none')\n"
               "loss = l1 + l2 + l3.mean()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    pairs = {p.engines: p.failures for p in t.result.comparison.pairs}
    assert pairs["torch~reference"] == [] and pairs["torch~numeric"] == ["grad:raw"]  # (finite differences see the
    g = in_torch(program, tmp_path)  # clamp's flat slope where var < eps; torch passes the gradient on, as here)
    same_as_torch(t, g, ["mu", "raw", "l1", "l2", "l3", "loss"])
    assert t.result.nodes["l1"].grad_fn == type(g["l1"].grad_fn).__name__ == "MeanBackward0"
