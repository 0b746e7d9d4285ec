"""nn.MultiheadAttention, nn.TransformerEncoderLayer and nn.TransformerEncoder as torch's Python forward computes them
(F.multi_head_attention_forward, TransformerEncoderLayer._sa_block / _ff_block): the masks merged as torch merges them,
and the attention torch runs: scaled_dot_product_attention; its math when dropout is on (the weights' dropout mask
drawn from torch's generator in program order); the explicit softmax of the scores when the weights are asked for. So
the numbers and the random draws are torch's, and every step of the attention is a node."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.compiler.layers import LAYERS, Call, Emitter, LayerDef, layer
from services.compiler.values import ModuleInst
from services.ir import Leaf
from shared.spec import (
    DropoutLayer,
    LayerNormLayer,
    LinearLayer,
    SelfAttentionLayer,
    TransformerBlockLayer,
    TransformerDecoderBlockLayer,
    TransformerDecoderStackLayer,
    TransformerEncoderStackLayer,
    TransformerLayer,
)


@dataclass
class Masks:
    """What an attention call gives besides its tensors: masks (node names), the causal hint, weights wanted."""

    attn_mask: str | None = None
    key_padding_mask: str | None = None
    is_causal: bool = False
    need_weights: bool = False
    average_attn_weights: bool = True
    hint: bool = True
    """is_causal as torch's calls take it: a hint about attn_mask, which must then be given (a model spec's causal
    flag is no hint: hint False)."""


def float_mask(e: Emitter, name: str, mask: str, what: str) -> str:
    """torch's _canonical_mask: a bool mask (True: not attended) as 0 / -inf in the input's dtype; a float one as is."""
    dtype = e.builder.dtypes[mask]
    if dtype == "bool":
        return e.node(e.unique(name), "where", [mask, float("-inf"), 0.0], expr=f"{mask} as 0 / -inf")
    if dtype not in ("float32", "float64"):
        raise e.error(f"only bool and floating types of {what} are supported, got {dtype}")
    return mask


def causal_mask(e: Emitter, name: str, rows: int, cols: int) -> str:
    """The (L, S) float mask torch's math builds for is_causal: 0 on and below the diagonal, -inf above."""
    value = np.triu(np.full((rows, cols), -np.inf), 1).astype(e.dtype)
    leaf = Leaf(e.unique(name), (rows, cols), e.dtype, False, init="causal mask (-inf above the diagonal)", value=value)
    e.builder.add_leaf(leaf, e.loc)
    return leaf.name


def attention(e: Emitter, p: str, q: str, k: str, v: str, mask: str | None, causal: bool, dropout: float,
              scale: float | None = None, out: str | None = None) -> str:
    """scaled_dot_product_attention(q, k, v, mask, dropout, causal). Without dropout: one node (torch's kernel).
    With dropout: torch's math, node by node: q and k each scaled by sqrt(scale), their product, the mask added,
    softmax, the dropout mask drawn, times v (the same numbers, bit for bit, as torch's CPU SDPA)."""
    name = out or e.unique(f"{p}.attn")
    if dropout == 0:
        args = {"is_causal": causal} | ({"scale": scale} if scale is not None else {})
        return e.node(name, "scaled_dot_product_attention", [q, k, v, *([mask] if mask else [])], args)
    d = e.shape(q)[-1]
    s = scale if scale is not None else 1 / math.sqrt(d)
    root = math.sqrt(abs(s))  # torch's math: k times sqrt|scale|, q times it with scale's sign
    qs = e.node(e.unique(f"{p}.q_scaled"), "mul", [q, -root if s < 0 else root])
    kt = e.node(e.unique(f"{p}.k_t"), "transpose", [e.node(e.unique(f"{p}.k_scaled"), "mul", [k, root])], {"dim0": -2, "dim1": -1})
    scores = e.node(e.unique(f"{p}.scores"), "matmul", [qs, kt])
    if causal:
        mask = causal_mask(e, f"{p}.causal_mask", e.shape(q)[-2], e.shape(k)[-2])
    if mask:
        scores = e.node(e.unique(f"{p}.scores_masked"), "add", [scores, mask])
    weights = e.node(e.unique(f"{p}.weights"), "safe_softmax", [scores], {"dim": -1})
    drop = e.dropout_mask(f"{p}.dropout_mask", weights, dropout)
    weights = e.node(e.unique(f"{p}.weights_dropped"), "dropout", [weights, drop], {"p": dropout})
    return e.node(name, "matmul", [weights, v])


