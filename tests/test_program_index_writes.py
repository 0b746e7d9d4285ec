"""Index writes in programs, `pe[:, 0::2] = torch.sin(...)`: torch writes into the tensor (grad_fn CopySlices, or
IndexPutBackward0 for advanced indices); gradtrace traces each write as a setitem node that every name of the tensor
then means. Each program is run by real torch too (our own test text); values, grads and grad_fns must match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_program_idioms import check, refused
from test_program_pytorch import in_torch, same_as_torch, traced

from services.errors import SpecError

HEADER = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"

# PyTorch's "Language Modeling with nn.Transformer" tutorial, its PositionalEncoding as printed there.
POSITIONAL_ENCODING = HEADER + '''

class PositionalEncoding(nn.Module):

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)

        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(position * div_term)
        pe[:, 0, 1::2] = torch.cos(position * div_term)
        self.register_buffer('pe', pe)

    def forward(self, x):
        """
        Arguments:
            x: Tensor, shape ``[seq_len, batch_size, embedding_dim]``
        """
        x = x + self.pe[:x.size(0)]
        return self.dropout(x)


emb = nn.Embedding(10, 8)
enc = PositionalEncoding(8, max_len=50)
tokens = torch.tensor([[1, 2], [3, 4], [5, 6]])
out = enc(emb(tokens) * math.sqrt(8))
loss = (out ** 2).mean()
loss.backward()
'''


def test_the_transformer_tutorials_positional_encoding(tmp_path: Path) -> None:
    check(POSITIONAL_ENCODING, ["emb", "out", "loss"], tmp_path)
    t, g = traced(POSITIONAL_ENCODING), in_torch(POSITIONAL_ENCODING, tmp_path)
    np.testing.assert_allclose(t.arrays["torch/value/enc.pe"], g["enc"].pe.numpy(), rtol=1e-6, atol=1e-7)
    nodes = t.result.nodes
    assert nodes["enc.pe@2"].op == nodes["enc.pe"].op == "setitem" and nodes["enc.pe@1"].op == "input"
    assert nodes["enc.pe"].inputs[0] == "enc.pe@2"  # the second write goes into the first one's result


WRITES = HEADER + """a = torch.randn(3, 4, requires_grad=True)
s = torch.randn(2, requires_grad=True)
b = a * 2
alias = b
b[0, 1:3] = s * 3
b[:, 0] = 0.5
b[[2, 1], 3] = s.exp()
onehot = torch.zeros(3, 4)
onehot[torch.arange(3), torch.tensor([1, 0, 3])] = 1.0
mask = torch.zeros(3, 4, dtype=torch.bool)
mask[1, 2] = True
for i in range(2):
    onehot[i, 2] = i + 0.25
loss = (alias * onehot).sum() + b.masked_fill(mask, 0.0).pow(2).sum()
loss.backward()
"""


def test_writes_into_computed_tensors_match_torch(tmp_path: Path) -> None:
    """Basic and advanced writes, a number broadcast into a column, an alias that sees the writes (`alias = b`),
    bool masks and a one-hot built by writes, writes in a loop: every value and grad is torch's."""
    check(WRITES, ["a", "s", "b", "onehot", "mask", "loss"], tmp_path)  # loss reads b through `alias`


def test_grad_fns_and_next_functions_are_what_torch_prints(tmp_path: Path) -> None:
    t, g = traced(WRITES), in_torch(WRITES, tmp_path)
    nodes = t.result.nodes
    fn = g["b"].grad_fn
    assert nodes["b"].grad_fn == type(fn).__name__ == "CopySlices"  # an int beside the list: a view, then index_put_
    assert nodes["onehot"].grad_fn is None and g["onehot"].grad_fn is None  # nothing in it requires grad
    chain = []  # b's grad_fn, then the grad_fn before each write, as torch links them
    while fn is not None and type(fn).__name__ in ("IndexPutBackward0", "CopySlices"):
        chain.append([type(nf).__name__ if nf is not None else None for nf, _ in fn.next_functions])
        fn = fn.next_functions[0][0]
    ours = []
    name = "b"
    while nodes[name].op == "setitem":
        ours.append([f.grad_fn for f in nodes[name].next_functions])
        name = nodes[name].inputs[0]
    assert ours == chain == [["CopySlices", "ExpBackward0"], ["CopySlices", None], ["MulBackward0", "MulBackward0"]]
    assert name == "b@1" and nodes["b@1"].op == "mul"


