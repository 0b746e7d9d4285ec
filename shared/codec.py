"""Tensor codecs: numpy arrays to inline JSON or summaries, raw bytes and .npy."""

from __future__ import annotations

import io
import math

import numpy as np

from shared.result import Summary, TensorData

DEFAULT_INLINE_LIMIT = 1024


def _num(x: float) -> float | None:
    """JSON has no NaN/inf: map them to None."""
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(a: np.ndarray) -> object:
    if a.dtype.kind in "iub":
        return a.tolist()
    if np.isfinite(a).all():
        return a.tolist()
    return np.where(np.isfinite(a), a, np.nan).astype(object).tolist() if a.ndim else _num(a)


def summarize(a: np.ndarray) -> Summary:
    """min/max/mean/L2 norm of a tensor (None where empty or not finite)."""
    if a.size == 0:
        return Summary(min=None, max=None, mean=None, norm=None)
    f = a.astype(np.float64, copy=False)
    return Summary(min=_num(f.min()), max=_num(f.max()), mean=_num(f.mean()), norm=_num(np.linalg.norm(f.ravel())))


_DTYPE_NAMES: dict[np.dtype, str] = {}


def dtype_name(d: np.dtype) -> str:
    """'float32' for a numpy dtype (numpy's own .name is slow when called by the thousand)."""
    name = _DTYPE_NAMES.get(d)
    if name is None:
        name = _DTYPE_NAMES[d] = d.name
    return name


def encode_dict(a: np.ndarray, inline_limit: int = DEFAULT_INLINE_LIMIT) -> dict[str, object]:
    """TensorData as a plain dict (cheap to build by the thousand, validated once in bulk)."""
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    if a.size > inline_limit:
        return {"shape": list(a.shape), "dtype": dtype_name(a.dtype), "summary": summarize(a).model_dump()}
    if a.ndim == 0:
        v = a.item()
        data = v if isinstance(v, int) or math.isfinite(v) else None
    else:
        data = _jsonable(a)
    return {"shape": list(a.shape), "dtype": dtype_name(a.dtype), "data": data}


def encode(a: np.ndarray, inline_limit: int = DEFAULT_INLINE_LIMIT) -> TensorData:
    """Inline the numbers when `a` has at most `inline_limit` elements, else only a summary."""
    return TensorData.model_validate(encode_dict(a, inline_limit))


def to_bytes(a: np.ndarray) -> bytes:
    """Raw C-order little-endian bytes; dtype and shape travel beside them."""
    a = np.ascontiguousarray(a)
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def from_bytes(raw: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    """Inverse of `to_bytes`."""
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype, copy=False)


def to_npy(a: np.ndarray) -> bytes:
    """The .npy file format (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def from_npy(raw: bytes) -> np.ndarray:
    """Read .npy bytes without allowing pickled objects."""
    return np.load(io.BytesIO(raw), allow_pickle=False)