def multi_head_attention(e: Emitter, c: SelfAttentionLayer, call: Call, query: str, key: str, value: str,
                         m: Masks) -> tuple[str, str | None]:
    """F.multi_head_attention_forward: (output, weights averaged over heads or per head; None unless asked for)."""
    params, p = call.params, call.prefix
    E, H = c.embed_dim, c.num_heads
    qs, ks, vs = e.shape(query), e.shape(key), e.shape(value)
    if len(qs) not in (2, 3) or qs[-1] != E:
        raise e.error(f"nn.MultiheadAttention expects a query (L, {E}) or batched (L, N, {E}) / (N, L, {E}), got {list(qs)}")
    if len(ks) != len(qs) or ks != vs or ks[-1] != E or len(qs) == 3 and ks[1 - c.batch_first] != qs[1 - c.batch_first]:
        raise e.error(f"nn.MultiheadAttention: key {list(ks)} and value {list(vs)} must have one shape, the query's "
                      f"batch and embedding size {E} (query {list(qs)})")
    if E % H:
        raise e.error(f"embed_dim {E} is not divisible by num_heads {H}")
    batched = len(qs) == 3
    seen: dict[str, str] = {}

    def seq_first(x: str) -> str:  # torch runs on (L, N, E): batch_first inputs transposed, unbatched ones (L, 1, E)
        if batched and not c.batch_first:
            return x
        if not batched:  # torch unsqueezes query, key and value apart: three objects, so three projections
            return e.node(e.unique(f"{p}.batch_of_one"), "unsqueeze", [x], {"dim": 1}, expr=f"{x}.unsqueeze(1)")
        if x not in seen:
            seen[x] = e.node(e.unique(f"{p}.seq_first"), "transpose", [x], {"dim0": 0, "dim1": 1}, expr=f"{x}.transpose(1, 0)") \
                if batched else e.node(e.unique(f"{p}.batch_of_one"), "unsqueeze", [x], {"dim": 1}, expr=f"{x}.unsqueeze(1)")
        return seen[x]

    xq, xk, xv = seq_first(query), seq_first(key), seq_first(value)
    L, S, d = e.shape(xq)[0], e.shape(xk)[0], E // H
    N = e.shape(xq)[1]
    proj = _in_projection(e, p, params, xq, xk, xv, E)
    heads = []
    for n, t, length in zip("qkv", proj, (L, S, S), strict=True):  # (L, N, E) -> (N, H, L, d)
        t = e.node(e.unique(f"{p}.{n}.view"), "reshape", [t], {"shape": [length, N, H, d]})
        heads.append(e.node(e.unique(f"{p}.{n}.heads"), "permute", [t], {"dims": [1, 2, 0, 3]}))
    mask, causal = _merged_mask(e, p, m, batched, N, H, L, S)
    dropout = c.dropout if call.training else 0.0
    weights = None
    if m.need_weights:  # torch's explicit path: q / sqrt(d), the scores (+ mask), softmax, dropout, times v
        q = e.node(e.unique(f"{p}.q_scaled"), "mul", [heads[0], math.sqrt(1.0 / d)])
        kt = e.node(e.unique(f"{p}.k_t"), "transpose", [heads[1]], {"dim0": -2, "dim1": -1})
        scores = e.node(e.unique(f"{p}.scores"), "matmul", [q, kt])
        if mask:
            scores = e.node(e.unique(f"{p}.scores_masked"), "add", [mask, scores])
        named = call.states.get("weights") if batched else None  # the program's name for the weights torch returns
        last = named if named and not m.average_attn_weights else None
        weights = e.node(last if last and not dropout else e.unique(f"{p}.weights"), "softmax", [scores], {"dim": -1})
        if dropout:
            drop = e.dropout_mask(f"{p}.dropout_mask", weights, dropout)
            weights = e.node(last or e.unique(f"{p}.weights_dropped"), "dropout", [weights, drop], {"p": dropout})
        a = e.node(e.unique(f"{p}.attn"), "matmul", [weights, heads[2]])
        if m.average_attn_weights:
            weights = e.node(named or e.unique(f"{p}.attn_weights"), "mean", [weights], {"dim": -3})
    else:
        a = attention(e, p, *heads, mask, causal, dropout)
    a = e.node(e.unique(f"{p}.merge"), "permute", [a], {"dims": [2, 0, 1, 3]})  # back to (L, N, H, d), then (L, N, E)
    a = e.node(e.unique(f"{p}.concat"), "reshape", [a], {"shape": [L, N, E]})
    wo = [params["out_proj.weight"]] + ([params["out_proj.bias"]] if "out_proj.bias" in params else [])
    if batched and not c.batch_first:
        return e.node(call.out, "linear", [a, *wo], expr=f"out_proj({a})"), weights
    a = e.node(e.unique(f"{p}.out_proj"), "linear", [a, *wo], expr=f"out_proj({a})")
    if batched:  # torch returns the transpose of its (L, N, E) result (its memory stays so)
        return e.node(call.out, "transpose", [a], {"dim0": 1, "dim1": 0}, expr=f"{a}.transpose(1, 0)"), weights
    if weights is not None:  # the weights of the batch of one
        weights = e.node(call.states.get("weights") or e.unique(f"{p}.attn_weights"), "squeeze", [weights], {"dim": 0})
    return e.node(call.out, "squeeze", [a], {"dim": 1}, expr=f"{a}.squeeze(1)"), weights