def test_an_advanced_write_into_a_tensor_that_requires_grad_is_index_put(tmp_path: Path) -> None:
    program = HEADER + "a = torch.randn(3, 4, requires_grad=True)\nv = torch.randn(4, requires_grad=True)\nb = a * 3\n" \
        "b[[2, 0]] = v\nloss = (b * b).sum()\nloss.backward()\n"
    check(program, ["a", "v", "b", "loss"], tmp_path)
    nodes = traced(program).result.nodes
    assert nodes["b"].grad_fn == "IndexPutBackward0"
    assert [(f.grad_fn, f.node) for f in nodes["b"].next_functions] == [("MulBackward0", "b@1"), ("AccumulateGrad", "v")]


@pytest.mark.parametrize("change", ["b[[2, 0]] = v", "b[0, 1] = 2.0", "b += 1", "b.mul_(2)", "b = F.relu(b, inplace=True)"])
def test_a_change_in_place_of_what_an_op_saved_fails_as_in_torch(change: str, tmp_path: Path) -> None:
    """tanh saves its output for backward: changing it in place makes torch's backward() fail, and so the trace,
    naming the line (before, the trace gave numbers torch cannot give)."""
    program = HEADER + f"a = torch.randn(3, 4, requires_grad=True)\nv = torch.randn(4)\nb = a.tanh()\n{change}\n" \
        "loss = (b * b).sum()\nloss.backward()\n"
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        in_torch(program, tmp_path)
    with pytest.raises(SpecError, match="modified by an inplace operation") as info:
        traced(program)
    assert "line 9 `" in str(info.value) and "(b@1)" in str(info.value)


@pytest.mark.parametrize("change", ["b *= w", "b.exp_()", "b[0] = b[1] * 2", "b += b"])
def test_a_change_in_place_that_torch_allows_still_traces(change: str, tmp_path: Path) -> None:
    """What an in-place op itself saves is the changed tensor's new version (mul_ keeps its own copy of the old):
    these run in torch, and trace with torch's numbers."""
    program = HEADER + f"a = torch.randn(3, 4, requires_grad=True)\nw = torch.randn(4, requires_grad=True)\nb = a * 2\n" \
        f"{change}\nloss = (b * b).sum()\nloss.backward()\n"
    check(program, ["a", "w", "b", "loss"], tmp_path)


@pytest.mark.parametrize(("program", "words"), [
    ("w = torch.randn(3, requires_grad=True)\nw[0] = 1.0\n", "a leaf tensor that requires grad"),
    ("x = torch.randn(3, 4)\nrow = x[0]\nrow[1] = 5.0\n", "is a view of"),
    ("x = torch.randn(3, 4)\nrow = x[0]\nx[0, 1] = 5.0\n", "'row' is a view of it"),
    ("x = torch.randn(3, 4)\nx[:, 0] = torch.ones(4)\n", "value tensor of shape [4] cannot be broadcast to indexing result of shape [3]"),
    ("x = torch.randn(3, 4)\nx[0] = 'a'\n", "takes a tensor or a number"),
])
def test_refused_as_torch_refuses_or_where_torch_would_change_another_tensor(program: str, words: str) -> None:
    assert words in str(refused(HEADER + program))


