"""The torch engine's host copies: one packed copy per dtype must give the same arrays as .cpu()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.engines.torch_engine import to_host


def test_batched_host_copy_matches_per_tensor_copies() -> None:
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(2, 3, generator=g), torch.tensor(5.0, dtype=torch.float64), torch.randn(4, generator=g).t(),
          torch.arange(6).reshape(2, 3), torch.randn(3, 2, generator=g).t(), torch.zeros(0, 3)]
    plain = to_host(ts, batched=False)
    packed = to_host(ts, batched=True)
    for a, b, t in zip(plain, packed, ts, strict=True):
        assert a.shape == b.shape == tuple(t.shape) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_cuda_trace_matches_cpu_when_a_gpu_is_present() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from pathlib import Path

    from cli.specfile import load_spec
    from services.trace import trace

    spec = load_spec(Path(__file__).resolve().parent.parent / "examples" / "small_cnn.json")
    cpu = trace(spec.model_copy(update={"engines": ["torch", "reference"]}))
    gpu = trace(spec.model_copy(update={"engines": ["torch", "reference"], "device": "cuda"}))
    assert gpu.result.comparison.verdict == "agree"
    np.testing.assert_allclose(gpu.arrays["torch/grad/0.weight"], cpu.arrays["torch/grad/0.weight"], rtol=1e-4, atol=1e-6)