def _in_projection(e: Emitter, p: str, params: dict[str, str], xq: str, xk: str, xv: str, E: int) -> list[str]:
    """q, k, v as torch's _in_projection_packed makes them, op for op (the same GEMMs round alike on every CPU):
    self-attention one linear over the packed weight, cross-attention with key is value one for q and one for k and
    v, each packed result unflattened, moved to the front and made contiguous, then selected; else three linears."""
    w, b = params["in_proj_weight"], params.get("in_proj_bias")

    def linear(n: str, x: str, wi: str, bi: str | None) -> str:
        return e.node(e.unique(f"{p}.{n}"), "linear", [x, wi, *([bi] if bi else [])], expr=f"{n}_proj({x})")

    def unpacked(packed: str, names: str) -> list[str]:  # proj.unflatten(-1, (n, E)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()
        shape = e.shape(packed)
        t = e.node(e.unique(f"{packed}.unflatten"), "reshape", [packed], {"shape": [*shape[:-1], len(names), E]})
        t = e.node(e.unique(f"{packed}.unsqueeze"), "unsqueeze", [t], {"dim": 0})
        t = e.node(e.unique(f"{packed}.transpose"), "transpose", [t], {"dim0": 0, "dim1": -2})
        t = e.node(e.unique(f"{packed}.squeeze"), "squeeze", [t], {"dim": -2})
        t = e.node(e.unique(f"{packed}.contiguous"), "clone", [t], {"memory_format": "contiguous"}, expr=f"{packed}...contiguous()")
        return [e.node(e.unique(f"{p}.{n}"), "getitem", [t], {"index": [i]}, expr=f"{packed}[{i}]") for i, n in enumerate(names)]

    if xk == xv and xq == xk:
        return unpacked(linear("qkv", xq, w, b), "qkv")
    if xk == xv:
        ws = [e.node(e.unique(f"{p}.{n}"), "split", [w], {"split_size_or_sections": [E, 2 * E], "dim": 0, "index": i})
              for i, n in enumerate(("w_q", "w_kv"))]
        bs = [e.node(e.unique(f"{p}.{n}"), "split", [b], {"split_size_or_sections": [E, 2 * E], "dim": 0, "index": i})
              for i, n in enumerate(("b_q", "b_kv"))] if b else [None, None]
        return [linear("q", xq, ws[0], bs[0]), *unpacked(linear("kv", xk, ws[1], bs[1]), "kv")]
    out = []
    for i, (n, x) in enumerate(zip("qkv", (xq, xk, xv), strict=True)):
        wi = e.node(e.unique(f"{p}.w_{n}"), "chunk", [w], {"chunks": 3, "dim": 0, "index": i})
        bi = e.node(e.unique(f"{p}.b_{n}"), "chunk", [b], {"chunks": 3, "dim": 0, "index": i}) if b else None
        out.append(linear(n, x, wi, bi))
    return out


