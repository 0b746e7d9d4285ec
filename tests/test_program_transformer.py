"""nn.MultiheadAttention (masks, dropout, cross-attention, weights), nn.TransformerEncoderLayer and nn.TransformerEncoder
as torch runs them, each program run in real torch too: the same parameters, random draws, values and grads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from test_program_idioms import check, refused
from test_program_pytorch import EXAMPLES, in_torch, same_as_torch, traced

from services.trace import trace
from shared.spec import TraceSpec

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


@contextmanager
def float64() -> Iterator[None]:
    """torch's default dtype float64 inside (a float64 spec's modules, built in torch to compare)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def test_the_transformer_tutorial_traces_as_torch_runs_it(tmp_path: Path) -> None:
    """examples/transformer_tutorial.py: PyTorch's nn.Transformer tutorial (TransformerEncoder of two layers, the causal
    mask it detects, dropout 0.2 in training mode) gives torch's loss and grads; finite differences agree (float64)."""
    program = (EXAMPLES / "transformer_tutorial.py").read_text()
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    first = program.replace("range(0, train_data.size(0) - 1, bptt)", "range(0, 1)")  # the traced first step, in torch
    before_step = first[: first.index("    torch.nn.utils.clip_grad_norm_")]  # torch's grads before clipping and step
    same_as_torch(t, in_torch(before_step, tmp_path), ["model", "output", "loss"])
    nodes = t.result.nodes
    assert "model.transformer_encoder.layers.1.self_attn.weights_dropped" in nodes  # the attention's own dropout
    assert nodes["model.transformer_encoder.layers.0.dropout1"].grad_fn == "MulBackward0"
    t64 = traced(program, dtype="float64", engines=["torch", "reference", "numeric"])
    assert t64.result.comparison.verdict == "agree" and "numeric" in t64.result.engines


def test_the_translation_tutorial_traces_as_torch_runs_it(tmp_path: Path) -> None:
    """examples/translation_transformer.py: PyTorch's nn.Transformer translation tutorial (Seq2SeqTransformer, its mask
    helpers, xavier re-initialisation, padded batches, dropout) gives torch's parameters, loss and grads."""
    program = (EXAMPLES / "translation_transformer.py").read_text()
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    before_step = program[: program.index("optimizer.step()")]
    same_as_torch(t, in_torch(before_step, tmp_path), ["transformer", "logits", "loss"])
    assert "transformer.transformer.decoder.layers.1.multihead_attn.in_proj_weight" in t.result.parameters
    # the decoder's attention to the memory: training mode runs torch's math with the safe softmax
    assert t.result.nodes["transformer.transformer.decoder.layers.0.multihead_attn.weights"].grad_fn == "SafeSoftmaxBackward0"


