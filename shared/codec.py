"""Tensor codecs: numpy arrays to inline JSON or summaries, raw bytes and .npy."""

from __future__ import annotations

import io
import math
import sys

import numpy as np

from shared.result import TensorData

DEFAULT_INLINE_LIMIT = 1024


NONFINITE_TEXT = {math.inf: "Infinity", -math.inf: "-Infinity"}


def json_number(x: float) -> float | str:
    """A float as the JSON results carry it: itself, or 'Infinity', '-Infinity', 'NaN'."""
    if math.isfinite(x):
        return x
    return "NaN" if x != x else NONFINITE_TEXT[x]


def json_list(a: np.ndarray) -> object:
    """Array data as nested lists (a number for 0-d), non-finite floats as their strings: ready for json.dumps."""
    if a.ndim == 0:
        v = a.item()
        return v if not isinstance(v, float) or math.isfinite(v) else json_number(v)
    if a.dtype.kind != "f" or np.isfinite(a).all():
        return a.tolist() if a.ndim else a.item()
    return _objects(a).tolist()


def _objects(a: np.ndarray) -> np.ndarray:
    """`a` as an object array of Python numbers, non-finite floats as their JSON strings."""
    obj = a.astype(object)
    if a.dtype.kind == "f":
        obj[np.isnan(a)] = "NaN"
        obj[np.isposinf(a)] = "Infinity"
        obj[np.isneginf(a)] = "-Infinity"
    return obj


def summarize(a: np.ndarray) -> dict[str, float | str | None]:
    """min/max/mean/L2 norm of a tensor (None when it is empty; non-finite ones as their JSON strings)."""
    if a.size == 0:
        return {"min": None, "max": None, "mean": None, "norm": None}
    f = a.astype(np.float64, copy=False)
    with np.errstate(all="ignore"):
        stats = (f.min(), f.max(), f.mean(), np.linalg.norm(f.ravel()))
    return dict(zip(("min", "max", "mean", "norm"), (json_number(float(v)) for v in stats), strict=True))


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
    out: dict[str, object] = {"shape": list(a.shape), "dtype": dtype_name(a.dtype), "data": None, "summary": None, "checked": None}
    if checked is not None:
        out["checked"] = int(checked.sum())
        if a.size <= inline_limit:
            if a.ndim == 0:
                out["data"] = json_list(a) if checked else None
            else:
                obj = _objects(a)
                obj[~checked] = None
                out["data"] = obj.tolist()
            return out
        a = a[checked]
    if a.size > inline_limit:
        out["summary"] = summarize(a)
    else:
        out["data"] = json_list(a)
    return out


def encode(a: np.ndarray, inline_limit: int = DEFAULT_INLINE_LIMIT) -> TensorData:
    """Inline the numbers when `a` has at most `inline_limit` elements, else only a summary."""
    return TensorData.model_validate(encode_dict(a, inline_limit))


_LITTLE = sys.byteorder == "little"


def to_bytes(a: np.ndarray) -> bytes:
    """Raw C-order little-endian bytes; dtype and shape travel beside them."""
    if _LITTLE and a.dtype.byteorder in "=|<":  # already little-endian: tobytes copies in C order
        return a.tobytes()
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
