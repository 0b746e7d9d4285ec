"""Lookup ops: embedding (rows of a weight picked by indices) and embedding_bag (bags of rows summed, averaged or
maxed: nn.EmbeddingBag, the torchtext classification tutorial's and recommenders' multi-hot features)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.errors import ShapeError
from services.ops.base import Array, Op, Shape, register


class EmbeddingArgs(BaseModel):
    """F.embedding's supported argument (max_norm and the rest are left out, so they are rejected)."""

    model_config = ConfigDict(extra="forbid")
    padding_idx: int | None = None


@register
class Embedding(Op):
    """Rows of weight (num_embeddings, dim) picked by int64 indices of any shape; the gradient scatters
    back into the rows, adding up repeated indices, and the padding_idx row gets none.
    max_norm, norm_type, scale_grad_by_freq and sparse are not supported."""

    name = "embedding"
    tensors = ("input", "weight")
    Args = EmbeddingArgs
    positional = ("padding_idx",)
    functions = ("F.embedding",)
    differentiable = (False, True)

    def shape(self, shapes: list[Shape], a: EmbeddingArgs) -> Shape:
        idx, w = shapes
        if len(w) != 2:
            raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {list(w)}")
        if a.padding_idx is not None and not -w[0] <= a.padding_idx < w[0]:
            raise ShapeError(f"embedding: padding_idx {a.padding_idx} must be within num_embeddings ({w[0]})")
        return idx + (w[1],)

    def dtype(self, dtypes: list[str]) -> str:
        if dtypes[0] != "int64":
            raise ShapeError(f"embedding: input must be int64 indices, got {dtypes[0]} (give that input \"dtype\": \"int64\")")
        if dtypes[1] not in ("float32", "float64"):
            raise ShapeError(f"embedding: weight must be a floating point tensor, got {dtypes[1]}")
        return dtypes[1]

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: EmbeddingArgs) -> None:
        r, n = ranges[0], shapes[1][0]
        if r is not None and (r[0] < 0 or r[1] >= n):
            raise ShapeError(f"embedding: index values in [{r[0]:g}, {r[1]:g}] are out of range for {n} embeddings (valid: 0 to {n - 1})")

    def torch(self, t: Any, xs: list[Any], a: EmbeddingArgs) -> Any:
        return t.nn.functional.embedding(xs[0], xs[1], padding_idx=a.padding_idx)

    def forward(self, xs: list[Array], a: EmbeddingArgs) -> Array:
        idx, w = xs
        if idx.size and (idx.min() < 0 or idx.max() >= w.shape[0]):
            raise ValueError(f"embedding: index out of range for {w.shape[0]} embeddings")
        return w[idx]

    def backward(self, g: Array, out: Array, xs: list[Array], a: EmbeddingArgs) -> list[Array | None]:
        idx, w = xs
        gw = np.zeros_like(w)
        np.add.at(gw, idx.reshape(-1), g.reshape(idx.size, w.shape[1]))  # sizes, not -1: 0-sized dims
        if a.padding_idx is not None:
            gw[a.padding_idx % w.shape[0]] = 0
        return [None, gw]


class EmbeddingBagArgs(BaseModel):
    """F.embedding_bag's arguments (max_norm, scale_grad_by_freq and sparse left out, so they are rejected)."""

    model_config = ConfigDict(extra="forbid")
    max_norm: None = None  # (torch's defaults, which a call may pass by position: F.embedding_bag(x, w, o, None, 2, ...))
    norm_type: float = 2.0
    scale_grad_by_freq: Literal[False] = False
    mode: Literal["sum", "mean", "max"] = "mean"
    sparse: bool = False
    include_last_offset: bool = False
    padding_idx: int | None = None