PROGRAMS = {
    "decoder stack with memory padding and a final norm": """
torch.manual_seed(0)
dl = nn.TransformerDecoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.1)
dec = nn.TransformerDecoder(dl, num_layers=2, norm=nn.LayerNorm(8))
tgt = torch.randn(4, 2, 8, requires_grad=True)
memory = torch.randn(6, 2, 8, requires_grad=True)
tgt_mask = nn.Transformer.generate_square_subsequent_mask(4)
mkpm = torch.tensor([[False] * 5 + [True], [False] * 6])
y = dec(tgt, memory, tgt_mask=tgt_mask, memory_key_padding_mask=mkpm)
loss = y.pow(3).sum()  # not pow(2): after the final LayerNorm that sum is ~64 whatever the inputs, its grads noise
loss.backward()
""",
    "nn.Transformer, batch_first": """
torch.manual_seed(1)
model = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=16, dropout=0.2,
                       batch_first=True)
src = torch.randn(2, 5, 8)
tgt = torch.randn(2, 4, 8)
tgt_mask = model.generate_square_subsequent_mask(4)
out = model(src, tgt, tgt_mask=tgt_mask)
loss = out.pow(3).mean() + out[:, -1].pow(3).sum()  # pow(3): the final LayerNorm makes mean() and pow(2).sum() constants
loss.backward()
""",
    "decoder layer, norm_first, gelu, causal hint": """
torch.manual_seed(2)
dl = nn.TransformerDecoderLayer(8, 2, 16, 0.1, activation="gelu", batch_first=True, norm_first=True)
tgt = torch.randn(2, 3, 8, requires_grad=True)
mem = torch.randn(2, 5, 8, requires_grad=True)
y = dl(tgt, mem, tgt_is_causal=True, tgt_mask=nn.Transformer.generate_square_subsequent_mask(3))
loss = y.sum()
loss.backward()
""",
    "pre-norm, gelu, batch_first, padding mask, final norm": """
torch.manual_seed(0)
layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.1, activation="gelu",
                                   batch_first=True, norm_first=True)
enc = nn.TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(8))
x = torch.randn(3, 5, 8, requires_grad=True)
pad = torch.tensor([[False, False, False, True, True], [False] * 5, [False, False, False, False, True]])
y = enc(x, src_key_padding_mask=pad)
loss = y.pow(2).mean() + y[:, 0].sum()
loss.backward()
""",
    "a layer called twice, bool and float masks": """
torch.manual_seed(1)
layer = nn.TransformerEncoderLayer(8, 2, 16, 0.2)
x = torch.randn(5, 2, 8, requires_grad=True)
mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
y = layer(x, src_mask=mask)
z = layer(y, is_causal=True, src_mask=nn.Transformer.generate_square_subsequent_mask(5))
loss = z.sum()
loss.backward()
""",
    "cross-attention, weights per head, padding": """
torch.manual_seed(2)
attn = nn.MultiheadAttention(8, 2, dropout=0.1)
q = torch.randn(4, 3, 8, requires_grad=True)
mem = torch.randn(6, 3, 8, requires_grad=True)
out, w = attn(q, mem, mem)
out2, w2 = attn(q, q, q, attn_mask=torch.randn(6, 4, 4), average_attn_weights=False)
kpm = torch.zeros(3, 6, dtype=torch.bool)
kpm[0, 4:] = True
out3, _ = attn(q, mem, mem, key_padding_mask=kpm, need_weights=False)
first = attn(q, q, q, need_weights=False)[0]
loss = out.sum() + (w * 3).sum() + out2.pow(2).sum() + (w2 ** 2).sum() + out3.mean() + first.sum()
loss.backward()
""",
    "eval mode, causal hint": """
torch.manual_seed(3)
enc_layer = nn.TransformerEncoderLayer(d_model=8, nhead=4, dim_feedforward=32, batch_first=True)
model = nn.TransformerEncoder(enc_layer, num_layers=3)
model.eval()
x = torch.randn(2, 6, 8, requires_grad=True)
y = model(x, mask=nn.Transformer.generate_square_subsequent_mask(6), is_causal=True)
loss = y.sum()
loss.backward()
""",
    "unbatched, padding of keys, no bias (float64: in float32 two of 192 grads round 1e-7 apart)": """
torch.manual_seed(5)
layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3, batch_first=True)
attn = nn.MultiheadAttention(8, 4, dropout=0.25, bias=False)
x = torch.randn(6, 8, requires_grad=True)
kpm = torch.tensor([False, False, True, False, False, True])
y = layer(x, src_key_padding_mask=kpm)
out, w = attn(y, y, y, attn_mask=torch.ones(6, 6, dtype=torch.bool).triu(1))
loss = out.pow(2).sum() + w.sum()
loss.backward()
""",
    "activation as a function and as a module": """
torch.manual_seed(6)
a = nn.TransformerEncoderLayer(8, 2, 16, 0.1, activation=F.gelu)
b = nn.TransformerDecoderLayer(8, 2, 16, 0.1, activation=nn.GELU())
x = torch.randn(4, 2, 8, requires_grad=True)
loss = b(a(x), x).pow(3).sum()  # pow(3): a post-norm layer's output sums to 0 whatever x
loss.backward()
""",
    "F.scaled_dot_product_attention with dropout, dropout of transposes": """
torch.manual_seed(4)
q = torch.randn(2, 2, 5, 4, requires_grad=True)
k = torch.randn(2, 2, 5, 4, requires_grad=True)
v = torch.randn(2, 2, 5, 4, requires_grad=True)
a = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, is_causal=True)
keep = torch.tril(torch.ones(5, 5, dtype=torch.bool))
b = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=0.2, scale=0.3)
c = F.scaled_dot_product_attention(q, k, v, torch.randn(5, 5), 0.1)
x = torch.randn(4, 3, requires_grad=True)
d = F.dropout(x.t(), 0.5)
h = torch.randn(2, 3, 4, requires_grad=True)
e = nn.Dropout(0.4)(h.permute(2, 0, 1).transpose(0, 1))
loss = a.sum() + (b * b).sum() + c.mean() + d.pow(2).sum() + e.sum()
loss.backward()
""",
}


