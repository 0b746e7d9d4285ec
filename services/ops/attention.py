"""scaled_dot_product_attention, with an optional mask or causal masking.

softmax(q @ k^T * scale + bias) @ v, where bias is the float mask, or -inf where a bool mask (or the
causal mask) forbids attending. Like torch's math kernel (its _safe_softmax), a row whose scores are all
-inf attends to nothing: its weights, output and gradients are 0 rather than NaN."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, broadcast, register, unbroadcast
from services.strides import like


class AttentionArgs(BaseModel):
    """F.scaled_dot_product_attention's arguments; dropout_p must be 0."""

    model_config = ConfigDict(extra="forbid")
    dropout_p: float = 0.0
    is_causal: bool = False
    scale: float | None = None
    enable_gqa: bool = False
    """Grouped-query attention: key and value have fewer heads (dim -3) than query, each shared by a group of them."""


def groups(q: Shape, k: Shape, v: Shape, a: AttentionArgs) -> tuple[int, int]:
    """How many query heads share each key head and each value head ((1, 1) without enable_gqa), or ShapeError."""
    if not a.enable_gqa:
        return 1, 1
    if min(len(q), len(k), len(v)) < 3 or not k[-3] or not v[-3] or q[-3] % k[-3] or q[-3] % v[-3]:
        raise ShapeError(f"scaled_dot_product_attention: enable_gqa needs heads in dim -3, the query's a multiple of the "
                         f"key's and of the value's, got {list(q)}, {list(k)}, {list(v)}")
    return q[-3] // k[-3], q[-3] // v[-3]


def repeated(x: Array, n: int) -> Array:
    """Each head (dim -3) repeated n times in a row, as torch's repeat_interleave for enable_gqa."""
    return x if n == 1 else np.repeat(x, n, axis=-3)


def grouped_sum(g: Array, n: int) -> Array:
    """The gradient of `repeated`: each group of n heads summed back into its one."""
    return g if n == 1 else g.reshape(*g.shape[:-3], g.shape[-3] // n, n, *g.shape[-2:]).sum(axis=-3)


def scores_shape(shapes: list[Shape]) -> Shape:
    """(batch..., L, S) of q @ k^T, batch dims of query and key broadcast."""
    q, k = shapes[0], shapes[1]
    return broadcast(q[:-2], k[:-2]) + (q[-2], k[-2])


def safe_softmax(s: Array) -> Array:
    """Softmax over the last axis, stable; a row of all -inf gives zeros (torch's _safe_softmax)."""
    if s.shape[-1] == 0:
        return s.copy()
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isneginf(m), 0.0, m)
    e = np.exp(s - m)
    total = e.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = e / total
    return np.where(np.isneginf(s).all(axis=-1, keepdims=True), 0.0, p)


