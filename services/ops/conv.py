"""conv2d as cross-correlation over strided window views, vectorised as matrix products.

Forward and both gradients are one matrix product each over the im2col windows (tensors laid out
channels first): the weight gradient is the correlation of the saved windows with the output
gradient, and the input gradient is the kernel's transpose against the output gradient, summed back
onto the input by col2im (the adjoint of im2col), so no zeros of a strided gradient are multiplied."""

from __future__ import annotations

from typing import Any, Literal

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
    xc: Array, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int], groups: int
) -> tuple[Array, int, int]:
    """im2col of xc laid out (C, N, H, W), one strided slice copy per kernel offset (never a loop over
    pixels): (G, KH*KW*C/G, N*OH*OW) with OH, OW; row (k, l, c) holds x[n, c, i*s + k*d, j*s + l*d]."""
    c, n, h, wd = xc.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (wd - dw * (kw - 1) - 1) // sw + 1
    cg = c // groups
    xg = xc.reshape(groups, cg, n, h, wd)
    cols = np.empty((groups, kh, kw, cg, n, oh, ow), dtype=xc.dtype)
    for k in range(kh):
        for m in range(kw):
            cols[:, k, m] = xg[..., k * dh : k * dh + sh * (oh - 1) + 1 : sh, m * dw : m * dw + sw * (ow - 1) + 1 : sw]
    return cols.reshape(groups, kh * kw * cg, n * oh * ow), oh, ow


def col2im(
    dcols: Array, shape: tuple[int, int, int, int], kh: int, kw: int, stride: tuple[int, int],
    dilation: tuple[int, int], groups: int, oh: int, ow: int,
) -> Array:
    """The adjoint of `columns`: window gradients (G, KH*KW*C/G, N*OH*OW) summed back onto an input laid out
    (C, N, H, W) of `shape`, one strided slice add per kernel offset."""
    c, n, h, wd = shape
    (sh, sw), (dh, dw) = stride, dilation
    cg = c // groups
    d = dcols.reshape(groups, kh, kw, cg, n, oh, ow)
    out = np.zeros((groups, cg, n, h, wd), dtype=dcols.dtype)
    for k in range(kh):
        for m in range(kw):
            out[..., k * dh : k * dh + sh * (oh - 1) + 1 : sh, m * dw : m * dw + sw * (ow - 1) + 1 : sw] += d[:, k, m]
    return out.reshape(c, n, h, wd)