def _merged_mask(e: Emitter, p: str, m: Masks, batched: bool, N: int, H: int, L: int, S: int) -> tuple[str | None, bool]:
    """The additive mask torch's MHA gives the attention (attn_mask, plus key_padding_mask over the keys), and whether
    the causal kernel runs instead (is_causal with no padding mask and no weights: torch then drops attn_mask)."""
    if m.is_causal and m.hint and m.attn_mask is None:
        raise e.error("Need attn_mask if specifying the is_causal hint. You may use the Transformer module method "
                      "`generate_square_subsequent_mask` to create this mask.")
    pad = None
    if m.key_padding_mask is not None:
        want = [N, S] if batched else [S]
        if list(e.shape(m.key_padding_mask)) != want:
            raise e.error(f"key_padding_mask must be {want} (batch, keys), got {list(e.shape(m.key_padding_mask))}")
        pad = float_mask(e, f"{p}.key_padding_mask", m.key_padding_mask, "key_padding_mask")
        pad = e.node(e.unique(f"{p}.key_padding_mask.view"), "reshape", [pad], {"shape": [N, 1, 1, S]})
    if m.is_causal and pad is None and not m.need_weights:
        return None, True
    mask = None
    if m.attn_mask is not None:
        shape = list(e.shape(m.attn_mask))
        if shape not in ([L, S], [N * H, L, S]):
            raise e.error(f"attn_mask must be [{L}, {S}] (query, key) or [{N * H}, {L}, {S}] (batch * num_heads, "
                          f"query, key), got {shape}")
        mask = float_mask(e, f"{p}.attn_mask", m.attn_mask, "attn_mask")
        if len(shape) == 3:
            mask = e.node(e.unique(f"{p}.attn_mask.view"), "reshape", [mask], {"shape": [N, H, L, S]})
    if pad is not None:
        mask = pad if mask is None else e.node(e.unique(f"{p}.mask"), "add", [mask, pad])
    return mask, False


def _self_attention(e: Emitter, call: Call) -> str:
    """A program's nn.MultiheadAttention call (its tensors and masks in call.options; the weights, when asked for, in
    call.states['weights']) and a model spec's self_attention (x, x, x; causal: true for torch's causal kernel)."""
    c: SelfAttentionLayer = call.cfg
    tensors = call.options.get("tensors") or [call.inputs[0]] * 3
    m = call.options.get("masks") or Masks(is_causal=c.causal, hint=False)
    out, weights = multi_head_attention(e, c, call, *tensors, m)
    if weights is not None:
        call.states["weights"] = weights
    return out


layer(LayerDef(
    "self_attention", "MultiheadAttention", SelfAttentionLayer, _self_attention,
    lambda c: _attn_params("", c.embed_dim, c.bias),
    torch_kwargs=lambda c: {"embed_dim": c.embed_dim, "num_heads": c.num_heads, "dropout": c.dropout, "bias": c.bias,
                            "batch_first": c.batch_first},
))


# ---- nn.TransformerEncoderLayer / DecoderLayer, their stacks and nn.Transformer -----------------------------------


Params = list[tuple[str, tuple[int, ...]]]


def _weight_bias(prefix: str, weight: tuple[int, ...], bias: bool) -> Params:
    """`prefix`weight and (with bias) `prefix`bias, a Linear's or a LayerNorm's."""
    return [(f"{prefix}weight", weight)] + ([(f"{prefix}bias", weight[:1])] if bias else [])


def _attn_params(prefix: str, d: int, bias: bool) -> Params:
    """nn.MultiheadAttention's parameters under `prefix` ('' or 'self_attn.')."""
    out: Params = [(f"{prefix}in_proj_weight", (3 * d, d))] + ([(f"{prefix}in_proj_bias", (3 * d,))] if bias else [])
    return out + _weight_bias(f"{prefix}out_proj.", (d, d), bias)


def _stacked(prefix: str, n: int, each: Params) -> Params:
    """n copies' parameters: `prefix`layers.0.*, layers.1.*, ..."""
    return [(f"{prefix}layers.{k}.{a}", s) for k in range(n) for a, s in each]


def _attn_cfg(c: TransformerBlockLayer | TransformerLayer) -> SelfAttentionLayer:
    """A transformer layer's self_attn / multihead_attn."""
    return SelfAttentionLayer(type="self_attention", embed_dim=c.d_model, num_heads=c.nhead, dropout=c.dropout, bias=c.bias,
                              batch_first=c.batch_first)


