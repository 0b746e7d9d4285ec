"""conv2d as cross-correlation over strided window views, vectorised as matrix products.

Forward and both gradients are correlations, each one matrix product over the windows
(im2col): the weight gradient is the correlation of the input with the output gradient, and
the input gradient is the full correlation of the (stride-dilated) output gradient with the
flipped kernel."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, pair, register

IntPair = int | tuple[int, int]


def windows(x: Array, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int]) -> Array:
    """A read-only view (N, C, OH, OW, KH, KW) of every kernel window of x (N, C, H, W)."""
    n, c, h, w = x.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (w - dw * (kw - 1) - 1) // sw + 1
    s0, s1, s2, s3 = x.strides
    return as_strided(x, (n, c, oh, ow, kh, kw), (s0, s1, s2 * sh, s3 * sw, s2 * dh, s3 * dw), writeable=False)


def columns(
    x: Array, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int], groups: int
) -> tuple[Array, int, int]:
    """im2col, one strided slice copy per kernel offset (never a loop over pixels):
    (G, KH*KW*C/G, N*OH*OW) with OH, OW; row (k, l, c) holds x[n, c, i*s + k*d, j*s + l*d]."""
    n, c, h, wd = x.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (wd - dw * (kw - 1) - 1) // sw + 1
    cg = c // groups
    xg = x.reshape(n, groups, cg, h, wd).transpose(1, 2, 0, 3, 4)  # (G, C/G, N, H, W), a view
    cols = np.empty((groups, kh, kw, cg, n, oh, ow), dtype=x.dtype)
    for k in range(kh):
        for m in range(kw):
            cols[:, k, m] = xg[..., k * dh : k * dh + sh * (oh - 1) + 1 : sh, m * dw : m * dw + sw * (ow - 1) + 1 : sw]
    return cols.reshape(groups, kh * kw * cg, n * oh * ow), oh, ow


def _kernel_rows(w: Array, groups: int) -> Array:
    """The kernel as (G, O/G, KH*KW*C/G), rows ordered like `columns`."""
    o, cg, kh, kw = w.shape
    return w.reshape(groups, o // groups, cg, kh, kw).transpose(0, 1, 3, 4, 2).reshape(groups, o // groups, kh * kw * cg)


def correlate(x: Array, w: Array, stride: tuple[int, int], dilation: tuple[int, int], groups: int) -> Array:
    """out[n, o, i, j] = sum_{c,k,l} x[n, c, i*s + k*d, j*s + l*d] * w[o, c, k, l], per group: one GEMM each."""
    n = x.shape[0]
    o, _, kh, kw = w.shape
    cols, oh, ow = columns(x, kh, kw, stride, dilation, groups)
    out = np.matmul(_kernel_rows(w, groups), cols)  # (G, O/G, N*OH*OW)
    return out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)


class Conv2dArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stride: IntPair = 1
    padding: IntPair = 0
    dilation: IntPair = 1
    groups: int = Field(1, ge=1)


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a conv/pool along one axis."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@register
class Conv2d(Op):
    name = "conv2d"
    tensors = ("input", "weight", "bias")
    min_inputs = 2
    Args = Conv2dArgs
    positional = ("stride", "padding", "dilation", "groups")
    functions = ("F.conv2d", "torch.conv2d")

    def shape(self, shapes: list[Shape], a: Conv2dArgs) -> Shape:
        x, w = shapes[0], shapes[1]
        if len(x) not in (3, 4) or len(w) != 4:
            raise ShapeError(f"conv2d needs input (N, C, H, W) or (C, H, W) and weight (O, C/groups, KH, KW), got {list(x)} and {list(w)}")
        (sh, sw), (ph, pw), (dh, dw) = pair(a.stride), pair(a.padding), pair(a.dilation)
        if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
            raise ShapeError("conv2d: stride and dilation must be >= 1 and padding >= 0")
        c, h, wd = x[-3:]
        o, cg, kh, kw = w
        if c % a.groups or o % a.groups or c // a.groups != cg:
            raise ShapeError(
                f"conv2d: input has {c} channels, weight {list(w)} expects {cg * a.groups} with groups={a.groups}"
                + (f" (out channels {o} not divisible by groups)" if o % a.groups else "")
            )
        if len(shapes) == 3 and shapes[2] != (o,):
            raise ShapeError(f"conv2d: bias shape {list(shapes[2])} should be [{o}]")
        oh, ow = conv_out(h, kh, sh, ph, dh), conv_out(wd, kw, sw, pw, dw)
        if oh < 1 or ow < 1:
            raise ShapeError(f"conv2d: kernel {[kh, kw]} (dilation {[dh, dw]}) is larger than padded input {[h + 2 * ph, wd + 2 * pw]}")
        return x[:-3] + (o, oh, ow)

    def torch(self, t: Any, xs: list[Any], a: Conv2dArgs) -> Any:
        return t.nn.functional.conv2d(*xs, stride=a.stride, padding=a.padding, dilation=a.dilation, groups=a.groups)

    def forward(self, xs: list[Array], a: Conv2dArgs) -> Array:
        x, w = xs[0], xs[1]
        batched = x.ndim == 4
        x = x if batched else x[None]
        ph, pw = pair(a.padding)
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        out = correlate(xp, w, pair(a.stride), pair(a.dilation), a.groups)
        if len(xs) == 3:
            out = out + xs[2][None, :, None, None]
        return out if batched else out[0]

    def backward(self, g: Array, out: Array, xs: list[Array], a: Conv2dArgs) -> list[Array | None]:
        x, w = xs[0], xs[1]
        batched = x.ndim == 4
        x, g = (x, g) if batched else (x[None], g[None])
        (sh, sw), (ph, pw), (dh, dw) = pair(a.stride), pair(a.padding), pair(a.dilation)
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        G = a.groups
        oh, ow = g.shape[2:]
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))

        # dL/dW: correlate the input windows with the output gradient, per group (one GEMM each).
        cols, _, _ = columns(xp, kh, kw, (sh, sw), (dh, dw), G)  # (G, KH*KW*C/G, N*OH*OW)
        gg = g.transpose(1, 0, 2, 3).reshape(G, o // G, n * oh * ow)
        gw = np.matmul(gg, cols.transpose(0, 2, 1)).reshape(G, o // G, kh, kw, cg).transpose(0, 1, 4, 2, 3).reshape(w.shape)

        # dL/dX: full correlation of the stride-dilated gradient with the flipped kernel.
        gd = np.zeros((n, o, (oh - 1) * sh + 1, (ow - 1) * sw + 1), dtype=g.dtype)
        gd[:, :, ::sh, ::sw] = g
        eh, ew = dh * (kh - 1), dw * (kw - 1)
        gpad = np.pad(gd, ((0, 0), (0, 0), (eh, eh), (ew, ew)))
        wf = w.reshape(G, o // G, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1].reshape(c, o // G, kh, kw)
        part = correlate(gpad, np.ascontiguousarray(wf), (1, 1), (dh, dw), G)
        gxp = np.zeros_like(xp)
        gxp[:, :, : part.shape[2], : part.shape[3]] = part
        gx = gxp[:, :, ph : ph + h, pw : pw + wd]

        grads: list[Array | None] = [gx if batched else gx[0], gw]
        if len(xs) == 3:
            grads.append(g.sum(axis=(0, 2, 3)))
        return grads