def _kernel_rows(w: Array, groups: int) -> Array:
    """The kernel as (G, O/G, KH*KW*C/G), rows ordered like `columns`."""
    o, cg, kh, kw = w.shape
    return w.reshape(groups, o // groups, cg, kh, kw).transpose(0, 1, 3, 4, 2).reshape(groups, o // groups, kh * kw * cg)


def correlate(
    xc: Array, w: Array, stride: tuple[int, int], dilation: tuple[int, int], groups: int, cols: Array | None = None
) -> Array:
    """out[o, n, i, j] = sum_{c,k,l} xc[c, n, i*s + k*d, j*s + l*d] * w[o, c, k, l], per group one GEMM.

    Both laid out channels first, (C, N, H, W): the window copies then read contiguous rows. `cols`: the
    im2col of xc when already made."""
    n = xc.shape[1]
    o, _, kh, kw = w.shape
    if cols is None:
        cols, _, _ = columns(xc, kh, kw, stride, dilation, groups)
    oh = (xc.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (xc.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return np.matmul(_kernel_rows(w, groups), cols).reshape(o, n, oh, ow)  # (G, O/G, N*OH*OW) as (O, N, OH, OW)


def depthwise(w_shape: tuple[int, ...], groups: int) -> bool:
    """A depthwise conv (MobileNet's, ConvNeXt's 7x7): one input and one output channel per group. Its im2col
    GEMMs are per-channel outer products, which numpy runs ~6x slower than torch: it gets a multiply-add per
    kernel offset instead."""
    return groups > 1 and w_shape[0] == groups and w_shape[1] == 1


def _offset_views(xc: Array, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int], oh: int, ow: int) -> Any:
    """(k, l, the strided view of xc (C, N, H, W) that kernel offset (k, l) reads, shaped (C, N, OH, OW))."""
    (sh, sw), (dh, dw) = stride, dilation
    for k in range(kh):
        for m in range(kw):
            yield k, m, xc[:, :, k * dh : k * dh + sh * (oh - 1) + 1 : sh, m * dw : m * dw + sw * (ow - 1) + 1 : sw]


def depthwise_correlate(xc: Array, w: Array, stride: tuple[int, int], dilation: tuple[int, int]) -> Array:
    """out[c, n, i, j] = sum_{k,l} xc[c, n, i*s + k*d, j*s + l*d] * w[c, 0, k, l], for xc (C, N, H, W)."""
    c, n, h, wd = xc.shape
    kh, kw = w.shape[2:]
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((c, n, oh, ow), dtype=xc.dtype)
    tmp = np.empty_like(out)
    for k, m, view in _offset_views(xc, kh, kw, stride, dilation, oh, ow):
        out += np.multiply(view, w[:, 0, k, m, None, None, None], out=tmp)
    return out


def depthwise_grads(
    xc: Array, w: Array, g: Array, stride: tuple[int, int], dilation: tuple[int, int], want_x: bool, want_w: bool,
) -> tuple[Array | None, Array | None]:
    """A depthwise conv's input gradient on the padded input xc (C, N, H, W) (uncropped, channels first) and its
    weight gradient, from the output gradient g (N, C, OH, OW): per kernel offset, one multiply-add and one dot."""
    kh, kw = w.shape[2:]
    oh, ow = g.shape[2:]
    gc = np.ascontiguousarray(g.transpose(1, 0, 2, 3))
    gxp = np.zeros_like(xc) if want_x else None
    gw = np.zeros_like(w) if want_w else None
    tmp = np.empty_like(gc)
    for k, m, view in _offset_views(xc, kh, kw, stride, dilation, oh, ow):
        if gw is not None:
            gw[:, 0, k, m] = np.einsum("cnij,cnij->c", view, gc)
        if gxp is not None:
            gxp[:, :, k * dilation[0] : k * dilation[0] + stride[0] * (oh - 1) + 1 : stride[0],
                m * dilation[1] : m * dilation[1] + stride[1] * (ow - 1) + 1 : stride[1]] += np.multiply(
                    gc, w[:, 0, k, m, None, None, None], out=tmp)
    return gxp, gw


def channels_first(x: Array, rows: int, cols: int, top: int, left: int, step: tuple[int, int] = (1, 1)) -> Array:
    """x (N, C, H, W) as a zero array (C, N, rows, cols) holding x[n, c, i, j] at (top + i*step, left + j*step):
    padding and stride dilation in one copy."""
    n, c, h, w = x.shape
    out = np.zeros((c, n, rows, cols), dtype=x.dtype)
    out[:, :, top : top + (h - 1) * step[0] + 1 : step[0], left : left + (w - 1) * step[1] + 1 : step[1]] = x.transpose(1, 0, 2, 3)
    return out


class Conv2dArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stride: IntPair = 1
    padding: IntPair | Literal["same", "valid"] = 0
    dilation: IntPair = 1
    groups: int = Field(1, ge=1)


def resolved(a: Conv2dArgs, kernel: tuple[int, ...]) -> Conv2dArgs:
    """The args with padding 'valid' as 0 and 'same' as the symmetric padding that keeps the size (stride 1):
    torch pads an odd total one more on the right, a copy gradtrace does not trace."""
    if not isinstance(a.padding, str):
        return a
    if a.padding == "valid":
        return a.model_copy(update={"padding": 0})
    if pair(a.stride) != (1, 1):
        raise ShapeError("padding='same' is not supported for strided convolutions")
    totals = [d * (k - 1) for d, k in zip(pair(a.dilation), kernel[-2:], strict=True)]
    if any(t % 2 for t in totals):
        raise ShapeError(f"padding='same' with kernel {list(kernel[-2:])} (dilation {list(pair(a.dilation))}) pads one side "
                         "more than the other, which gradtrace does not trace: use an odd kernel, or F.pad then padding=0")
    return a.model_copy(update={"padding": (totals[0] // 2, totals[1] // 2)})


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a conv/pool along one axis."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@register
class Conv2d(Op):
    name = "conv2d"
    same_dtype = True
    tensors = ("input", "weight", "bias")
    min_inputs = 2
    Args = Conv2dArgs
    positional = ("stride", "padding", "dilation", "groups")
    functions = ("F.conv2d", "torch.conv2d")

    def shape(self, shapes: list[Shape], a: Conv2dArgs) -> Shape:
        x, w = shapes[0], shapes[1]
        if len(x) not in (3, 4) or len(w) != 4:
            raise ShapeError(f"conv2d needs input (N, C, H, W) or (C, H, W) and weight (O, C/groups, KH, KW), got {list(x)} and {list(w)}")
        a = resolved(a, w)
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
        return self.forward_saving(xs, a)[0]

    def forward_saving(self, xs: list[Array], a: Conv2dArgs) -> tuple[Array, Array]:
        """Forward, saving the im2col columns: the weight gradient is the same windows against the output gradient."""
        x, w = xs[0], xs[1]
        a = resolved(a, w.shape)
        batched = x.ndim == 4
        x = x if batched else x[None]
        (ph, pw), (_, _, h, wd) = pair(a.padding), x.shape
        xc = channels_first(x, h + 2 * ph, wd + 2 * pw, ph, pw)
        kh, kw = w.shape[2:]
        if depthwise(w.shape, a.groups):  # saved: the padded input, which the weight gradient reads per offset
            cols = xc
            out = depthwise_correlate(xc, w, pair(a.stride), pair(a.dilation)).transpose(1, 0, 2, 3)
        else:
            cols, _, _ = columns(xc, kh, kw, pair(a.stride), pair(a.dilation), a.groups)
            out = correlate(xc, w, pair(a.stride), pair(a.dilation), a.groups, cols).transpose(1, 0, 2, 3)
        if len(xs) == 3:
            out = out + xs[2][None, :, None, None]
        return (out if batched else out[0]), cols

    def backward(self, g: Array, out: Array, xs: list[Array], a: Conv2dArgs) -> list[Array | None]:
        return self.backward_saved(g, out, xs, a, None)

    def backward_saved(
        self, g: Array, out: Array, xs: list[Array], a: Conv2dArgs, saved: Array | None,
        needs: tuple[bool, ...] | None = None,
    ) -> list[Array | None]:
        x, w = xs[0], xs[1]
        a = resolved(a, w.shape)
        batched = x.ndim == 4
        x, g = (x, g) if batched else (x[None], g[None])
        (sh, sw), (ph, pw), (dh, dw) = pair(a.stride), pair(a.padding), pair(a.dilation)
        n, c, h, wd = x.shape
        kh, kw = w.shape[2:]
        G = a.groups
        want_x, want_w = (True, True) if needs is None else (needs[0], needs[1])
        bias = [g.sum(axis=(0, 2, 3))] if len(xs) == 3 else []
        if depthwise(w.shape, G):
            xc = saved if saved is not None else channels_first(x, h + 2 * ph, wd + 2 * pw, ph, pw)
            gx, gw = depthwise_grads(xc, w, g, (sh, sw), (dh, dw), want_x, want_w)
            gx = gx[:, :, ph : ph + h, pw : pw + wd].transpose(1, 0, 2, 3) if gx is not None else None
            return [gx if gx is None or batched else gx[0], gw, *bias]
        gw = None
        if want_w:  # dL/dW: the input windows against the output gradient, per group (one GEMM each)
            if saved is None:
                saved, _, _ = columns(channels_first(x, h + 2 * ph, wd + 2 * pw, ph, pw), kh, kw, (sh, sw), (dh, dw), G)
            gw = weight_grad(saved, g, w.shape, G)
        if not want_x:  # an input that wants no gradient (the image): no dL/dX
            return [None, gw, *bias]
        gx = input_grad(g, w, (n, c, h, wd), (sh, sw), (ph, pw), (dh, dw), G)
        return [gx if batched else gx[0], gw, *bias]


def weight_grad(cols: Array, g: Array, w_shape: tuple[int, ...], groups: int) -> Array:
    """dL/dW of a conv: the input's im2col windows (G, KH*KW*C/G, N*OH*OW) against the output gradient g
    (N, O, OH, OW), one GEMM per group."""
    o, cg, kh, kw = w_shape
    n, _, oh, ow = g.shape
    gg = g.transpose(1, 0, 2, 3).reshape(groups, o // groups, n * oh * ow)
    gw = np.matmul(cols, gg.transpose(0, 2, 1)).transpose(0, 2, 1)  # (G, O/G, KH*KW*C/G)
    return gw.reshape(groups, o // groups, kh, kw, cg).transpose(0, 1, 4, 2, 3).reshape(w_shape)


def input_grad(
    g: Array, w: Array, x_shape: tuple[int, int, int, int], stride: tuple[int, int], padding: tuple[int, int],
    dilation: tuple[int, int], groups: int,
) -> Array:
    """dL/dX of a conv whose input has x_shape (N, C, H, W): the kernel's transpose against the output gradient g
    (N, O, OH, OW) gives each window's gradient (one GEMM per group), and col2im adds every window back onto the
    padded input, which is then cropped. This is also conv_transpose2d's forward."""
    n, c, h, wd = x_shape
    o = w.shape[0]
    (ph, pw), (_, _, oh, ow) = padding, g.shape
    gg = g.transpose(1, 0, 2, 3).reshape(groups, o // groups, n * oh * ow)
    dcols = np.matmul(_kernel_rows(w, groups).transpose(0, 2, 1), gg)  # (G, KH*KW*C/G, N*OH*OW)
    gxp = col2im(dcols, (c, n, h + 2 * ph, wd + 2 * pw), w.shape[2], w.shape[3], stride, dilation, groups, oh, ow)
    return gxp[:, :, ph : ph + h, pw : pw + wd].transpose(1, 0, 2, 3)


class ConvTranspose2dArgs(Conv2dArgs):
    padding: IntPair = 0  # type: ignore[assignment]  # torch's transposed convs take no 'same' or 'valid'
    output_padding: IntPair = 0


@register
class ConvTranspose2d(Op):
    """The adjoint of conv2d (a "deconvolution", DCGAN's generator): weight (C_in, C_out/groups, KH, KW). Forward is
    conv2d's input gradient of x; its input gradient is conv2d of the output gradient, its weight gradient the
    output gradient's windows against x."""

    name = "conv_transpose2d"
    same_dtype = True
    tensors = ("input", "weight", "bias")
    min_inputs = 2
    Args = ConvTranspose2dArgs
    positional = ("stride", "padding", "output_padding", "groups", "dilation")
    functions = ("F.conv_transpose2d", "torch.conv_transpose2d")

    def shape(self, shapes: list[Shape], a: ConvTranspose2dArgs) -> Shape:
        x, w = shapes[0], shapes[1]
        if len(x) not in (3, 4) or len(w) != 4:
            raise ShapeError(f"conv_transpose2d needs input (N, C, H, W) or (C, H, W) and weight (C, O/groups, KH, KW), "
                             f"got {list(x)} and {list(w)}")
        (sh, sw), (ph, pw), (dh, dw), (oph, opw) = pair(a.stride), pair(a.padding), pair(a.dilation), pair(a.output_padding)
        if min(sh, sw, dh, dw) < 1 or min(ph, pw, oph, opw) < 0:
            raise ShapeError("conv_transpose2d: stride and dilation must be >= 1, padding and output_padding >= 0")
        if oph >= sh or opw >= sw:
            raise ShapeError(f"conv_transpose2d: output_padding {[oph, opw]} must be smaller than stride {[sh, sw]}")
        c, h, wd = x[-3:]
        cw, og, kh, kw = w
        if c != cw or c % a.groups:
            raise ShapeError(f"conv_transpose2d: input has {c} channels, weight {list(w)} expects {cw} "
                             f"(divisible by groups={a.groups})")
        if len(shapes) == 3 and shapes[2] != (og * a.groups,):
            raise ShapeError(f"conv_transpose2d: bias shape {list(shapes[2])} should be [{og * a.groups}]")
        oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
        ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
        if oh < 1 or ow < 1:
            raise ShapeError(f"conv_transpose2d: padding {[ph, pw]} leaves no output ({oh} x {ow})")
        return x[:-3] + (og * a.groups, oh, ow)

    def torch(self, t: Any, xs: list[Any], a: ConvTranspose2dArgs) -> Any:
        return t.nn.functional.conv_transpose2d(*xs, stride=a.stride, padding=a.padding, output_padding=a.output_padding,
                                                groups=a.groups, dilation=a.dilation)

    def forward(self, xs: list[Array], a: ConvTranspose2dArgs) -> Array:
        x, w = xs[0], xs[1]
        batched = x.ndim == 4
        x = x if batched else x[None]
        out_shape = self.shape([x.shape, w.shape], a)
        out = input_grad(x, w, out_shape, pair(a.stride), pair(a.padding), pair(a.dilation), a.groups)  # type: ignore[arg-type]
        if len(xs) == 3:
            out = out + xs[2][None, :, None, None]
        return out if batched else out[0]

    def backward(self, g: Array, out: Array, xs: list[Array], a: ConvTranspose2dArgs) -> list[Array | None]:
        x, w = xs[0], xs[1]
        batched = x.ndim == 4
        x, g = (x, g) if batched else (x[None], g[None])
        (ph, pw), (_, _, oh, ow) = pair(a.padding), g.shape
        stride, dilation = pair(a.stride), pair(a.dilation)
        gc = channels_first(g, oh + 2 * ph, ow + 2 * pw, ph, pw)  # conv2d of the output gradient: its windows
        cols, _, _ = columns(gc, w.shape[2], w.shape[3], stride, dilation, a.groups)
        gx = correlate(gc, w, stride, dilation, a.groups, cols).transpose(1, 0, 2, 3)  # (N, C_in, H, W)
        gw = weight_grad(cols, x, w.shape, a.groups)  # the windows against x, as conv2d's weight gradient
        bias = [g.sum(axis=(0, 2, 3))] if len(xs) == 3 else []
        return [gx if batched else gx[0], gw, *bias]


# ---- 1-d: the 2-d ops over a height of 1 -------------------------------------------------------------


IntOne = int | tuple[int]


def _one(v: int | tuple[int] | str) -> Any:
    return v if isinstance(v, (int, str)) else v[0]


class Conv1dArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stride: IntOne = 1
    padding: IntOne | Literal["same", "valid"] = 0
    dilation: IntOne = 1
    groups: int = Field(1, ge=1)


class ConvTranspose1dArgs(Conv1dArgs):
    padding: IntOne = 0  # type: ignore[assignment]
    output_padding: IntOne = 0


def _as_2d(a: Conv1dArgs, cls: type[Conv2dArgs]) -> Any:
    """The 1-d args as the 2-d op's over (1, L): stride, dilation 1 and padding 0 along the height."""
    pad = _one(a.padding)
    extra = {"output_padding": (0, _one(a.output_padding))} if isinstance(a, ConvTranspose1dArgs) else {}
    return cls(stride=(1, _one(a.stride)), padding=pad if isinstance(pad, str) else (0, pad), dilation=(1, _one(a.dilation)),
               groups=a.groups, **extra)


class OneD(Op):
    """A 1-d conv as its 2-d op on (N, C, 1, L) with a (O, C/groups, 1, K) kernel; torch runs F.conv1d itself
    (ConvolutionBackward0 either way)."""

    same_dtype = True
    tensors = ("input", "weight", "bias")
    min_inputs = 2
    two_d: Any
    args_2d: type[Conv2dArgs]

    def shape(self, shapes: list[Shape], a: Conv1dArgs) -> Shape:
        x, w = shapes[0], shapes[1]
        if len(x) not in (2, 3) or len(w) != 3:
            raise ShapeError(f"{self.name} needs input (N, C, L) or (C, L) and a 3-d weight, got {list(x)} and {list(w)}")
        if 0 in w or 0 in x[-2:]:
            raise ShapeError(f"{self.name}: empty input {list(x)} or weight {list(w)} (torch expects sizes of at least 1)")
        try:
            out = self.two_d.shape([(*x[:-1], 1, x[-1]), (*w[:2], 1, w[2]), *shapes[2:]], _as_2d(a, self.args_2d))
        except ShapeError as e:
            raise ShapeError(str(e).replace(self.two_d.name, self.name)) from None
        return (*out[:-2], out[-1])

    def torch(self, t: Any, xs: list[Any], a: Conv1dArgs) -> Any:
        return getattr(t.nn.functional, self.name)(*xs, **a.model_dump())

    def forward(self, xs: list[Array], a: Conv1dArgs) -> Array:
        return self.forward_saving(xs, a)[0]

    def forward_saving(self, xs: list[Array], a: Conv1dArgs) -> tuple[Array, Any]:
        out, keep = self.two_d.forward_saving([xs[0][..., None, :], xs[1][:, :, None, :], *xs[2:]], _as_2d(a, self.args_2d))
        return out[..., 0, :], keep

    def backward(self, g: Array, out: Array, xs: list[Array], a: Conv1dArgs) -> list[Array | None]:
        return self.backward_saved(g, out, xs, a, None)

    def backward_saved(self, g: Array, out: Array, xs: list[Array], a: Conv1dArgs, saved: Any,
                       needs: tuple[bool, ...] | None = None) -> list[Array | None]:
        grads = self.two_d.backward_saved(g[..., None, :], out[..., None, :], [xs[0][..., None, :], xs[1][:, :, None, :], *xs[2:]],
                                          _as_2d(a, self.args_2d), saved, needs)
        gx, gw = grads[0], grads[1]
        return [None if gx is None else gx[..., 0, :], None if gw is None else gw[:, :, 0, :], *grads[2:]]


@register
class Conv1d(OneD):
    """F.conv1d / nn.Conv1d (text and audio CNNs): conv2d over a height of 1."""

    name = "conv1d"
    Args = Conv1dArgs
    positional = ("stride", "padding", "dilation", "groups")
    functions = ("F.conv1d", "torch.conv1d")
    two_d, args_2d = Conv2d(), Conv2dArgs


@register
class ConvTranspose1d(OneD):
    """F.conv_transpose1d / nn.ConvTranspose1d: conv_transpose2d over a height of 1."""

    name = "conv_transpose1d"
    Args = ConvTranspose1dArgs
    positional = ("stride", "padding", "output_padding", "groups", "dilation")
    functions = ("F.conv_transpose1d", "torch.conv_transpose1d")
    two_d, args_2d = ConvTranspose2d(), ConvTranspose2dArgs