@pytest.mark.parametrize("case", list(PROGRAMS))
def test_attention_and_encoder_programs_equal_torch(case: str, tmp_path: Path) -> None:
    program, dtype = HEAD + PROGRAMS[case], "float64" if "float64" in case else "float32"
    g = in_torch(program, tmp_path, dtype)
    names = [k for k, v in g.items() if isinstance(v, (torch.nn.Module, torch.Tensor)) and not k.startswith("_")
             and (not isinstance(v, torch.Tensor) or v.dtype.is_floating_point)]
    t = traced(program, dtype=dtype)
    assert t.result.comparison.verdict == "agree", [p.failures for p in t.result.comparison.pairs]
    same_as_torch(t, g, names)


def test_in_projection_is_torch_s_op_for_op(tmp_path: Path) -> None:
    """q, k, v as F._in_projection_packed makes them: self-attention one linear, unflattened, moved, made contiguous
    and selected; cross-attention (key is value) q apart and k, v from one linear over the split weight. The same
    GEMMs as torch's, so the numbers are torch's bit for bit on any CPU (three linears rounded otherwise on AMD's)."""
    program = HEAD + ("torch.manual_seed(0)\nattn = nn.MultiheadAttention(8, 2)\nx = torch.randn(5, 3, 8, requires_grad=True)\n"
                      "m = torch.randn(7, 3, 8, requires_grad=True)\na = attn(x, x, x, need_weights=False)[0]\n"
                      "c = attn(x, m, m, need_weights=False)[0]\nloss = (a * c).sum()\nloss.backward()\n")
    g = in_torch(program, tmp_path)
    t = traced(program)
    for name in ("x", "m", "a", "c"):
        np.testing.assert_array_equal(t.arrays[f"torch/value/{name}"], g[name].detach().numpy(), err_msg=name)
    for key, p in g["attn"].named_parameters():
        np.testing.assert_array_equal(t.arrays[f"torch/grad/attn.{key}"], p.grad.numpy(), err_msg=key)
    unbatched = program.replace("torch.randn(5, 3, 8, requires_grad=True)", "torch.randn(5, 8, requires_grad=True)").replace(
        "torch.randn(7, 3, 8, requires_grad=True)", "torch.randn(7, 8, requires_grad=True)")
    g1, t1 = in_torch(unbatched, tmp_path), traced(unbatched)  # torch unsqueezes q, k, v apart: three projections
    for key, p in g1["attn"].named_parameters():
        np.testing.assert_array_equal(t1.arrays[f"torch/grad/attn.{key}"], p.grad.numpy(), err_msg=f"unbatched {key}")
    grad_fn = {n: t.result.nodes[n].grad_fn for n in ("attn.q", "attn.qkv.contiguous", "attn.qkv.squeeze", "attn.w_kv",
                                                       "attn.k#2", "attn.v#2")}
    assert grad_fn == {"attn.q": "SelectBackward0", "attn.qkv.contiguous": "CloneBackward0",
                       "attn.qkv.squeeze": "SqueezeBackward1", "attn.w_kv": "SplitWithSizesBackward0",
                       "attn.k#2": "SelectBackward0", "attn.v#2": "SelectBackward0"}


def test_dropout_after_batch_first_attention_draws_in_torch_s_memory_order(tmp_path: Path) -> None:
    """torch's MultiheadAttention(batch_first=True) returns a transpose of its (L, N, E) result, and dropout fills its
    mask in memory order: the mask is drawn (L, N, E) and permuted, as torch's numbers are."""
    program = HEAD + ("torch.manual_seed(0)\nattn = nn.MultiheadAttention(8, 2, batch_first=True)\n"
                      "x = torch.randn(2, 5, 8, requires_grad=True)\na, _ = attn(x, x, x, need_weights=False)\n"
                      "y = F.dropout(a, 0.5)\nloss = y.pow(2).sum()\nloss.backward()\n")
    check(program, ["attn", "x", "a", "y", "loss"], tmp_path)
    t = traced(program)
    assert t.result.nodes["y"].inputs[1].endswith(".layout")  # the drawn (5, 2, 8) mask, permuted