def _norm_cfg(c: TransformerBlockLayer | TransformerLayer) -> LayerNormLayer:
    return LayerNormLayer(type="layer_norm", normalized_shape=c.d_model, eps=c.layer_norm_eps, bias=c.bias)


def _block_params(c: TransformerBlockLayer | TransformerLayer, decoder: bool = False) -> Params:
    """nn.TransformerEncoderLayer's (DecoderLayer's) parameters in its registration order."""
    d, f, b = c.d_model, c.dim_feedforward, c.bias
    out = _attn_params("self_attn.", d, b) + (_attn_params("multihead_attn.", d, b) if decoder else [])
    out += _weight_bias("linear1.", (f, d), b) + _weight_bias("linear2.", (d, f), b)
    for n in ("norm1", "norm2", "norm3")[: 3 if decoder else 2]:
        out += _weight_bias(f"{n}.", (d,), b)
    return out


def _block_kwargs(c: TransformerBlockLayer | TransformerLayer) -> dict[str, object]:
    return {"d_model": c.d_model, "nhead": c.nhead, "dim_feedforward": c.dim_feedforward, "dropout": c.dropout,
            "activation": c.activation, "layer_norm_eps": c.layer_norm_eps, "batch_first": c.batch_first,
            "norm_first": c.norm_first, "bias": c.bias}


@dataclass
class _Block:
    """One encoder or decoder layer's call: its config, parameters (attr -> leaf) and node prefix."""

    e: Emitter
    c: TransformerBlockLayer | TransformerLayer
    call: Call
    p: str
    params: dict[str, str]

    def check(self, x: str, what: str) -> None:
        if len(self.e.shape(x)) not in (2, 3) or self.e.shape(x)[-1] != self.c.d_model:
            raise self.e.error(f"{what}(d_model={self.c.d_model}) expects (L, {self.c.d_model}) or batched input, "
                               f"got {list(self.e.shape(x))}")

    def norm(self, n: str, t: str, name: str | None = None) -> str:
        ps = [self.params[f"{n}.weight"]] + ([self.params[f"{n}.bias"]] if self.c.bias else [])
        return self.e.node(name or self.e.unique(f"{self.p}.{n}"), "layer_norm", [t, *ps],
                           {"normalized_shape": [self.c.d_model], "eps": self.c.layer_norm_eps})

    def dropout(self, n: str, t: str) -> str:
        drop = self.c.dropout if self.call.training else 0.0
        if not drop:
            return t
        mask = self.e.dropout_mask(f"{self.p}.{n}.mask", t, drop)
        return self.e.node(self.e.unique(f"{self.p}.{n}"), "dropout", [t, mask], {"p": drop})

    def linear(self, n: str, t: str) -> str:
        ps = [self.params[f"{n}.weight"]] + ([self.params[f"{n}.bias"]] if self.c.bias else [])
        return self.e.node(self.e.unique(f"{self.p}.{n}"), "linear", [t, *ps])

    def attend(self, n: str, q: str, m: Masks, drop: str, kv: str | None = None) -> str:
        """self_attn(q, q, q) or multihead_attn(q, kv, kv), need_weights=False, then its dropout."""
        c = self.c
        cfg = _attn_cfg(c)
        sub = _under(self.params, f"{n}.")
        a = Call(cfg, sub, [q], self.e.unique(f"{self.p}.{n}.out"), f"{self.p}.{n}", self.call.training)
        return self.dropout(drop, multi_head_attention(self.e, cfg, a, q, kv or q, kv or q, m)[0])

    def ff(self, t: str, drop: str) -> str:
        h = self.e.node(self.e.unique(f"{self.p}.activation"), self.c.activation, [self.linear("linear1", t)])
        return self.dropout(drop, self.linear("linear2", self.dropout("dropout", h)))

    def residual(self, k: int, x: str, y: str, out: str | None = None) -> str:
        return self.e.node(out or self.e.unique(f"{self.p}.residual{k}"), "add", [x, y])


def _encoder_block(b: _Block, x: str, m: Masks, out: str) -> str:
    """TransformerEncoderLayer: x = norm1(x + sa(x)); x = norm2(x + ff(x)) (norm_first: x + sa(norm1(x)), then
    x + ff(norm2(x))), dropout after the attention, inside and after the feed-forward block."""
    b.check(x, "nn.TransformerEncoderLayer")
    if b.c.norm_first:
        x = b.residual(1, x, b.attend("self_attn", b.norm("norm1", x), m, "dropout1"))
        return b.residual(2, x, b.ff(b.norm("norm2", x), "dropout2"), out)
    x = b.norm("norm1", b.residual(1, x, b.attend("self_attn", x, m, "dropout1")))
    return b.norm("norm2", b.residual(2, x, b.ff(x, "dropout2")), out)


