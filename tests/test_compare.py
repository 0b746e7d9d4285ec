"""Engine comparison: per-tensor errors computed in cache-sized chunks equal those of one pass."""

from __future__ import annotations

import numpy as np
import pytest

import services.compare as compare


def _pairs(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for k in range(400):
        size = (0, 1, 16, 300, 5000)[k % 5]
        a = rng.standard_normal(size).astype(np.float32 if k % 2 else np.float64)
        b = (a * (1 + 1e-6 * rng.standard_normal(size))).astype(a.dtype)
        if k % 7 == 0 and size:
            a[0] = b[0] = np.nan  # NaN meets NaN: fine
        if k % 11 == 0 and size:
            b[-1] = np.nan  # NaN against a number
        if k % 13 == 0 and size:
            a[0], b[0] = np.inf, -np.inf
        if k % 17 == 0:
            b = np.zeros(size + 1, dtype=a.dtype)  # shapes differ
        if k % 3 == 0 and size % 2 == 0 and a.shape == b.shape:
            a, b = a.reshape(-1, 2), b.reshape(-1, 2)
        pairs.append((a, b))
    pairs.append((rng.standard_normal(3 * compare.CHUNK), rng.standard_normal(3 * compare.CHUNK)))  # over a chunk
    return pairs


@pytest.mark.parametrize("chunk", [1, 1000, 1 << 17])
def test_chunked_errors_equal_one_pass(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    pairs = _pairs(np.random.default_rng(0))
    monkeypatch.setattr(compare, "CHUNK", 1 << 40)
    whole = compare.batch_errors(pairs, 1e-4, 1e-5)
    monkeypatch.setattr(compare, "CHUNK", chunk)
    parts = compare.batch_errors(pairs, 1e-4, 1e-5)
    for w, p in zip(whole, parts, strict=True):
        np.testing.assert_array_equal(w, p)
    max_abs, _, ok = parts
    assert ok[1] and ok[7] and ok.sum() > 200  # close pairs, NaN meeting NaN
    assert not ok[11] and not ok[13] and not ok[-1]  # NaN against a number, inf against -inf, unrelated arrays
    assert not ok[17] and max_abs[17] == np.inf  # shapes differ
