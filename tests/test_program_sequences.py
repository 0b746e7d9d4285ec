"""Sequence, time-series and audio code as tutorials and repositories write it, each traced against real torch: the
char-RNN tutorial's in-place shape methods and list lookups, the Time-Series-Library's embeddings (a version test,
circular padding, a typo'd attribute, private names), PatchTST's unfold, TCN-style causal and 'same' convolutions."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_program_pytorch import in_torch, same_as_torch, traced

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"


def test_char_rnn_in_place_shape_methods_and_list_lookups(tmp_path: Path) -> None:
    """`target_line_tensor.unsqueeze_(-1)` and `all_categories.index(category)` (the char-RNN generation tutorial),
    `h.t_()`, `.squeeze_()`, `.transpose_()` on tensors with grad: every name of the tensor sees the new shape (an
    alias too), torch's values and grads."""
    program = (HEAD + "all_categories = ['English', 'French', 'German']\n"
               "li = all_categories.index('French')\ncategory_tensor = torch.zeros(1, 3)\ncategory_tensor[0][li] = 1\n"
               "x = torch.randn(3, 4, requires_grad=True)\ntarget = torch.tensor([1, 0, 2])\nalias = target\n"
               "target.unsqueeze_(-1)\ng = x.gather(1, target)\nh = x * 2\nh.t_()\nh.unsqueeze_(0)\nk = h.squeeze_(0)\n"
               "w = (x + 1).unsqueeze(1)\nw.squeeze_(1)\nw.transpose_(0, 1)\nn = (1, 2, 2).count(2)\n"
               "loss = g.sum() + (h * h).sum() + alias.float().sum() + (w * k).sum() * n + category_tensor.sum()\n"
               "loss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["x", "target", "g", "k", "w", "loss"])  # (h is the tensor k names)
    assert list(g["alias"].shape) == t.result.nodes["target"].value.shape == [3, 1]
    for name in ("k", "w"):  # torch's in-place forms ran: SqueezeBackward4, TransposeBackward1
        assert t.result.nodes[name].grad_fn == type(g[name].grad_fn).__name__, name
    assert [t.result.nodes[n].grad_fn for n in ("h@2", "h@3")] == ["TBackward1", "UnsqueezeBackward1"]


def test_an_in_place_shape_change_of_a_saved_tensor_fails_as_torchs_backward() -> None:
    """`h = torch.tanh(x); h.t_()`: tanh saved h, whose version the in-place t_ bumps: torch's backward() fails."""
    with pytest.raises(SpecError, match="modified by an inplace operation"):
        traced(HEAD + "x = torch.randn(3, 4, requires_grad=True)\nh = torch.tanh(x)\nh.t_()\n"
                      "loss = (h * torch.arange(3.)).sum()\nloss.backward()\n")


def test_in_place_shape_methods_refused_where_torch_refuses_them() -> None:
    with pytest.raises(SpecError, match="leaf tensor that requires grad"):
        compile_spec(TraceSpec(program="import torch\nx = torch.randn(3, requires_grad=True)\nx.unsqueeze_(0)\n"))
    with pytest.raises(SpecError, match="is not in the list"):
        compile_spec(TraceSpec(program="import torch\nc = ['a', 'b']\ni = c.index('z')\n"))


def test_time_series_library_embeddings_as_pasted(tmp_path: Path) -> None:
    """TokenEmbedding's `padding = 1 if torch.__version__ >= '1.5.0' else 2` (a version compares as torch's
    TorchVersion: '2.13' is after '2.2'), Conv1d(padding_mode='circular') (F.pad, then the conv), PositionalEmbedding's
    `pe.require_grad = False` typo (noted, changes nothing), a `self.__padding` private name (mangled as Python does,
    so the parameter is torch's `holder._Holder__proj.weight`), PatchTST's `x.unfold(-1, size, step)`."""
    program = (HEAD + "import math\nimport numpy as np\n\n\nclass TokenEmbedding(nn.Module):\n"
               "    def __init__(self, c_in, d_model):\n        super(TokenEmbedding, self).__init__()\n"
               "        padding = 1 if torch.__version__ >= '1.5.0' else 2\n"
               "        self.tokenConv = nn.Conv1d(in_channels=c_in, out_channels=d_model, kernel_size=3, padding=padding,\n"
               "                                   padding_mode='circular', bias=False)\n\n"
               "    def forward(self, x):\n        return self.tokenConv(x.permute(0, 2, 1)).transpose(1, 2)\n\n\n"
               "class Holder(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
               "        self.__proj = nn.Linear(8, 2)\n\n    def forward(self, x):\n        return self.__proj(x)\n\n\n"
               "pe = torch.zeros(7, 8)\npe.require_grad = False\nnewer = 1.0 if torch.__version__ >= '2.2' else 0.0\n"
               "scale = math.log1p(255) + np.log1p(3.0) + math.atan2(1.0, 2.0)\n"
               "emb = TokenEmbedding(3, 8)\nholder = Holder()\nx = torch.randn(2, 7, 3, requires_grad=True)\n"
               "y = (emb(x) + pe) * scale * newer\nz = holder(y)\n"
               "patches = z.transpose(1, 2).unfold(dimension=-1, size=3, step=2)\n"
               "loss = patches.pow(2).sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["emb", "holder", "x", "y", "z", "patches", "loss"])
    assert "holder._Holder__proj.weight" in t.result.nodes
    assert t.result.nodes["patches"].grad_fn == type(g["patches"].grad_fn).__name__ == "UnfoldBackward0"
    assert any("require_grad" in n and "nothing changes" in n for n in t.result.notes)


def test_conv_padding_modes_and_same_with_an_even_kernel(tmp_path: Path) -> None:
    """padding_mode 'reflect' / 'replicate' / 'circular' (with 'same' too) pad first as torch's `_conv_forward`;
    padding='same' with an even kernel pads the extra one on the right (ConstantPadNdBackward0), as ATen does; a
    `.view()` of overlapping windows fails at the torch engine as in torch."""
    program = (HEAD + "c1 = nn.Conv2d(2, 3, 3, padding=1, padding_mode='reflect')\n"
               "c2 = nn.Conv2d(2, 3, (3, 2), padding='same', padding_mode='replicate', dilation=(1, 2))\n"
               "c3 = nn.Conv1d(2, 3, 4, padding='same')\nc4 = nn.Conv2d(2, 3, (3, 2), padding='same')\n"
               "img = torch.randn(1, 2, 5, 6, requires_grad=True)\nz = c1(img) + c2(img) + c4(img)\n"
               "q = c3(img[:, :, 0])\nloss = z.pow(2).sum() + q.sum()\nloss.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["c1", "c2", "c3", "c4", "img", "z", "q", "loss"])
    nexts = [f.grad_fn for f in t.result.nodes["q"].next_functions]
    assert nexts[0] == type(g["q"].grad_fn.next_functions[0][0]).__name__ == "ConstantPadNdBackward0"


def test_dropout_between_recurrent_layers_in_training_mode_as_torch(tmp_path: Path) -> None:
    """The word language model example in model.train(): nn.LSTM(..., nlayers, dropout=...) between nn.Dropouts, a
    bidirectional batch_first GRU and an RNN with dropout: torch's kernel drops each layer's output (sequence first)
    with at::dropout, whose masks are drawn in order with the program's; values, grads and later draws are torch's."""
    program = (HEAD + "class RNNModel(nn.Module):\n    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.5):\n"
               "        super(RNNModel, self).__init__()\n        self.drop = nn.Dropout(dropout)\n"
               "        self.encoder = nn.Embedding(ntoken, ninp)\n        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)\n"
               "        self.decoder = nn.Linear(nhid, ntoken)\n\n    def forward(self, input, hidden):\n"
               "        emb = self.drop(self.encoder(input))\n        output, hidden = self.rnn(emb, hidden)\n"
               "        decoded = self.decoder(self.drop(output))\n        return decoded.view(-1, decoded.size(-1)), hidden\n\n\n"
               "model = RNNModel(10, 4, 5, 3, dropout=0.3)\nmodel.train()\ndata = torch.randint(0, 10, (6, 2))\n"
               "out, hidden = model(data, (torch.zeros(3, 2, 5), torch.zeros(3, 2, 5)))\n"
               "gru = nn.GRU(3, 4, num_layers=2, dropout=0.4, bidirectional=True, batch_first=True)\n"
               "xb = torch.randn(2, 5, 3, requires_grad=True)\nob, hb = gru(xb)\nrnn = nn.RNN(3, 4, num_layers=2, dropout=0.25)\n"
               "orr, _ = rnn(torch.randn(4, 3))\nafter = torch.rand(3)\n"
               "loss = F.cross_entropy(out, data.view(-1)) + ob.pow(2).sum() + hb.sum() + orr.sum() + after.sum()\n"
               "loss.backward()\n")
    t = traced(program, engines=["torch", "reference"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["model", "gru", "rnn", "xb", "out", "ob", "hb", "orr", "after", "loss"])
    assert "model.rnn.l0.mask" in t.result.nodes and "model.rnn.l2.mask" not in t.result.nodes


TCN = """

class Chomp1d(nn.Module):
    def __init__(self, chomp_size):
        super(Chomp1d, self).__init__()
        self.chomp_size = chomp_size

    def forward(self, x):
        return x[:, :, :-self.chomp_size].contiguous()


class TemporalBlock(nn.Module):
    def __init__(self, n_inputs, n_outputs, kernel_size, stride, dilation, padding, dropout=0.2):
        super(TemporalBlock, self).__init__()
        self.conv1 = weight_norm(nn.Conv1d(n_inputs, n_outputs, kernel_size,
                                           stride=stride, padding=padding, dilation=dilation))
        self.chomp1 = Chomp1d(padding)
        self.relu1 = nn.ReLU()
        self.dropout1 = nn.Dropout(dropout)

        self.conv2 = weight_norm(nn.Conv1d(n_outputs, n_outputs, kernel_size,
                                           stride=stride, padding=padding, dilation=dilation))
        self.chomp2 = Chomp1d(padding)
        self.relu2 = nn.ReLU()
        self.dropout2 = nn.Dropout(dropout)

        self.net = nn.Sequential(self.conv1, self.chomp1, self.relu1, self.dropout1,
                                 self.conv2, self.chomp2, self.relu2, self.dropout2)
        self.downsample = nn.Conv1d(n_inputs, n_outputs, 1) if n_inputs != n_outputs else None
        self.relu = nn.ReLU()
        self.init_weights()

    def init_weights(self):
        self.conv1.weight.data.normal_(0, 0.01)
        self.conv2.weight.data.normal_(0, 0.01)
        if self.downsample is not None:
            self.downsample.weight.data.normal_(0, 0.01)

    def forward(self, x):
        out = self.net(x)
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(out + res)


class TemporalConvNet(nn.Module):
    def __init__(self, num_inputs, num_channels, kernel_size=2, dropout=0.2):
        super(TemporalConvNet, self).__init__()
        layers = []
        num_levels = len(num_channels)
        for i in range(num_levels):
            dilation_size = 2 ** i
            in_channels = num_inputs if i == 0 else num_channels[i-1]
            out_channels = num_channels[i]
            layers += [TemporalBlock(in_channels, out_channels, kernel_size, stride=1, dilation=dilation_size,
                                     padding=(kernel_size-1) * dilation_size, dropout=dropout)]

        self.network = nn.Sequential(*layers)

    def forward(self, x):
        return self.network(x)


tcn = TemporalConvNet(3, [4, 4], kernel_size=2)
x = torch.randn(2, 3, 7)
y = tcn(x)
lin = nn.utils.parametrizations.weight_norm(nn.Linear(4, 2), dim=1)
z = lin(y.transpose(1, 2))
loss = z.pow(2).mean()
loss.backward()
"""


def test_locuslab_tcn_with_weight_norm_as_torch(tmp_path: Path) -> None:
    """locuslab's TemporalConvNet as pasted: `weight_norm(nn.Conv1d(...))` (g and v named and valued as torch's, the
    weight computed from them at each call, WeightNormInterfaceBackward0), its `init_weights` filling the computed
    weights through .data (draws, changes nothing: the dropout masks after it are torch's), blocks built in a list and
    put in `nn.Sequential(*layers)` after their own __init__ used their convs (named tcn.network.0...), and the
    parametrizations form on a Linear with dim=1."""
    program = HEAD + "from torch.nn.utils import weight_norm\n" + TCN
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["tcn", "lin", "y", "z", "loss"])
    nodes = t.result.nodes
    assert "tcn.network.0.conv1.weight_g" in nodes and "lin.parametrizations.weight.original1" in nodes
    assert nodes["tcn.network.0.conv1.weight"].grad_fn == "WeightNormInterfaceBackward0"
    assert any("init_weights" not in n and "changes nothing" in n for n in t.result.notes)


def test_weight_norm_is_refused_on_a_module_already_named() -> None:
    with pytest.raises(SpecError, match="apply it where the module is made"):
        compile_spec(TraceSpec(program=HEAD + "conv = nn.Conv1d(2, 3, 2)\nconv = nn.utils.weight_norm(conv)\n"))


def test_the_chatbot_tutorials_masked_nll_loss_as_torch(tmp_path: Path) -> None:
    """maskNLLLoss: `crossEntropy.masked_select(mask).mean()` with a mask from the padded batch written out (known now,
    so the result's shape is): MaskedSelectBackward0, torch's numbers; a mask from the data is refused."""
    program = (HEAD + "def maskNLLLoss(inp, target, mask):\n    nTotal = mask.sum()\n"
               "    crossEntropy = -torch.log(torch.gather(inp, 1, target.view(-1, 1)).squeeze(1))\n"
               "    loss = crossEntropy.masked_select(mask).mean()\n    return loss, nTotal.item()\n\n\n"
               "logits = torch.randn(4, 5, requires_grad=True)\ntarget = torch.tensor([1, 0, 3, 0])\n"
               "mask = torch.tensor([True, False, True, False])\nloss, n = maskNLLLoss(logits.softmax(1), target, mask)\n"
               "sel = torch.masked_select(logits, mask.unsqueeze(1))\ntotal = loss + sel.sum()\ntotal.backward()\n")
    t = traced(program, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(program, tmp_path)
    same_as_torch(t, g, ["logits", "loss", "sel", "total"])
    assert t.result.nodes["sel"].grad_fn == type(g["sel"].grad_fn).__name__ == "MaskedSelectBackward0"
    with pytest.raises(SpecError, match="masked_select gives a shape that depends on the data"):
        compile_spec(TraceSpec(program=HEAD + "x = torch.randn(4, requires_grad=True)\ny = x.masked_select(x > 0)\n"))
