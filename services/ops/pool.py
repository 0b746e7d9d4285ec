"""2-d max and average pooling over window views; backward scatters per kernel offset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, pair, register
from services.ops.conv import IntPair, windows


class PoolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kernel_size: IntPair
    stride: IntPair | None = None
    padding: IntPair = 0


class MaxPoolArgs(PoolArgs):
    """F.max_pool2d's: dilation 1 only; ceil_mode keeps a last window that starts inside the input (GoogLeNet's)."""

    dilation: IntPair = 1
    ceil_mode: bool = False


class AvgPoolArgs(PoolArgs):
    """F.avg_pool2d's: ceil_mode keeps a last window that starts inside the input; count_include_pad=False divides by
    the input elements a window covers (timm's ResNet-D shortcut) rather than by its padded size."""

    ceil_mode: bool = False
    count_include_pad: bool = True


def _geometry(a: PoolArgs) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    k = pair(a.kernel_size)
    s = pair(a.stride) if a.stride is not None else k
    return k, s, pair(a.padding)


def _pool_out(n: int, k: int, s: int, p: int, ceil: bool) -> int:
    """torch's pooling_output_shape: with ceil_mode one more window where it starts inside the input or its left
    padding."""
    out = (n + 2 * p - k + (s - 1 if ceil else 0)) // s + 1
    return out - 1 if ceil and (out - 1) * s >= n + p else out


def _extra(x: Shape, a: PoolArgs) -> tuple[int, int]:
    """Rows and columns past the bottom / right padding that ceil_mode's last windows reach."""
    if not getattr(a, "ceil_mode", False):
        return 0, 0
    (kh, kw), (sh, sw), (ph, pw) = _geometry(a)
    return tuple(max(0, (_pool_out(n, k, s, p, True) - 1) * s + k - (n + 2 * p))  # type: ignore[return-value]
                 for n, k, s, p in ((x[-2], kh, sh, ph), (x[-1], kw, sw, pw)))


class Pool2d(Op):
    Args = PoolArgs
    positional = ("kernel_size", "stride", "padding")
    pad_value: float = 0.0

    def shape(self, shapes: list[Shape], a: PoolArgs) -> Shape:
        x = shapes[0]
        if len(x) not in (3, 4):
            raise ShapeError(f"{self.name} needs input (N, C, H, W) or (C, H, W), got {list(x)}")
        if min(x[-3:]) < 1:
            raise ShapeError(f"{self.name}: C, H and W must not be 0 (only N may), got {list(x)}")
        (kh, kw), (sh, sw), (ph, pw) = _geometry(a)
        if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
            raise ShapeError(f"{self.name}: kernel_size and stride must be >= 1, padding >= 0")
        if ph > kh // 2 or pw > kw // 2:
            raise ShapeError(f"{self.name}: padding {[ph, pw]} should be at most half of kernel_size {[kh, kw]}")
        if pair(getattr(a, "dilation", 1)) != (1, 1):
            raise ShapeError(f"{self.name}: dilation other than 1 is not supported")
        ceil = bool(getattr(a, "ceil_mode", False))
        oh, ow = _pool_out(x[-2], kh, sh, ph, ceil), _pool_out(x[-1], kw, sw, pw, ceil)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{self.name}: kernel {[kh, kw]} is larger than padded input {[x[-2] + 2 * ph, x[-1] + 2 * pw]}")
        return x[:-2] + (oh, ow)

    def torch(self, t: Any, xs: list[Any], a: PoolArgs) -> Any:
        return getattr(t.nn.functional, self.name)(xs[0], a.kernel_size, a.stride, a.padding)

    def _offsets(self, x: Array, a: PoolArgs) -> Iterator[tuple[int, int, Array]]:
        """(k, l, the strided view of the padded input that kernel offset (k, l) reads, shaped like the output):
        one vectorised call per kernel offset, never a reduction over small window axes (5x torch's time)."""
        (kh, kw), (sh, sw), (ph, pw) = _geometry(a)
        eh, ew = _extra(x.shape, a)
        x4 = x if x.ndim == 4 else x[None]
        xp = x4 if not (ph or pw or eh or ew) else np.pad(
            x4, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=self.pad_value)
        oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
        for k in range(kh):
            for m in range(kw):
                yield k, m, xp[:, :, k : k + (oh - 1) * sh + 1 : sh, m : m + (ow - 1) * sw + 1 : sw]

    def _scatter(self, x: Array, a: PoolArgs, per_offset: Any) -> Array:
        """Add per_offset(k, l) (shaped like the output) into every window position (k, l)."""
        (kh, kw), (sh, sw), (ph, pw) = _geometry(a)
        eh, ew = _extra(x.shape, a)
        x4 = x if x.ndim == 4 else x[None]
        gxp = np.zeros((x4.shape[0], x4.shape[1], x4.shape[2] + 2 * ph + eh, x4.shape[3] + 2 * pw + ew), dtype=x.dtype)
        for k in range(kh):
            for m in range(kw):
                contrib = per_offset(k, m)
                oh, ow = contrib.shape[2:]
                gxp[:, :, k : k + (oh - 1) * sh + 1 : sh, m : m + (ow - 1) * sw + 1 : sw] += contrib
        gx = gxp[:, :, ph : ph + x4.shape[2], pw : pw + x4.shape[3]]
        return gx if x.ndim == 4 else gx[0]


@register
class MaxPool2d(Pool2d):
    """Max over each window; the gradient goes to the first maximal element of the window."""

    name = "max_pool2d"
    Args = MaxPoolArgs
    positional = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    functions = ("F.max_pool2d", "torch.max_pool2d")
    pad_value = -np.inf

    def torch(self, t: Any, xs: list[Any], a: MaxPoolArgs) -> Any:  # type: ignore[override]
        return t.nn.functional.max_pool2d(xs[0], a.kernel_size, a.stride, a.padding, 1, a.ceil_mode)

    def forward(self, xs: list[Array], a: PoolArgs) -> Array:
        out: Array | None = None
        for _, _, view in self._offsets(xs[0], a):
            out = view.copy() if out is None else np.maximum(out, view, out=out)  # NaN wins, as in np.max
        assert out is not None
        return out if xs[0].ndim == 4 else out[0]

    def backward(self, g: Array, out: Array, xs: list[Array], a: PoolArgs) -> list[Array | None]:
        # the first offset (row-major in the window) whose element equals the window's max (a NaN, where the max is
        # one) takes the gradient: argmax's choice, without copying the windows
        out4, g4 = (out, g) if out.ndim == 4 else (out[None], g[None])
        nan_out = np.isnan(out4)
        nans = bool(nan_out.any())
        taken = np.zeros(out4.shape, dtype=bool)
        hits = []
        for _, _, view in self._offsets(xs[0], a):
            hit = view == out4
            if nans:
                hit |= np.isnan(view) & nan_out
            hit &= ~taken
            taken |= hit
            hits.append(hit)
        _, kw = _geometry(a)[0]
        return [self._scatter(xs[0], a, lambda k, m: np.where(hits[k * kw + m], g4, 0).astype(g4.dtype, copy=False))]


@register
class AvgPool2d(Pool2d):
    """Mean over each window: divided by the window's size within the padded input (count_include_pad=True, torch's
    default; with ceil_mode a last window reaching past the padding counts only up to it), or by the input elements
    it covers (count_include_pad=False), as torch's kernel divides."""

    name = "avg_pool2d"
    Args = AvgPoolArgs
    positional = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
    functions = ("F.avg_pool2d", "torch.avg_pool2d")

    def torch(self, t: Any, xs: list[Any], a: AvgPoolArgs) -> Any:  # type: ignore[override]
        return t.nn.functional.avg_pool2d(xs[0], a.kernel_size, a.stride, a.padding, a.ceil_mode, a.count_include_pad)

    def _divisor(self, x: Shape, a: AvgPoolArgs) -> Array | int:
        """What each window's sum is divided by: kh * kw, or per window where some windows count fewer."""
        (kh, kw), s, (ph, pw) = _geometry(a)
        eh, ew = _extra(x, a)
        if a.count_include_pad and not eh and not ew:
            return kh * kw
        h, w = x[-2], x[-1]
        counted = np.zeros((1, 1, h + 2 * ph + eh, w + 2 * pw + ew))
        if a.count_include_pad:
            counted[..., : h + 2 * ph, : w + 2 * pw] = 1
        else:
            counted[..., ph : ph + h, pw : pw + w] = 1
        return windows(counted, kh, kw, s, (1, 1)).sum(axis=(4, 5))[0, 0]

    def forward(self, xs: list[Array], a: AvgPoolArgs) -> Array:  # type: ignore[override]
        total: Array | None = None
        for _, _, view in self._offsets(xs[0], a):
            total = view.astype(np.float64) if total is None else np.add(total, view, out=total)
        assert total is not None
        divisor = self._divisor(xs[0].shape, a)
        out = (total / divisor).astype(xs[0].dtype)
        return out if xs[0].ndim == 4 else out[0]

    def backward(self, g: Array, out: Array, xs: list[Array], a: AvgPoolArgs) -> list[Array | None]:  # type: ignore[override]
        divisor = self._divisor(xs[0].shape, a)
        share = (g if g.ndim == 4 else g[None]) / np.asarray(divisor, g.dtype)
        return [self._scatter(xs[0], a, lambda k, m: share)]


class AdaptiveArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    output_size: int | tuple[int | None, int | None]


def _edges(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """torch's adaptive windows along one dim: [floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out))."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


def _bins(n_in: int, n_out: int, dtype: Any) -> Array:
    """(n_out, n_in): row i averages torch's adaptive window floor(i * n_in / n_out) .. ceil((i + 1) * n_in / n_out)."""
    m = np.zeros((n_out, n_in), dtype=dtype)
    for i, (lo, hi) in enumerate(_edges(n_in, n_out)):
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


@register
class AdaptiveAvgPool2d(Op):
    """Mean over torch's adaptive windows, which tile the input into output_size cells (they overlap when the
    sizes do not divide). Separable: out = Bh @ x @ Bw^T with averaging matrices; backward is their transposes."""

    name = "adaptive_avg_pool2d"
    functions = ("F.adaptive_avg_pool2d", "torch.adaptive_avg_pool2d")
    Args = AdaptiveArgs
    positional = ("output_size",)

    def _out(self, x: Shape, a: AdaptiveArgs) -> tuple[int, int]:
        size = (a.output_size, a.output_size) if isinstance(a.output_size, int) else a.output_size
        return (size[0] if size[0] is not None else x[-2], size[1] if size[1] is not None else x[-1])

    def shape(self, shapes: list[Shape], a: AdaptiveArgs) -> Shape:
        x = shapes[0]
        if len(x) not in (3, 4) or min(x[-2:]) < 1:
            raise ShapeError(f"{self.name} needs input (N, C, H, W) or (C, H, W) with H, W >= 1, got {list(x)}")
        oh, ow = self._out(x, a)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{self.name}: output_size must be >= 1, got {[oh, ow]}")
        return x[:-2] + (oh, ow)

    def torch(self, t: Any, xs: list[Any], a: AdaptiveArgs) -> Any:
        return t.nn.functional.adaptive_avg_pool2d(xs[0], a.output_size)

    def forward(self, xs: list[Array], a: AdaptiveArgs) -> Array:
        x = xs[0]
        oh, ow = self._out(x.shape, a)
        return (_bins(x.shape[-2], oh, x.dtype) @ x @ _bins(x.shape[-1], ow, x.dtype).T).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: AdaptiveArgs) -> list[Array | None]:
        x = xs[0]
        oh, ow = self._out(x.shape, a)
        return [(_bins(x.shape[-2], oh, g.dtype).T @ g @ _bins(x.shape[-1], ow, g.dtype)).astype(x.dtype)]


class AdaptiveMaxArgs(AdaptiveArgs):
    return_indices: bool = False


@register
class AdaptiveMaxPool2d(AdaptiveAvgPool2d):
    """Max over torch's adaptive windows; the gradient goes to the first maximal element of each window (row-major
    scan, as torch's CPU kernel). One numpy argmax per output cell: output sizes are small (1, 7x7)."""

    name = "adaptive_max_pool2d"
    functions = ("F.adaptive_max_pool2d",)
    Args = AdaptiveMaxArgs
    positional = ("output_size", "return_indices")

    def shape(self, shapes: list[Shape], a: AdaptiveMaxArgs) -> Shape:  # type: ignore[override]
        if a.return_indices:
            raise ShapeError(f"{self.name}: return_indices=True is not supported (the indices are no tensor to trace)")
        return super().shape(shapes, a)

    def torch(self, t: Any, xs: list[Any], a: AdaptiveMaxArgs) -> Any:  # type: ignore[override]
        return t.nn.functional.adaptive_max_pool2d(xs[0], a.output_size)

    def _argmax(self, x: Array, a: AdaptiveArgs) -> tuple[list[tuple[int, int, int, int]], list[Array]]:
        """Per output cell (row-major): its window (h0, h1, w0, w1) and the flat index of the window's maximum."""
        oh, ow = self._out(x.shape, a)
        cells, args = [], []
        for h0, h1 in _edges(x.shape[-2], oh):
            for w0, w1 in _edges(x.shape[-1], ow):
                win = x[..., h0:h1, w0:w1]
                cells.append((h0, h1, w0, w1))
                args.append(win.reshape(*win.shape[:-2], (h1 - h0) * (w1 - w0)).argmax(axis=-1))  # (an empty batch too)
        return cells, args

    def forward(self, xs: list[Array], a: AdaptiveArgs) -> Array:
        x = xs[0]
        oh, ow = self._out(x.shape, a)
        if x.size == 0:  # an empty batch (H and W are at least 1)
            return np.zeros((*x.shape[:-2], oh, ow), dtype=x.dtype)
        cells = [x[..., h0:h1, w0:w1].max(axis=(-2, -1)) for h0, h1 in _edges(x.shape[-2], oh) for w0, w1 in _edges(x.shape[-1], ow)]
        return np.stack(cells, axis=-1).reshape(*x.shape[:-2], oh, ow).astype(x.dtype)

    def backward(self, g: Array, out: Array, xs: list[Array], a: AdaptiveArgs) -> list[Array | None]:
        x = xs[0]
        gx = np.zeros_like(x)
        if x.size == 0:
            return [gx]
        gflat = g.reshape(*g.shape[:-2], g.shape[-2] * g.shape[-1])
        for k, ((h0, h1, w0, w1), arg) in enumerate(zip(*self._argmax(x, a), strict=True)):
            win = gx[..., h0:h1, w0:w1]  # a view: windows overlap when the sizes do not divide, gradients add
            flat = np.zeros(win.shape[:-2] + ((h1 - h0) * (w1 - w0),), dtype=gx.dtype)
            np.put_along_axis(flat, arg[..., None], gflat[..., k : k + 1], axis=-1)
            win += flat.reshape(win.shape)
        return [gx]