@register
class EmbeddingBag(Op):
    """F.embedding_bag(input, weight, offsets, mode=..., per_sample_weights=..., include_last_offset, padding_idx)
    (EmbeddingBagBackward0): a 2-D input's rows are the bags, a 1-D input is cut into bags at `offsets`; each bag's
    rows of weight are summed (times per_sample_weights), averaged or maxed (per column, the first largest), without
    the padding_idx entries (not counted in a mean); an empty bag gives zeros. Left out, offsets stand as 0 and
    per_sample_weights as 1."""

    name = "embedding_bag"
    tensors = ("input", "weight", "offsets", "per_sample_weights")
    min_inputs = 2
    optional: ClassVar[dict[str, float]] = {"offsets": 0.0, "per_sample_weights": 1.0}
    Args = EmbeddingBagArgs
    signature = ("input", "weight", "offsets", "max_norm", "norm_type", "scale_grad_by_freq", "mode", "sparse",
                 "per_sample_weights", "include_last_offset", "padding_idx")
    functions = ("F.embedding_bag",)
    differentiable = (False, True, False, True)

    def shape(self, shapes: list[Shape], a: EmbeddingBagArgs) -> Shape:
        idx, w = shapes[0], shapes[1]
        offsets = shapes[2] if len(shapes) > 2 and shapes[2] != () else None
        weights = shapes[3] if len(shapes) > 3 and shapes[3] != () else None
        if len(w) != 2:
            raise ShapeError(f"embedding_bag: weight must be 2-D (num_embeddings, embedding_dim), got {list(w)}")
        if a.padding_idx is not None and not -w[0] <= a.padding_idx < w[0]:
            raise ShapeError(f"embedding_bag: padding_idx must be within the number of embeddings ({w[0]}), got {a.padding_idx}")
        if weights is not None and a.mode != "sum":
            raise ShapeError(f"embedding_bag: per_sample_weights is only supported for mode='sum' (got mode='{a.mode}')")
        if weights is not None and weights != idx:
            raise ShapeError(f"embedding_bag: per_sample_weights {list(weights)} must have the input's shape {list(idx)}")
        if len(idx) == 2:
            if offsets is not None:
                raise ShapeError("embedding_bag: if input is 2-D, then offsets has to be None, as input is treated as a "
                                 "mini-batch of fixed length sequences")
            return (idx[0], w[1])
        if len(idx) != 1:
            raise ShapeError(f"embedding_bag: input has to be 1-D or 2-D, got {len(idx)}-D {list(idx)}")
        if offsets is None or len(offsets) != 1:
            raise ShapeError("embedding_bag: a 1-D input needs 1-D offsets (where each bag starts)")
        bags = offsets[0] - 1 if a.include_last_offset else offsets[0]
        if bags < 0:
            raise ShapeError("embedding_bag: include_last_offset needs at least one offset")
        return (bags, w[1])

    def dtype_for(self, dtypes: list[str], a: EmbeddingBagArgs) -> str:
        if dtypes[0] != "int64":
            raise ShapeError(f"embedding_bag: input must be int64 indices, got {dtypes[0]}")
        if len(dtypes) > 2 and dtypes[2] not in ("int64", "scalar"):
            raise ShapeError(f"embedding_bag: offsets must be int64, got {dtypes[2]}")
        if dtypes[1] not in ("float32", "float64"):
            raise ShapeError(f"embedding_bag: weight must be a floating point tensor, got {dtypes[1]}")
        if len(dtypes) > 3 and dtypes[3] not in (dtypes[1], "scalar"):
            raise ShapeError(f"embedding_bag: per_sample_weights must have the weight's dtype ({dtypes[1]}), got {dtypes[3]}")
        return dtypes[1]

    def check_ranges(self, ranges: list[tuple[float, float] | None], shapes: list[Shape], a: EmbeddingBagArgs) -> None:
        r, n = ranges[0], shapes[1][0]
        if r is not None and (r[0] < 0 or r[1] >= n):
            raise ShapeError(f"embedding_bag: index values in [{r[0]:g}, {r[1]:g}] are out of range for {n} embeddings "
                             f"(valid: 0 to {n - 1})")
        offsets = ranges[2] if len(ranges) > 2 and len(shapes[2]) == 1 and len(shapes[0]) == 1 and shapes[2][0] else None
        if offsets is not None:  # (offsets known now: their first is their least, their last their largest)
            if offsets[0] != 0:
                raise ShapeError(f"embedding_bag: offsets[0] has to be 0, i.e., the first sequence in the mini-batch has "
                                 f"to start from position 0 (the least offset is {offsets[0]:g})")
            if offsets[1] > shapes[0][0] or a.include_last_offset and offsets[1] != shapes[0][0]:
                raise ShapeError(f"embedding_bag: the last offset ({offsets[1]:g}) must be " + (
                    f"the input's length ({shapes[0][0]}) with include_last_offset=True (torch's gradient is garbage "
                    "otherwise)" if a.include_last_offset else f"at most the input's length ({shapes[0][0]})"))

    def torch(self, t: Any, xs: list[Any], a: EmbeddingBagArgs) -> Any:
        given = [x if isinstance(x, t.Tensor) else None for x in xs[2:4]] + [None] * (4 - len(xs))
        return t.nn.functional.embedding_bag(xs[0], xs[1], given[0], mode=a.mode, per_sample_weights=given[1],
                                             include_last_offset=a.include_last_offset, padding_idx=a.padding_idx)

    def bags(self, xs: list[Array], a: EmbeddingBagArgs) -> tuple[Array, Array, Array, Array | None]:
        """(row per entry, bag per entry, kept: not padding; per-sample weights or None), entries in input order."""
        idx, w = xs[0], xs[1]
        n = w.shape[0]
        rows = idx.reshape(-1).astype(np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(f"embedding_bag: index out of range for {n} embeddings")
        if idx.ndim == 2:
            bag = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
        else:
            offs = xs[2].astype(np.int64)
            if offs.size and offs[0] != 0:
                raise ValueError(f"offsets[0] has to be 0, i.e., the first sequence in the mini-batch has to start from "
                                 f"position 0. However, got {offs[0]}")
            if offs.size and (np.any(np.diff(offs) < 0) or offs[-1] > rows.size):
                raise ValueError(f"embedding_bag: offsets must be non-decreasing and at most the input's length ({rows.size})")
            if a.include_last_offset and offs.size and offs[-1] != rows.size:  # (torch's sum stops there, its mean
                raise ValueError(                                               # and max run on to the end)
                    f"embedding_bag: with include_last_offset=True the last offset ({offs[-1]}) must be the input's "
                    f"length ({rows.size}); gradtrace does not follow torch's results otherwise")
            starts = offs[:-1] if a.include_last_offset else offs
            ends = offs[1:] if a.include_last_offset else np.append(offs[1:], rows.size)
            bag = np.repeat(np.arange(starts.size), ends - starts)
        kept = rows != (a.padding_idx % n) if a.padding_idx is not None else np.ones(rows.shape, bool)
        psw = xs[3].reshape(-1) if len(xs) > 3 and np.ndim(xs[3]) else None
        return rows, bag, kept, psw

    def forward_saving(self, xs: list[Array], a: EmbeddingBagArgs) -> tuple[Array, Any]:
        w = xs[1]
        rows, bag, kept, psw = parts = self.bags(xs, a)
        out = np.zeros(self.shape([np.shape(x) for x in xs], a), w.dtype)
        rows, bag = rows[kept], bag[kept]
        if a.mode == "max":
            at = np.full(out.shape, -1, np.int64)
            for r, b in zip(rows, bag, strict=True):  # the first largest, as torch's `weight > current`
                new = at[b] < 0
                better = new | (w[r] > out[b])
                out[b] = np.where(better, w[r], out[b])
                at[b] = np.where(better, r, at[b])
            return out, (parts, at)
        scale = (psw[kept] if psw is not None else np.ones(rows.size)).astype(np.float64)
        if a.mode == "mean":
            count = np.bincount(bag, minlength=out.shape[0])
            scale = scale / count[bag]
        acc = np.zeros(out.shape, np.float64)
        np.add.at(acc, bag, w[rows].astype(np.float64) * scale[:, None])
        return acc.astype(w.dtype), (parts, scale)

    def forward(self, xs: list[Array], a: EmbeddingBagArgs) -> Array:
        return self.forward_saving(xs, a)[0]

    def backward_saved(self, g: Array, out: Array, xs: list[Array], a: EmbeddingBagArgs, saved: Any,
                       needs: tuple[bool, ...] | None = None) -> list[Array | None]:
        w = xs[1]
        (rows, bag, kept, psw), extra = saved if saved is not None else self.forward_saving(xs, a)[1]
        gw = np.zeros(w.shape, np.float64)
        if a.mode == "max":
            bags, cols = np.nonzero(extra >= 0)
            np.add.at(gw, (extra[bags, cols], cols), g[bags, cols])
            return [None, gw.astype(w.dtype)]
        np.add.at(gw, rows[kept], g[bag[kept]].astype(np.float64) * extra[:, None])
        grads: list[Array | None] = [None, gw.astype(w.dtype)]
        if psw is not None:
            gp = np.zeros(rows.size, np.float64)
            gp[kept] = (w[rows[kept]].astype(np.float64) * g[bag[kept]]).sum(axis=-1)
            grads += [None, gp.reshape(np.shape(xs[3])).astype(w.dtype)]
        return grads[: len(xs)]

    def backward(self, g: Array, out: Array, xs: list[Array], a: EmbeddingBagArgs) -> list[Array | None]:
        return self.backward_saved(g, out, xs, a, None)