def test_transformer_layers_in_a_model_spec_are_torch_s_modules() -> None:
    """transformer_encoder (causal) and self_attention with dropout in a model spec: the parameters, dropout masks and
    grads of nn.TransformerEncoder / nn.MultiheadAttention built, then run, as an nn.Sequential of them (the second
    layer's parameters drawn before the first layer's dropout masks); finite differences agree."""
    spec = TraceSpec.model_validate({
        "inputs": {"x": {"shape": [2, 5, 8], "init": "normal", "seed": 1, "requires_grad": True}},
        "model": {"input": "x", "layers": [
            {"type": "transformer_encoder", "name": "enc", "d_model": 8, "nhead": 2, "dim_feedforward": 16, "dropout": 0.1,
             "batch_first": True, "num_layers": 2, "causal": True},
            {"type": "self_attention", "name": "attn", "embed_dim": 8, "num_heads": 2, "dropout": 0.2}],
            "loss": {"type": "mean"}},
        "engines": ["torch", "reference", "numeric"], "dtype": "float64",
    })
    t = trace(spec, inline_limit=10**6)
    assert t.result.comparison.verdict == "agree" and "numeric" in t.result.engines
    with float64():
        torch.manual_seed(0)  # as nn.Sequential: every layer built, then the forward runs (its dropout masks)
        enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, 0.1, batch_first=True), 2,
                                          enable_nested_tensor=False)
        attn = torch.nn.MultiheadAttention(8, 2, dropout=0.2, batch_first=True)
        x = torch.tensor(t.arrays["torch/value/x"], requires_grad=True)
        h = enc(x, mask=torch.nn.Transformer.generate_square_subsequent_mask(5), is_causal=True)
        loss = attn(h, h, h, need_weights=False)[0].mean()
        loss.backward()
    np.testing.assert_allclose(t.arrays["torch/value/loss"], loss.item(), rtol=1e-12)
    np.testing.assert_allclose(t.arrays["torch/grad/x"], x.grad.numpy(), rtol=1e-10, atol=1e-15)
    for key, mod in (("enc.layers.1.linear1.weight", enc.layers[1].linear1.weight), ("attn.in_proj_weight", attn.in_proj_weight)):
        np.testing.assert_allclose(t.arrays[f"torch/grad/{key}"], mod.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_a_layers_submodules_are_torch_s_and_a_norm_may_change_mode_alone(tmp_path: Path) -> None:
    """`layer.dropout` is the nn.Dropout (not the constructor's float), `layer.norm1.eval()` changes nothing (a
    LayerNorm computes the same in both modes), as in torch; a dropout part's own eval() is refused with why."""
    program = HEAD + ("torch.manual_seed(0)\nlayer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1)\nlayer.norm1.eval()\n"
                      "p = layer.dropout.p\nx = torch.randn(5, 2, 8, requires_grad=True)\n"
                      "y = layer(x)\nloss = y.pow(3).sum() * p\nloss.backward()\n")
    check(program, ["layer", "x", "y", "loss"], tmp_path)
    assert "train()/eval() of a transformer's submodule is not traced" in str(
        refused(program.replace("layer.norm1.eval()", "layer.dropout.eval()")))


@pytest.mark.parametrize(("tail", "needle"), [
    ("def make():\n    one = nn.TransformerEncoderLayer(8, 2, 16)\n    return nn.TransformerEncoder(one, 2), nn.TransformerEncoder(one, 2)\n"
     "a, b = make()\n", "already copied into another"),
    ("m = nn.TransformerEncoder(layer, 0)\n", "num_layers is an int from 1 to 64"),
    ("m = nn.TransformerEncoder(nn.Linear(8, 8), 2)\n", "takes an nn.TransformerEncoderLayer"),
    ("y = layer(x, src_mask=torch.zeros(4, 4))\n", "attn_mask must be [5, 5]"),
    ("y = layer(x, src_key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))\n", "key_padding_mask must be [2, 5]"),
    ("y = layer(x, is_causal=True)\n", "Need attn_mask if specifying the is_causal hint"),
    ("y = layer(x, src_mask=torch.zeros(5, 5, dtype=torch.long))\n", "only bool and floating types"),
    ("y = F.scaled_dot_product_attention(x, x, x, torch.zeros(5, 5), 0.1, True)\n", "attn_mask should not be set"),
])
def test_what_torch_refuses_is_refused_with_its_reason(tail: str, needle: str) -> None:
    program = HEAD + ("layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)\n"
                      "x = torch.randn(2, 5, 8, requires_grad=True)\n") + tail
    assert needle in str(refused(program))


def test_nn_transformer_in_a_model_spec_is_torch_s() -> None:
    """A `transformer` layer (inputs src and tgt; causal: true masks the target) is nn.Transformer, xavier_uniform_
    re-initialisation included: its parameters, dropout masks and grads; finite differences agree."""
    spec = TraceSpec.model_validate({
        "inputs": {"src": {"shape": [5, 2, 8], "init": "normal", "seed": 1, "requires_grad": True},
                   "tgt": {"shape": [3, 2, 8], "init": "normal", "seed": 2, "requires_grad": True}},
        "model": {"input": "src", "layers": [
            {"type": "transformer", "name": "tr", "inputs": ["src", "tgt"], "d_model": 8, "nhead": 2, "num_encoder_layers": 1,
             "num_decoder_layers": 2, "dim_feedforward": 16, "dropout": 0.1, "causal": True},
            # a head after the final LayerNorm: the mean of a LayerNorm's output is 0 whatever its inputs (noise grads)
            {"type": "linear", "name": "head", "in_features": 8, "out_features": 3}], "loss": {"type": "mean"}},
        "engines": ["torch", "reference", "numeric"], "dtype": "float64",
    })
    t = trace(spec, inline_limit=10**6)
    assert t.result.comparison.verdict == "agree" and "numeric" in t.result.engines
    with float64():
        torch.manual_seed(0)
        tr = torch.nn.Transformer(8, 2, 1, 2, 16, 0.1)
        head = torch.nn.Linear(8, 3)
        src, tgt = (torch.tensor(t.arrays[f"torch/value/{n}"], requires_grad=True) for n in ("src", "tgt"))
        loss = head(tr(src, tgt, tgt_mask=tr.generate_square_subsequent_mask(3), tgt_is_causal=True)).mean()
        loss.backward()
    np.testing.assert_allclose(t.arrays["torch/value/loss"], loss.item(), rtol=1e-12)
    for key, tensor in (("src", src), ("tgt", tgt), ("tr.decoder.layers.1.multihead_attn.in_proj_weight",
                                                      tr.decoder.layers[1].multihead_attn.in_proj_weight)):
        np.testing.assert_allclose(t.arrays[f"torch/grad/{key}"], tensor.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_a_model_rebound_to_itself_keeps_its_name(tmp_path: Path) -> None:
    """`model = Net()` then `model = model.to(device)`: one object, named `model.fc.weight` as torch's (was model@1)."""
    program = HEAD + ("class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(3, 2)\n"
                      "    def forward(self, x):\n        return self.fc(x)\n\ntorch.manual_seed(0)\nmodel = Net()\n"
                      "model = model.to('cpu')\nx = torch.randn(4, 3)\nloss = model(x).sum()\nloss.backward()\n")
    check(program, ["model", "loss"], tmp_path)
    assert set(traced(program).result.parameters) == {"model.fc.weight", "model.fc.bias"}


def test_int64_negation_and_bool_masks_compared_with_numbers(tmp_path: Path) -> None:
    """`-torch.arange(0, d, 2)` (the translation tutorial's positional encoding) is int64 as in torch, and a bool mask
    compared with a number (`mask == 0`, `mask == 1` of its create_mask) is compared as 0/1, as torch promotes it."""
    program = HEAD + ("torch.manual_seed(0)\nden = torch.exp(-torch.arange(0, 6, 2) * 0.5)\nk = torch.abs(-torch.arange(3))\n"
                      "mask = torch.triu(torch.ones(3, 3)) == 1\nm = mask.float().masked_fill(mask == 0, float('-inf'))\n"
                      "half = mask == 0.5\nx = torch.randn(3, 3, requires_grad=True)\n"
                      "loss = ((x + m).softmax(-1) * den + k).sum() + half.float().sum()\nloss.backward()\n")
    check(program, ["den", "m", "x", "loss"], tmp_path)
    assert "neg of a bool tensor is not supported" in str(refused(HEAD + "b = -(torch.ones(2) > 0)\n"))


@pytest.mark.parametrize(("program", "needle"), [
    ("q = torch.randn(1, 2, 3, 4, requires_grad=True)\ny = F.scaled_dot_product_attention(q, q, q, attn_mask="
     "torch.ones(3, 3, dtype=torch.long), dropout_p=0.1)\n", "Expected attn_mask dtype to be bool or float"),
    ("enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2)\nenc.eval()\n"
     "x = torch.randn(2, 5, 8)\npad = torch.tensor([[False, False, False, True, True], [False] * 5])\n"
     "with torch.no_grad():\n    y = enc(x, src_key_padding_mask=pad)\n", "nested-tensor fast path"),
    ("enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1)\nenc.requires_grad_(False)\n"
     "enc.eval()\nx = torch.randn(1, 3, 8)\npad = torch.tensor([[False, False, True]])\n"
     "y = enc(x, src_key_padding_mask=pad)\n", "a frozen encoder and input"),
])
def test_what_torch_runs_another_way_is_refused(program: str, needle: str) -> None:
    """torch refuses an int64 mask; an eval-mode encoder without gradients and with a padding mask runs torch's fast
    path (padded positions 0), which gradtrace does not trace: both refused with the reason."""
    assert needle in str(refused(HEAD + program))


def test_composite_modules_show_torch_s_submodules(tmp_path: Path) -> None:
    """modules() / apply() reach an attention's out_proj and an encoder layer's linear1, norm1, ... (init loops over
    every nn.Linear touch them, as torch's); `layer.linear2.weight`, `enc.layers[0].self_attn(x, x, x)` and
    `for layer in enc.layers` are torch's submodules."""
    program = HEAD + """torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, 0.0), 2), nn.Linear(8, 1))
for m in model.modules():
    if isinstance(m, nn.Linear):
        nn.init.xavier_normal_(m.weight)
        nn.init.zeros_(m.bias)
enc = model[1]
for layer in enc.layers:
    nn.init.zeros_(layer.linear2.bias)
mha = nn.MultiheadAttention(8, 2)
mha.apply(lambda m: nn.init.normal_(m.weight, std=0.02) if isinstance(m, nn.Linear) else None)
x = torch.randn(5, 2, 4)
h = model(x)
_, maps = enc.layers[0].self_attn(h.expand(5, 2, 8), h.expand(5, 2, 8), h.expand(5, 2, 8))
out, _ = mha(h.expand(5, 2, 8), h.expand(5, 2, 8), h.expand(5, 2, 8))
loss = h.pow(2).mean() + maps.sum() + out.sum()
loss.backward()
names = [n for n, _ in model.named_modules()]
"""
    check(program, ["model", "mha", "h", "maps", "out", "loss"], tmp_path)
    torch_names = in_torch(program, tmp_path)["names"]
    assert "1.layers.0.self_attn.out_proj" in torch_names  # what the walk above visits, in torch
    t = traced(program)
    assert t.result.parameters["model.1.layers.1.linear2.bias"]  # a parameter of a submodule seen through parts


def test_a_layer_changed_before_it_is_stacked_is_copied_as_changed(tmp_path: Path) -> None:
    """torch's TransformerEncoder deep-copies the layer as it is then: an init of the layer's own parameters before
    stacking reaches every copy, one after does not."""
    program = HEAD + ("torch.manual_seed(0)\nlayer = nn.TransformerEncoderLayer(8, 2, 16, 0.0)\n"
                      "nn.init.zeros_(layer.linear2.weight)\nfor p in layer.parameters():\n    if p.dim() > 1:\n"
                      "        nn.init.xavier_uniform_(p)\nenc = nn.TransformerEncoder(layer, 2)\nnn.init.ones_(layer.norm1.weight)\n"
                      "x = torch.randn(3, 2, 8, requires_grad=True)\nloss = enc(x).pow(2).sum() + layer(x).sum()\nloss.backward()\n")
    check(program, ["layer", "enc", "x", "loss"], tmp_path)


@pytest.mark.parametrize("activation", ["nn.GELU()", "nn.ReLU()"])
def test_a_decoder_stack_runs_relu_where_torch_s_deepcopy_puts_it(activation: str, tmp_path: Path) -> None:
    """torch's TransformerDecoderLayer.__setstate__ gives each deep copy in a TransformerDecoder F.relu when the
    activation is a module: the stack's layers apply relu (the layer itself keeps GELU), as torch's numbers; a note
    says so when the module was not relu."""
    program = HEAD + (f"torch.manual_seed(0)\ndl = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.1, activation={activation})\n"
                      "dec = nn.TransformerDecoder(dl, 2)\ntgt = torch.randn(4, 2, 8, requires_grad=True)\n"
                      "mem = torch.randn(6, 2, 8, requires_grad=True)\ny = dec(tgt, mem) + dl(tgt, mem)\n"
                      "loss = y.pow(3).sum()\nloss.backward()\n")
    check(program, ["dl", "dec", "tgt", "mem", "y", "loss"], tmp_path)
    t = traced(program)
    assert {t.result.nodes[n].op for n in t.result.nodes if n.startswith("dec.layers.") and n.endswith(".activation")} == {"relu"}
    assert t.result.nodes["dl.activation"].op == ("gelu" if "GELU" in activation else "relu")
    assert any("runs F.relu instead" in n for n in t.result.notes) == ("GELU" in activation)


def test_nn_transformer_with_a_module_activation_is_refused() -> None:
    """nn.Transformer deep-copies its decoder layer too: its decoder would run F.relu, its encoder GELU (not traced)."""
    assert "runs F.relu instead" in str(refused(HEAD + "t = nn.Transformer(8, 2, 1, 1, 16, activation=nn.GELU())\n"))


def test_negative_scale_in_attention_with_dropout(tmp_path: Path) -> None:
    """torch's math scales k by sqrt|scale| and q by it with scale's sign (a negative scale ran into a math error)."""
    program = HEAD + ("torch.manual_seed(0)\nq = torch.randn(2, 3, 4, requires_grad=True)\n"
                      "y = F.scaled_dot_product_attention(q, q * 2, q, dropout_p=0.3, scale=-0.5)\nloss = y.sum()\nloss.backward()\n")
    check(program, ["q", "y", "loss"], tmp_path)


def test_parts_tie_and_keep_torch_s_class_names(tmp_path: Path) -> None:
    """A part's parameter assigned (`layer.linear2.weight = layer.linear1.weight`, `layers[1]...out_proj.weight = ...`)
    ties it as torch's; `type(m) is nn.Linear` is False for out_proj (a NonDynamicallyQuantizableLinear), isinstance
    True; train()/eval() of a part alone is refused."""
    program = HEAD + """torch.manual_seed(3)
layer = nn.TransformerEncoderLayer(8, 2, 8, 0.0)
layer.linear2.weight = layer.linear1.weight
enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, 0.0), 2)
enc.layers[1].self_attn.out_proj.weight = enc.layers[0].self_attn.out_proj.weight
for m in enc.modules():
    if type(m) is nn.Linear:
        nn.init.constant_(m.weight, 0.05)
    elif isinstance(m, nn.Linear):
        nn.init.zeros_(m.bias)
x = torch.randn(3, 2, 8)
ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))
loss = (layer(x).sin() + enc(x).cos()).sum() + ff.pow(2).sum()
loss.backward()
"""
    check(program, ["layer", "enc", "ff", "loss"], tmp_path)
    tied_init = HEAD + ("torch.manual_seed(4)\nlayer = nn.TransformerEncoderLayer(8, 2, 8, 0.0)\n"
                        "layer.linear2.weight = layer.linear1.weight\nfor p in layer.parameters():\n    if p.dim() > 1:\n"
                        "        nn.init.xavier_uniform_(p)\nx = torch.randn(3, 2, 8)\nloss = (layer(x).sin() * x).sum()\n"
                        "loss.backward()\n")
    check(tied_init, ["layer", "x", "loss"], tmp_path)  # parameters() lists the tied weight once: one draw
    assert "parameters are tied" in str(refused(tied_init.replace("for p in", "enc = nn.TransformerEncoder(layer, 2)\nfor p in")))
    e = refused(HEAD + "layer = nn.TransformerEncoderLayer(8, 2, 16, 0.3)\nlayer.self_attn.eval()\ny = layer(torch.randn(5, 2, 8))\n")
    assert "train()/eval() of a transformer's submodule is not traced" in str(e)