def test_a_helper_that_writes_into_its_argument_changes_the_callers_tensor(tmp_path: Path) -> None:
    """`zero_first(h)` from a method: the write (and a `+=` in another helper) is seen by the method's `h`, as
    torch's one tensor object is (before, the caller kept the old value: wrong grads with verdict agree)."""
    program = HEADER + """
def zero_first(h):
    h[:, 0] = 0.0


def bump(h):
    h += 1.0


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        h = self.fc(x) * 2
        zero_first(h)
        bump(h)
        return h.sum()


net = Net()
x = torch.randn(2, 3)
loss = net(x)
loss.backward()
"""
    check(program, ["net", "loss"], tmp_path)


HOLDERS = HEADER + """

class M(nn.Module):
    def __init__(self):
        super().__init__()
        t = torch.zeros(3)
        self.buf = t
        t[0] = 1.0
        mask = torch.ones(3)
        self.register_buffer("mask", mask)
        mask[1] = 0.0
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        h = self.fc(x)
        cache = {"h": h, "all": [[h]]}
        h[:, 2] = 0.0
        return (cache["h"] + self.buf) * self.mask + cache["all"][0][0]


m = M()
x = torch.randn(2, 3)
y = x * 2
y[0] = y[1] * 3
y[:, 0] = y[:, 1]
out = m(y)
loss = (out * out).sum()
loss.backward()
y[1] = 100.0
"""


def test_writes_are_seen_through_dicts_lists_attributes_and_buffers(tmp_path: Path) -> None:
    """A write reaches every holder of the tensor (a dict, a nested list, `self.buf`, a registered buffer), as torch's
    one object does (they kept the old value: wrong grads with verdict agree). A value read from the tensor being
    written (`y[0] = y[1] * 3`, `y[:, 0] = y[:, 1]`) traces (it disagreed), and a write after backward() changes
    nothing backward used (it was refused)."""
    check(HOLDERS, ["m", "x", "out", "loss"], tmp_path)


@pytest.mark.parametrize(("tail", "words"), [
    ("net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.ReLU(inplace=True))\nloss = net(x).sum()\n",
     "output 0 of Tanh"),
    ("y = x * 2\nidx = torch.arange(3) * 2\ny[idx] = 0.0\nloss = y.sum()\n", "index 4 is out of bounds"),
    ("z = torch.zeros(3, dtype=torch.long)\nz[0] = float('-inf')\nloss = (x * z).sum()\n", "without overflow"),
])
def test_what_torch_refuses_while_running_fails_naming_the_line(tail: str, words: str, tmp_path: Path) -> None:
    """An in-place ReLU inside nn.Sequential after a Tanh (Tanh saved its output: a spec error), an index computed
    out of range, a number that does not fit int64 (torch's own exception, the job's engine_error): torch raises,
    and so does the trace, with torch's message and the line (they traced, or failed without a line)."""
    program = HEADER + "x = torch.randn(4, 3, requires_grad=True)\n" + tail + "loss.backward()\n"
    if "idx" in tail:
        program = program.replace("x * 2", "x[:, 0] * 2")
    with pytest.raises((RuntimeError, IndexError)):
        in_torch(program, tmp_path)
    with pytest.raises((SpecError, RuntimeError, IndexError), match=words) as info:
        traced(program)
    assert "line 8" in str(info.value) or "line 9" in str(info.value)


def test_an_index_tensor_written_out_of_range_is_refused_when_compiled() -> None:
    """The written value's range is known: `idx[1] = 5` then `x[idx]` on size 3 is refused before anything runs."""
    program = HEADER + "x = torch.randn(3, requires_grad=True)\nidx = torch.zeros(3, dtype=torch.long)\nidx[1] = 5\n" \
        "y = x[idx]\nloss = y.sum()\nloss.backward()\n"
    assert "index 5 is out of bounds for dimension 0 with size 3" in str(refused(program))