@register
class ScaledDotProductAttention(Op):
    """softmax(query @ key^T * scale + mask) @ value over (..., L, E), (..., S, E), (..., S, Ev), batch dims
    broadcast. attn_mask: bool (True may attend) or float (added), broadcastable to the scores (..., L, S).
    dropout_p must be 0 (a trace is deterministic); enable_gqa shares each key/value head among a group of query heads."""

    name = "scaled_dot_product_attention"
    tensors = ("query", "key", "value", "attn_mask")
    min_inputs = 3
    Args = AttentionArgs
    positional = ("dropout_p", "is_causal")
    functions = ("F.scaled_dot_product_attention",)

    def shape(self, shapes: list[Shape], a: AttentionArgs) -> Shape:
        if a.dropout_p != 0:
            raise ShapeError(
                f"scaled_dot_product_attention: dropout_p={a.dropout_p} is random and a trace must be deterministic; "
                "apply dropout explicitly (e.g. multiply by a fixed mask) and pass dropout_p=0"
            )
        q, k, v = shapes[:3]
        if min(len(q), len(k), len(v)) < 2:
            raise ShapeError(f"scaled_dot_product_attention: query, key and value must be at least 2-D, got {list(q)}, {list(k)}, {list(v)}")
        if a.enable_gqa and groups(q, k, v, a) != (1, 1):  # the key and value as torch repeats them
            k, v = k[:-3] + (q[-3],) + k[-2:], v[:-3] + (q[-3],) + v[-2:]
            shapes = [q, k, v, *shapes[3:]]
        if k[-1] != q[-1]:
            raise ShapeError(f"scaled_dot_product_attention: key's last dim {k[-1]} differs from query's embedding size {q[-1]}")
        if v[-2] != k[-2]:
            raise ShapeError(f"scaled_dot_product_attention: value has {v[-2]} positions (dim -2), key has {k[-2]}")
        if a.is_causal and a.scale is not None and a.scale <= 0:
            raise ShapeError(
                f"scaled_dot_product_attention: is_causal with scale={a.scale} is not supported: torch's CPU flash kernel "
                "masks before scaling (-inf * scale is NaN or +inf), so the result depends on which kernel torch picks; "
                "give the causal mask as attn_mask instead (bool, or float 0 and -inf)"
            )
        scores = scores_shape(shapes)
        out_batch = broadcast(scores[:-2], v[:-2])
        if len(shapes) == 4:
            if a.is_causal:
                raise ShapeError("scaled_dot_product_attention: attn_mask must not be given with is_causal=True")
            m = shapes[3]
            if len(m) > len(scores) or broadcast(scores, m) != scores:
                raise ShapeError(
                    f"scaled_dot_product_attention: attn_mask {list(m)} does not broadcast to the scores' shape {list(scores)} (..., L, S)"
                )
        return out_batch + (q[-2], v[-1])

    def dtype(self, dtypes: list[str]) -> str:
        q = dtypes[0]
        if q not in ("float32", "float64") or dtypes[1] != q or dtypes[2] != q:
            raise ShapeError(f"scaled_dot_product_attention: query, key and value must share one floating dtype, got {dtypes[:3]}")
        if len(dtypes) == 4 and dtypes[3] not in ("bool", q):
            raise ShapeError(f"scaled_dot_product_attention: attn_mask must be bool or {q} like query, got {dtypes[3]}")
        return q

    def out_strides(self, shapes: list[Shape], strides: list[tuple[int, ...]], a: AttentionArgs) -> tuple[int, ...] | None:
        """torch's CPU flash kernel (4-D query, key and value of one batch and head count, each with a last stride
        of exactly 1; no attn_mask here, is_causal allowed) gives its result the query's layout (nanoGPT's
        `q.transpose(1, 2)` makes (B, T, H, D) memory, so `y.transpose(1, 2).contiguous()` copies nothing); the math
        path's result is row-major. With an attn_mask torch picks its kernel by the mask's shape and grad: row-major
        assumed (not modelled)."""
        q, k, v = shapes[:3]
        heads = q[1] % k[1] == 0 if a.enable_gqa and len(k) == 4 and k[1] else q[1] == k[1]
        flash = (len(shapes) == 3 and len(q) == len(k) == len(v) == 4 and q[0] == k[0] == v[0] and k[1] == v[1] and heads
                 and q[-1] == v[-1] and all(st[-1] == 1 for st in strides[:3]))
        return like(q, strides[0]) if flash else None

    def torch(self, t: Any, xs: list[Any], a: AttentionArgs) -> Any:
        mask = xs[3] if len(xs) == 4 else None
        return t.nn.functional.scaled_dot_product_attention(
            xs[0], xs[1], xs[2], attn_mask=mask, dropout_p=0.0, is_causal=a.is_causal, scale=a.scale,
            **({"enable_gqa": True} if a.enable_gqa else {}),
        )

    def _weights(self, xs: list[Array], a: AttentionArgs) -> tuple[Array, float]:
        """The attention weights (batch..., L, S) in float64 and the scale used."""
        n, _ = groups(xs[0].shape, xs[1].shape, xs[2].shape, a)
        q, k = xs[0].astype(np.float64), repeated(xs[1].astype(np.float64), n)
        scale = a.scale if a.scale is not None else 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else math.inf
        s = q @ np.swapaxes(k, -1, -2)
        if q.shape[-1]:  # with E = 0 every score is an empty dot product, 0 whatever the scale (as in torch)
            s = s * scale
        L, S = s.shape[-2:]
        if a.is_causal:
            s = np.where(np.tri(L, S, dtype=bool), s, -np.inf)
        if len(xs) == 4:
            m = xs[3]
            s = np.where(m, s, -np.inf) if m.dtype == np.bool_ else s + m.astype(np.float64)
        return safe_softmax(s), scale

    def forward(self, xs: list[Array], a: AttentionArgs) -> Array:
        p, _ = self._weights(xs, a)
        _, n = groups(xs[0].shape, xs[1].shape, xs[2].shape, a)
        return (p @ repeated(xs[2].astype(np.float64), n)).astype(xs[0].dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: AttentionArgs) -> list[Array | None]:
        nk, nv = groups(xs[0].shape, xs[1].shape, xs[2].shape, a)
        q, k, v = (repeated(x.astype(np.float64), n) for x, n in zip(xs[:3], (1, nk, nv), strict=True))
        p, scale = self._weights(xs, a)
        g64 = g.astype(np.float64)
        gv = np.swapaxes(p, -1, -2) @ g64
        gp = unbroadcast(g64 @ np.swapaxes(v, -1, -2), p.shape)
        gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True))  # softmax backward; 0 where p is 0
        gq = (gs @ k) * scale
        gk = (np.swapaxes(gs, -1, -2) @ q) * scale
        grads: list[Array | None] = [unbroadcast(gq, q.shape), grouped_sum(unbroadcast(gk, k.shape), nk),
                                     grouped_sum(unbroadcast(gv, v.shape), nv)]
        if len(xs) == 4:
            m = xs[3]
            grads.append(None if m.dtype == np.bool_ else unbroadcast(gs, m.shape).reshape(m.shape))
        return [None if gi is None else gi.astype(x.dtype) for gi, x in zip(grads, xs, strict=True)]
