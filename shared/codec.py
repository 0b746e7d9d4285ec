"""Tensor codecs: numpy arrays to inline JSON or summaries, raw bytes and .npy."""

from __future__ import annotations

import io

import numpy as np

from shared.result import TensorData

DEFAULT_INLINE_LIMIT = 1024


def summarize(a: np.ndarray) -> dict[str, float | None]:
    """min/max/mean/L2 norm of a tensor (None when it is empty; NaN or inf when it holds them)."""
    if a.size == 0:
        return {"min": None, "max": None, "mean": None, "norm": None}
    f = a.astype(np.float64, copy=False)
    with np.errstate(all="ignore"):
        return {"min": float(f.min()), "max": float(f.max()), "mean": float(f.mean()), "norm": float(np.linalg.norm(f.ravel()))}


_DTYPE_NAMES: dict[np.dtype, str] = {}


def dtype_name(d: np.dtype) -> str:
    """'float32' for a numpy dtype (numpy's own .name is slow when called by the thousand)."""
    name = _DTYPE_NAMES.get(d)
    if name is None:
        name = _DTYPE_NAMES[d] = d.name
    return name


def encode_dict(a: np.ndarray, inline_limit: int = DEFAULT_INLINE_LIMIT, checked: np.ndarray | None = None) -> dict[str, object]:
    """TensorData as a plain dict (cheap to build by the thousand, validated once in bulk). With `checked`
    (finite differences), elements not evaluated are None and the count of evaluated ones is given."""
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    out: dict[str, object] = {"shape": list(a.shape), "dtype": dtype_name(a.dtype)}
    if checked is not None:
        out["checked"] = int(checked.sum())
        if a.size <= inline_limit:
            out["data"] = np.where(checked, a, None).tolist() if a.ndim else (a.item() if checked else None)
            return out
        a = a[checked]
    if a.size > inline_limit:
        out["summary"] = summarize(a)
    else:
        out["data"] = a.tolist() if a.ndim else a.item()
    return out


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