def _decoder_block(b: _Block, x: str, memory: str, m: Masks, mm: Masks, out: str) -> str:
    """TransformerDecoderLayer: self-attention over the target (masks m), attention to the memory (masks mm), the
    feed-forward block; norm1-3 after each residual connection (norm_first: before each block)."""
    b.check(x, "nn.TransformerDecoderLayer")
    b.check(memory, "nn.TransformerDecoderLayer's memory")
    if b.c.norm_first:
        x = b.residual(1, x, b.attend("self_attn", b.norm("norm1", x), m, "dropout1"))
        h = b.norm("norm2", x)
        x = b.residual(2, x, b.attend("multihead_attn", h, mm, "dropout2", memory))
        return b.residual(3, x, b.ff(b.norm("norm3", x), "dropout3"), out)
    x = b.norm("norm1", b.residual(1, x, b.attend("self_attn", x, m, "dropout1")))
    x = b.norm("norm2", b.residual(2, x, b.attend("multihead_attn", x, mm, "dropout2", memory)))
    return b.norm("norm3", b.residual(3, x, b.ff(x, "dropout3")), out)


def _under(params: dict[str, str], prefix: str) -> dict[str, str]:
    """The parameters under `prefix` ('linear1.', 'layers.0.'), named relative to it."""
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def _options(call: Call, key: str, causal: bool) -> Masks:
    """The masks a program's call gives (call.options[key]), or a model spec's causal flag: torch's causal kernel."""
    m = call.options.get(key)
    return m if m is not None else Masks(is_causal=causal, hint=False)


def _stack(e: Emitter, call: Call, x: str, memory: str | None, n: int, prefix: str, attr: str, out: str,
           m: Masks, mm: Masks) -> str:
    """Each layer in turn (prefix.layers.0, ...), the masks given to every one; parameters under attr ('layers.0.')."""
    for k in range(n):
        p = f"{prefix}.layers.{k}"
        params = _under(call.params, f"{attr}layers.{k}.")
        b = _Block(e, call.cfg, call, p, params)
        last = out if k == n - 1 else e.unique(f"{p}.out")
        x = _encoder_block(b, x, m, last) if memory is None else _decoder_block(b, x, memory, m, mm, last)
    return x


def _encoder_layer(e: Emitter, call: Call) -> str:
    return _encoder_block(_Block(e, call.cfg, call, call.prefix, call.params), call.inputs[0],
                          _options(call, "masks", call.cfg.causal), call.out)


def _decoder_layer(e: Emitter, call: Call) -> str:
    tgt, memory = call.inputs
    return _decoder_block(_Block(e, call.cfg, call, call.prefix, call.params), tgt, memory,
                          _options(call, "masks", call.cfg.causal), _options(call, "memory", False), call.out)


def _encoder(e: Emitter, call: Call) -> str:
    c: TransformerEncoderStackLayer = call.cfg
    return _stack(e, call, call.inputs[0], None, c.num_layers, call.prefix, "", call.out, _options(call, "masks", c.causal), Masks())


def _decoder(e: Emitter, call: Call) -> str:
    c: TransformerDecoderStackLayer = call.cfg
    tgt, memory = call.inputs
    return _stack(e, call, tgt, memory, c.num_layers, call.prefix, "", call.out, _options(call, "masks", c.causal),
                  _options(call, "memory", False))