WRITE_FORMS = HEADER + """labels = [1, 0, 3]
target = torch.zeros(3, 4)
for i, l in enumerate(labels):
    target[i][l] = 1.0
emb = nn.Embedding(5, 4, padding_idx=None)
with torch.no_grad():
    emb.weight[0] = 0.0
    emb.weight.data[1, 2:] = 0.5
x = torch.randn(4, 3, requires_grad=True)
y = x * 2
y[:, 0] += 1.0
y[1] *= 3.0
acc = torch.zeros(3)
for i in range(4):
    acc[i % 3] += x[i].sum()
hs = [x[0] * 1, x[1] * 1]
keep = hs[1]
hs[1] += x[2]
hs[0][1] = 7.0
counts = [0, 0]
counts[1] += 2
ar = torch.arange(12).float().reshape(3, 4)
ar[0, 0] = -1.0


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.buf = torch.ones(4)
        self.buf[1] = 0.5

    def forward(self, h):
        return self.fc(h) * self.buf


m = M()
e = emb(torch.tensor([0, 1, 2]))
out = m(e) + target + ar
loss = out.pow(2).sum() + (y * y).sum() + acc.sum() + keep.sum() * counts[1] + hs[0].sum()
loss.backward()
"""


def test_the_other_forms_of_a_write(tmp_path: Path) -> None:
    """`target[i][l] = 1.0` (a one-hot loop: the row is a view), `emb.weight[0] = 0.0` under torch.no_grad() and
    through .data (the padding row: the parameter's starting value), `y[:, 0] += 1.0` and `acc[i % 3] += ...`
    (the part, changed, written back: CopySlices), `hs[1] += x[2]` on a list's tensor (`keep` sees it), `hs[0][1] =
    7.0`, `counts[1] += 2`, `self.buf[1] = 0.5`, and a write into a reshape of a temporary (`ar`): all as in torch."""
    check(WRITE_FORMS, ["emb", "m", "x", "target", "y", "acc", "ar", "out", "loss"], tmp_path)
    t = traced(WRITE_FORMS)
    assert t.result.nodes["y"].grad_fn == "CopySlices" and t.result.nodes["emb.weight"].op == "parameter"
    assert float(np.abs(t.arrays["torch/value/emb.weight"][0]).max()) == 0.0


@pytest.mark.parametrize(("program", "words"), [
    ("x = torch.randn(3, 4)\nr = x[1:]\nr[0][1] = 5.0\n", "is a view of 'x'"),
    ("x = torch.randn(3, 4)\nx[1:][0] = 5.0\n", "write it as one index"),
    ("w = torch.randn(3, requires_grad=True)\nh = w * 2\nwith torch.no_grad():\n    w[0] = h[0]\n", "takes a number or a tensor the program made"),
    ("w = torch.randn(3, requires_grad=True)\nwith torch.no_grad():\n    w[0] = torch.ones(2)\n", "cannot be broadcast"),
    ("w = torch.randn(3, requires_grad=True)\nwith torch.no_grad():\n    w[5] = 0.0\n", "index 5 is out of bounds"),
    ("xs = [1, 2]\nxs[0][1] = 3\n", "'xs[0]' is the int 1, not a tensor"),
])
def test_the_other_forms_refused_with_the_reason(program: str, words: str) -> None:
    assert words in str(refused(HEADER + program))


MASK_WRITES = HEADER + """x = torch.randn(4, 3, requires_grad=True)
y = x * 2
y[y < 0] = 0.0
lengths = torch.tensor([3, 1, 2, 3])
pad = torch.arange(3)[None, :] >= lengths[:, None]
scores = x * 1.5
scores[pad] = float("-inf")
p = scores.softmax(-1)
rows = torch.tensor([True, False, True, False])
h = x * 3
h[rows] = torch.zeros(3)
v = torch.randn((), requires_grad=True)
g = x * 1
g[g > 0.5] = v
loss = (y * p).sum() + h.sum() + g.sum()
loss.backward()
"""


