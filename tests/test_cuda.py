"""On a machine with a GPU: every example traces with `device: cuda` to torch's CPU numbers, and the reference
engine agrees. Skipped where torch sees no CUDA device (CI); run on the device machine (bench/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cli.specfile import load_spec
from services.trace import trace

EXAMPLES = sorted(p for p in (Path(__file__).resolve().parent.parent / "examples").iterdir()
                  if p.suffix in (".py", ".json"))


def same_trace_on(path: Path, device: str) -> None:
    """Trace `path` on the CPU and on `device` (torch and reference engines): the verdict agrees on the device and
    every value and gradient torch gives there is the CPU's, to float32 rounding."""
    spec = load_spec(path).model_copy(update={"engines": ["torch", "reference"]})
    cpu = trace(spec)
    dev = trace(spec.model_copy(update={"device": device}))
    assert dev.result.comparison.verdict == "agree", dev.result.comparison.model_dump_json()[:2000]
    keys = [k for k in cpu.arrays if k.startswith("torch/")]
    assert keys and sorted(keys) == sorted(k for k in dev.arrays if k.startswith("torch/"))
    for k in keys:
        a, b = cpu.arrays[k], dev.arrays[k]
        assert a.shape == b.shape and a.dtype == b.dtype, k
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-5, err_msg=k)
        else:
            np.testing.assert_array_equal(b, a, err_msg=k)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_traces_on_the_gpu_as_on_the_cpu(path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    same_trace_on(path, "cuda")


def test_every_op_case_agrees_on_the_gpu() -> None:
    """Every case of tests/test_ops*.py (each registered op) traced with `device: cuda`: torch on the GPU against
    the reference engine, values, node grads and edge grads (tests/test_ops.py's check), in float32 and float64."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from test_ops import ENGINES, all_cases, check

    failed = []
    for case in all_cases():
        inputs, nodes, kw = case.values
        engines = [e for e in kw.get("engines", ENGINES) if e != "numeric"]
        for dtype in ("float32", "float64"):
            try:
                check(inputs, nodes, dtype, **{**kw, "engines": engines, "device": "cuda"})
            except AssertionError as e:
                failed.append(f"{case.id} {dtype}: {str(e)[:300]}")
    assert not failed, f"{len(failed)} op cases differ on the GPU:\n" + "\n".join(failed[:20])