def _transformer(e: Emitter, call: Call) -> str:
    """nn.Transformer: memory = encoder.norm(encoder(src)); out = decoder.norm(decoder(tgt, memory))."""
    c: TransformerLayer = call.cfg
    src, tgt = call.inputs
    p = call.prefix
    for x, what in ((src, "src"), (tgt, "tgt")):
        if len(e.shape(x)) not in (2, 3) or e.shape(x)[-1] != c.d_model:
            raise e.error(f"the feature number of src and tgt must be equal to d_model ({c.d_model}): {what} is {list(e.shape(x))}")
    batch = 0 if c.batch_first else 1
    if len(e.shape(src)) == 3 and len(e.shape(tgt)) == 3 and e.shape(src)[batch] != e.shape(tgt)[batch]:
        raise e.error(f"the batch number of src and tgt must be equal: {list(e.shape(src))} and {list(e.shape(tgt))}")
    h = _stack(e, call, src, None, c.num_encoder_layers, f"{p}.encoder", "encoder.", e.unique(f"{p}.encoder.out"),
               _options(call, "src", False), Masks())
    memory = _Block(e, c, call, f"{p}.encoder", _under(call.params, "encoder.")).norm("norm", h, e.unique(f"{p}.memory"))
    h = _stack(e, call, tgt, memory, c.num_decoder_layers, f"{p}.decoder", "decoder.", e.unique(f"{p}.decoder.out"),
               _options(call, "masks", c.causal), _options(call, "memory", False))
    return _Block(e, c, call, f"{p}.decoder", _under(call.params, "decoder.")).norm("norm", h, call.out)


def _transformer_params(c: TransformerLayer) -> Params:
    """nn.Transformer's state_dict order: encoder layers, encoder norm, decoder layers, decoder norm."""
    return (_stacked("encoder.", c.num_encoder_layers, _block_params(c)) + _weight_bias("encoder.norm.", (c.d_model,), c.bias)
            + _stacked("decoder.", c.num_decoder_layers, _block_params(c, True))
            + _weight_bias("decoder.norm.", (c.d_model,), c.bias))


layer(LayerDef("transformer_encoder_layer", "TransformerEncoderLayer", TransformerBlockLayer, _encoder_layer, _block_params,
               torch_kwargs=_block_kwargs))
layer(LayerDef("transformer_decoder_layer", "TransformerDecoderLayer", TransformerDecoderBlockLayer, _decoder_layer,
               lambda c: _block_params(c, True), torch_kwargs=_block_kwargs, min_inputs=2, max_inputs=2))
layer(LayerDef(
    "transformer_encoder", "TransformerEncoder", TransformerEncoderStackLayer, _encoder,
    lambda c: _stacked("", c.num_layers, _block_params(c)),
    torch_kwargs=lambda c: {"layer": _block_kwargs(c), "num_layers": c.num_layers},
))
layer(LayerDef(
    "transformer_decoder", "TransformerDecoder", TransformerDecoderStackLayer, _decoder,
    lambda c: _stacked("", c.num_layers, _block_params(c, True)),
    torch_kwargs=lambda c: {"layer": _block_kwargs(c), "num_layers": c.num_layers}, min_inputs=2, max_inputs=2,
))
layer(LayerDef(
    "transformer", "Transformer", TransformerLayer, _transformer, _transformer_params,
    torch_kwargs=lambda c: _block_kwargs(c) | {"num_encoder_layers": c.num_encoder_layers,
                                              "num_decoder_layers": c.num_decoder_layers},
    min_inputs=2, max_inputs=2,
))


# ---- their submodules, as torch's modules() and attributes show them -------------------------------------------


def parts(m: ModuleInst) -> list[tuple[str, ModuleInst]]:
    """The submodules of a composite module (nn.MultiheadAttention's out_proj; an encoder layer's self_attn, linear1,
    dropout, linear2, norm1, ...; a stack's layers; nn.Transformer's encoder and decoder) in torch's registration
    order, each over the composite's own parameter leaves: modules(), apply() and `layer.linear1.weight` see torch's
    modules (an init of every nn.Linear reaches out_proj), and `enc.layers[0](x)` runs one layer. [] for others."""
    if m.parts is None:
        kind = m.layer.type if m.layer is not None else ""
        m.parts = _parts(kind, m.cfg, m.params, m.path or "", m.training) if kind in _COMPOSITE else []
    return m.parts


OUT_PROJ = LayerDef("linear", "NonDynamicallyQuantizableLinear", LinearLayer, LAYERS["linear"].emit, LAYERS["linear"].params)
"""nn.MultiheadAttention's out_proj: nn.Linear's nodes under torch's class name (not registered: not made by programs)."""