def test_writes_through_bool_masks(tmp_path: Path) -> None:
    """`y[y < 0] = 0.0`, a padding mask's `scores[pad] = float('-inf')` before softmax, whole rows
    (`h[rows] = torch.zeros(3)`) and a value that requires grad (`g[g > 0.5] = v`: its grad sums the selected
    places): torch's numbers and its grad_fn, IndexPutBackward0."""
    check(MASK_WRITES, ["x", "y", "scores", "p", "h", "g", "v", "loss"], tmp_path)
    nodes = traced(MASK_WRITES).result.nodes
    assert {nodes[k].op for k in ("y", "scores", "h", "g")} == {"mask_put"}
    assert {nodes[k].grad_fn for k in ("y", "scores", "h", "g")} == {"IndexPutBackward0"}


def test_a_write_through_another_name_says_which_node_shows_what(tmp_path: Path) -> None:
    """`a = b; a[1] = 2.0` and a write through `h.contiguous()`: torch has one tensor with two names, a node one name.
    The numbers are torch's, and a note says node 'b' is the value before the write and node 'a' after."""
    program = HEADER + "x = torch.randn(3, requires_grad=True)\nb = x * 2\na = b\na[1] = 2.0\nh = x * 3\n" \
        "h2 = h.contiguous()\nh2 += 1\nloss = (b * b).sum() + h.sum()\nloss.backward()\n"
    check(program, ["x", "a", "h2", "loss"], tmp_path)
    notes = traced(program).result.notes
    assert "line 9: `a` changes in place the tensor node 'b' shows: 'b' is its value before the change, 'a' after" in notes
    assert any(n.startswith("line 12: `h2` changes in place the tensor node 'h' shows") for n in notes)
    assert not any("'x" in n for n in notes)  # `x += 1` style changes of a name's own tensor need no note


@pytest.mark.parametrize("change", ["out[0] = 0.0", "F.relu_(out)", "last = out[-1]\nlast += 1.0"])
def test_a_change_of_an_lstm_s_output_fails_as_torch_s_fused_lstm_does(change: str, tmp_path: Path) -> None:
    """torch's nn.LSTM (mkldnn on the CPU) keeps its output for backward, where gradtrace's unrolled steps keep
    nothing of it: a change of it in place is refused, as torch's backward() fails (it traced with 'agree')."""
    program = HEADER + f"lstm = nn.LSTM(3, 4)\nx = torch.randn(5, 1, 3)\nout, (h, c) = lstm(x)\n{change}\n" \
        "loss = out.sum()\nloss.backward()\n"
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        in_torch(program, tmp_path)
    assert "the output of lstm (nn.LSTM), which torch keeps for backward" in str(refused(program))


GLOVE = HEADER + """UNK_IDX, PAD_IDX = 0, 1
emb = nn.Embedding(5, 4)
emb.weight.data[UNK_IDX] = torch.zeros(4)
emb.weight.data[PAD_IDX] = torch.zeros(4)
lin = nn.Linear(3, 2)
with torch.no_grad():
    lin.weight[0] = torch.ones(3)
    lin.bias[:] = torch.tensor([0.5, -0.5])
x = emb(torch.tensor([0, 1, 2, 3]))
loss = lin(x[:, :3]).pow(2).sum()
loss.backward()
"""


def test_rows_of_parameters_set_to_made_tensors(tmp_path: Path) -> None:
    """The text-classification tutorials' `emb.weight.data[UNK_IDX] = torch.zeros(d)` and a no_grad write of
    `torch.ones(3)` into a weight's row: the parameters' starting values, as torch's."""
    check(GLOVE, ["emb", "lin", "x", "loss"], tmp_path)


