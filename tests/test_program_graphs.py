"""Graph-learning and RL code as people write it by hand, traced against real torch: edge lists of tuples (an
adjacency filled edge by edge, `torch.tensor(edges).t()`), heterogeneous graphs keyed by (src, rel, dst) tuples,
comprehensions and zips over tensors (REINFORCE's `zip(log_probs, returns)`), dicts looped over in comprehensions."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"


def test_a_tuple_held_in_a_variable_indexes_one_element_per_dim(tmp_path: Path) -> None:
    # `A[e] = 1.0` with e = (0, 1) set whole rows (A all ones, loss 9 where torch gives 2), and `W[k]` read rows; both
    # engines agreed on the wrong numbers
    program = (HEAD + "A = torch.zeros(3, 3)\nfor e in [(0, 1), (1, 2)]:\n    A[e] = 1.0\n"
               "x = torch.ones(3, requires_grad=True)\nW = torch.arange(16.0).view(4, 4).requires_grad_()\nk = (1, 2)\n"
               "row, col = torch.tensor([0, 2]), torch.tensor([1, 3])\nidx = (row, col)\n"
               "loss = (A @ x).sum() + W[k] * 2 + W[idx].sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["loss"].value.data == pytest.approx(2.0 + 12.0 + 1.0 + 11.0)
    assert t.result.nodes["x"].grad.data == pytest.approx([0.0, 1.0, 1.0])
    same_as_torch(t, in_torch(program, tmp_path), ["A", "x", "W", "loss"])


def test_an_edge_list_of_tuples_is_int64_and_indexes(tmp_path: Path) -> None:
    # torch.tensor of a list of tuples of ints was float32: a confusing refusal where the edges index features
    program = (HEAD + "edges = [(0, 1), (1, 2), (2, 0), (1, 0)]\nedge_index = torch.tensor(edges).t()\n"
               "src, dst = zip(*edges)\nsrc = torch.tensor(src)\nx = torch.randn(3, 2, requires_grad=True)\n"
               "msg = x[edge_index[0]] * 2\nout = torch.zeros(3, 2).index_add(0, edge_index[1], msg)\n"
               "loss = (out.pow(2).sum() + x[src].sum())\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["edge_index"].dtype == "int64"
    same_as_torch(t, in_torch(program, tmp_path), ["x", "out", "loss"])
    with pytest.raises(Exception, match="only floating point tensors can require gradients"):
        traced("import torch\nt = torch.tensor([(1, 2), (3, 4)], requires_grad=True)\n")


def test_tuple_keys_of_a_heterogeneous_graph(tmp_path: Path) -> None:
    # `{('paper', 'cites', 'paper'): ...}` crashed the compiler (a list key: TypeError); by assignment and in a
    # comprehension over a dict it was refused
    program = (HEAD + "edge_types = [('paper', 'cites', 'paper'), ('author', 'writes', 'paper')]\n"
               "convs = nn.ModuleDict({'__'.join(et): nn.Linear(2, 2) for et in edge_types})\n"
               "weight = {('paper', 'cites', 'paper'): 2.0}\nweight[('author', 'writes', 'paper')] = 0.5\n"
               "x = torch.randn(3, 2, requires_grad=True)\nout = {et: convs['__'.join(et)](x) for et in edge_types}\n"
               "scaled = {k: out[k] * weight[k] for k in out}\nloss = sum(v.sum() for v in scaled.values())\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["convs", "x", "loss"])
    with pytest.raises(Exception, match="a dict key is a string, an int or a tuple of them"):
        traced("import torch\nd = {[1, 2]: 3}\n")


def test_comprehensions_and_zips_over_tensors_as_reinforce_writes_them(tmp_path: Path) -> None:
    # `[-lp * R for lp, R in zip(log_probs, returns)]` was refused though a for loop over the same tensor traced;
    # iterating a tensor gives its rows as torch's iter(t) does: t.unbind(0), UnbindBackward0
    program = (HEAD + "policy = nn.Linear(4, 2)\nstates = torch.randn(3, 4)\nrewards = [1.0, 0.0, 2.0]\n"
               "log_probs = [F.log_softmax(policy(s), -1)[0] for s in states]\nreturns, R = [], 0.0\n"
               "for r in reversed(rewards):\n    R = r + 0.9 * R\n    returns.insert(0, R)\nreturns = torch.tensor(returns)\n"
               "returns = (returns - returns.mean()) / (returns.std() + 1e-8)\n"
               "loss = torch.stack([-lp * Rt for lp, Rt in zip(log_probs, returns)]).sum()\n"
               "loss = loss + sum(-lp * g for lp, g in zip(log_probs, returns)) * 0.5\n"
               "rows = [h.sum() for h in policy(states)]\nloss = loss + sum(rows) * 0.1\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["policy", "states", "returns", "loss"])
    rows = [n for n in t.result.nodes.values() if n.op == "unbind" and n.requires_grad]
    assert rows and all(n.grad_fn == "UnbindBackward0" for n in rows)


def test_a_for_loop_over_a_tensor_gives_torchs_unbind_rows(tmp_path: Path) -> None:
    program = (HEAD + "w = torch.randn(3, 2, requires_grad=True)\nlp = torch.log_softmax(w, -1)[:, 0]\nterms = []\n"
               "for i, x in enumerate(lp):\n    terms.append(-x * (i + 1))\nloss = torch.stack(terms).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["x"].grad_fn == "UnbindBackward0"
    same_as_torch(t, in_torch(program, tmp_path), ["w", "loss"])


def test_graphsage_mean_and_a_global_max_pool_with_scatter_reduce(tmp_path: Path) -> None:
    program = (HEAD + "x = torch.randn(5, 3, requires_grad=True)\nedge_index = torch.tensor([[0, 1, 2, 3, 4, 1], [1, 0, 1, 4, 3, 2]])\n"
               "src, dst = edge_index\nlin = nn.Linear(3, 3)\nmsg = lin(x)[src]\n"
               "agg = torch.zeros(5, 3).scatter_reduce(0, dst.unsqueeze(-1).expand(-1, 3), msg, reduce='mean', include_self=False)\n"
               "h = F.relu(agg + x)\nbatch = torch.tensor([0, 0, 0, 1, 1])\n"
               "pooled = torch.full((2, 3), float('-inf')).scatter_reduce(0, batch.view(-1, 1).expand(-1, 3), h, 'amax')\n"
               "loss = pooled.sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    assert t.result.nodes["pooled"].grad_fn == "ScatterReduceBackward0"
    same_as_torch(t, in_torch(program, tmp_path), ["x", "lin", "agg", "pooled", "loss"])


def test_list_and_sum_of_a_tensor_go_over_its_rows(tmp_path: Path) -> None:
    # `list(t)` / `sum(t)` iterate the tensor as Python does (its rows, t.unbind(0)); a dict's .get with a tuple key
    program = (HEAD + "x = torch.randn(3, 4, requires_grad=True)\nrows = list(x * 2)\ns = sum(x)\n"
               "d = {('a', 1): x * 3}\nloss = torch.stack(rows).sum() + s.sum() + d.get(('a', 1)).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["s"].grad_fn == "AddBackward0"
    same_as_torch(t, in_torch(program, tmp_path), ["x", "s", "loss"])


def test_cosine_and_hinge_embedding_losses_as_aten_composes_them(tmp_path: Path) -> None:
    # metric learning's nn.CosineEmbeddingLoss / F.cosine_embedding_loss (2-d inputs with a 1-d target, 1-d with a 0-d
    # one) and nn.HingeEmbeddingLoss: ATen's composition, so values, grads and grad_fns are torch's
    program = (HEAD + "a = torch.randn(4, 5, requires_grad=True)\nb = torch.randn(4, 5, requires_grad=True)\n"
               "y = torch.tensor([1, -1, 1, -1])\nl1 = nn.CosineEmbeddingLoss(margin=0.2)(a, b, y)\n"
               "l2 = F.cosine_embedding_loss(a[0], b[0], torch.tensor(-1), reduction='sum')\n"
               "l3 = F.cosine_embedding_loss(a, b, y.float(), margin=0.5, reduction='none')\n"
               "d = (a - b).norm(dim=1)\nh = nn.HingeEmbeddingLoss(margin=2.0)(d, y)\n"
               "h2 = F.hinge_embedding_loss(d, y.float(), reduction='sum')\nloss = l1 + l2 + l3.sum() + h + h2\nloss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    assert t.result.nodes["l3"].grad_fn == "AddBackward0" and t.result.nodes["h"].grad_fn == "MeanBackward0"
    same_as_torch(t, in_torch(program, tmp_path), ["a", "b", "l1", "l2", "l3", "h", "h2", "loss"])
    with pytest.raises(Exception, match="1D target tensor expects 2D input tensors"):
        traced("import torch\nimport torch.nn.functional as F\nx = torch.randn(3, requires_grad=True)\n"
               "l = F.cosine_embedding_loss(x, x, torch.tensor([1, 1, 1]))\n")