def synced(m: ModuleInst, modes: bool = True) -> dict[str, str]:
    """The composite's parameters with what its parts hold now (`layer.linear2.weight = layer.linear1.weight` ties
    them, as in torch), and (`modes`) the training flags its parts were given: refused where they differ from the
    module's (a submodule's own train()/eval() is not traced)."""
    subs = [(name, part) for name, part in m.parts or []]
    subs += [(f"{name}.{k}", c) for name, part in subs if part.layer is None for k, c in enumerate(part.children)]
    for name, part in subs:  # parts, and a stack's layers (the children of its `layers` ModuleList)
        mode_free = part.layer is not None and part.layer.type in ("layer_norm", "linear")  # the same in both modes
        if modes and part.training != m.training and not mode_free:
            raise ValueError(f"'{part.path}' is in {'training' if part.training else 'eval'} mode and '{m.path}' is not: "
                             "train()/eval() of a transformer's submodule is not traced (call it on the whole module)")
        for attr, leaf in synced(part, modes).items() if part.layer is not None else ():
            m.params[f"{name}.{attr}"] = leaf
    return m.params


_COMPOSITE = {"self_attention", "transformer_encoder_layer", "transformer_decoder_layer", "transformer_encoder",
              "transformer_decoder", "transformer"}


def _sub(kind: str, cfg: Any, params: dict[str, str], prefix: str, path: str, training: bool,
         children: list[Any] | None = None, keys: list[str] | None = None) -> ModuleInst:
    """A submodule over the parameters under `prefix` ('linear1.'), named `path`."""
    return ModuleInst(LAYERS[kind], cfg, params=_under(params, prefix), path=path, training=training, children=children or [], keys=keys)


def _parts(kind: str, c: Any, params: dict[str, str], path: str, training: bool) -> list[tuple[str, ModuleInst]]:
    if kind == "self_attention":  # torch's out_proj is a NonDynamicallyQuantizableLinear (an nn.Linear)
        out = _sub("linear", LinearLayer(type="linear", in_features=c.embed_dim, out_features=c.embed_dim, bias=c.bias),
                   params, "out_proj.", f"{path}.out_proj", training)
        out.layer = OUT_PROJ
        return [("out_proj", out)]
    d, fields = c.d_model, {k: getattr(c, k) for k in TransformerBlockLayer.model_fields if k not in ("type", "name", "inputs", "weights")}
    if kind in ("transformer_encoder_layer", "transformer_decoder_layer"):
        decoder = kind == "transformer_decoder_layer"
        attn = _attn_cfg(c)
        linear = [LinearLayer(type="linear", in_features=a, out_features=b, bias=c.bias) for a, b in
                  ((d, c.dim_feedforward), (c.dim_feedforward, d))]
        norm = _norm_cfg(c)
        drop = DropoutLayer(type="dropout", p=c.dropout)
        spec: list[tuple[str, str, Any]] = [("self_attn", "self_attention", attn)]
        spec += [("multihead_attn", "self_attention", attn)] if decoder else []
        spec += [("linear1", "linear", linear[0]), ("dropout", "dropout", drop), ("linear2", "linear", linear[1])]
        spec += [(f"norm{k}", "layer_norm", norm) for k in range(1, 4 if decoder else 3)]
        spec += [(f"dropout{k}", "dropout", drop) for k in range(1, 4 if decoder else 3)]
        return [(n, _sub(k, cfg, params, f"{n}.", f"{path}.{n}", training)) for n, k, cfg in spec]
    if kind in ("transformer_encoder", "transformer_decoder"):
        layer_kind = kind + "_layer"
        cfg = LAYERS[layer_kind].schema.model_validate(fields | {"type": layer_kind})
        layers = [_sub(layer_kind, cfg, params, f"layers.{k}.", f"{path}.layers.{k}", training) for k in range(c.num_layers)]
        return [("layers", ModuleInst(None, None, children=layers, container="ModuleList", path=f"{path}.layers",
                                      training=training))]
    out = []  # nn.Transformer: its encoder and decoder, each with its norm
    for n, layers in (("encoder", c.num_encoder_layers), ("decoder", c.num_decoder_layers)):
        stack = LAYERS[f"transformer_{n}"].schema.model_validate(fields | {"type": f"transformer_{n}", "num_layers": layers})
        norm = _sub("layer_norm", _norm_cfg(c), params, f"{n}.norm.", f"{path}.{n}.norm", training)
        out.append((n, _sub(f"transformer_{n}", stack, params, f"{n}.", f"{path}.{n}", training, [norm], ["norm"])))
    return out