def test_fills_of_views_write_the_tensor_and_fills_of_copies_do_not(tmp_path: Path) -> None:
    """`emb.weight[1].fill_(0.5)` and `lin.weight[:, 0].zero_()` under no_grad, `lin.bias.data[-1].fill_(2.0)`,
    `h[0].fill_(3.0)`: basic indexing gives a view, which torch fills in place (as `h[0] = 3.0`); `w[[0, 2]].zero_()`
    fills a copy and leaves w alone (noted)."""
    program = ("import torch\nfrom torch import nn\ntorch.manual_seed(0)\nemb = nn.Embedding(5, 3)\nlin = nn.Linear(3, 2)\n"
               "with torch.no_grad():\n    emb.weight[1].fill_(0.5)\n    lin.weight[:, 0].zero_()\n"
               "lin.bias.data[-1].fill_(2.0)\nw = torch.randn(4, requires_grad=True)\nwith torch.no_grad():\n"
               "    w[[0, 2]].zero_()\nh = torch.ones(2, 3)\nh[0].fill_(3.0)\nidx = torch.tensor([1, 2])\n"
               "loss = lin(emb(idx) * h).sum() + w.sum()\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["emb", "lin", "w", "h", "loss"])
    assert any("fills a copy" in n for n in t.result.notes)


def test_fills_with_an_ellipsis_or_a_0d_index_tensor_write_the_tensor(tmp_path: Path) -> None:
    """`h[..., -1].zero_()` and `h[i].fill_(0.0)` with a 0-d int tensor i: views, written as torch writes them."""
    program = ("import torch\ntorch.manual_seed(0)\nw = torch.randn(4, 3, requires_grad=True)\nh = w * 2\n"
               "h[..., -1].zero_()\ni = torch.tensor(1)\nh[i].fill_(0.0)\nloss = (h * h).sum()\nloss.backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["w", "h", "loss"])
    assert "write the change as a statement of its own" in str(refused(
        "import torch\nw = torch.ones(3, requires_grad=True)\nx = w * 2\nx.mul_(3).shape\n(x * x).sum().backward()\n"))


KNOWN_MASKS = HEADER + """n = 4
z = torch.randn(n, 3, requires_grad=True)
zn = F.normalize(z, dim=1)
sim = zn @ zn.T
mask = torch.eye(n, dtype=torch.bool)
neg = sim[~mask].view(n, -1)
labels = torch.tensor([0, 1, 0, 1])
same = labels.unsqueeze(0) == labels.unsqueeze(1)
pos = sim[same & ~mask]
logits = torch.randn(6, 3, requires_grad=True)
targets = torch.tensor([0, 1, -1, 2, -1, 1])
valid = targets >= 0
ce = F.cross_entropy(logits[valid], targets[valid])
x = torch.randn(3, 4, requires_grad=True)
xc = x[:, torch.tensor([True, False, True, False])]
off = ~torch.eye(4, dtype=torch.bool)
cov = x.T @ x
cov_loss = cov[off].pow_(2).sum()
non_final = torch.tensor([True, False, True, True, False])
q = torch.randn(3, requires_grad=True)
next_v = torch.zeros(5)
next_v[non_final] = q.exp()
loss = neg.sum() + pos.pow(2).sum() + ce + xc.pow(2).sum() + cov_loss + (next_v * torch.arange(5.)).sum()
loss.backward()
"""


def test_masks_made_from_numbers_index_as_torch(tmp_path: Path) -> None:
    """Masks known before anything runs: SimCLR's `sim[~mask].view(n, -1)`, positives from literal labels, an ignore
    mask on both logits and targets (`targets[valid]`: the picked labels are in range), a column mask, VICReg's
    `cov[off].pow_(2)` (a copy: torch changes only it), the DQN tutorial's `next_v[non_final] = ...`: torch's numbers
    (IndexBackward0, IndexPutBackward0). A mask computed from drawn values is refused: its shape depends on the data."""
    t = traced(KNOWN_MASKS)
    assert t.result.comparison.verdict == "agree"
    g = in_torch(KNOWN_MASKS, tmp_path)
    same_as_torch(t, g, ["z", "neg", "pos", "logits", "ce", "x", "xc", "q", "next_v", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("pos", "xc", "next_v")] == ["IndexBackward0", "IndexBackward0", "IndexPutBackward0"]
    assert "depends on the data" in str(refused(HEADER + "w = torch.randn(5, requires_grad=True)\ny = w[w > 0]\n"))
    assert "does not match the shape of the indexed tensor" in str(
        refused(HEADER + "w = torch.randn(5, requires_grad=True)\ny = w[torch.tensor([True, False])]\n"))
