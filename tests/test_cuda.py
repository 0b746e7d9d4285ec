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
    every value and gradient torch gives there is the CPU's, to float32 rounding relative to the tensor's scale
    (a GPU's sin/exp may differ from the CPU's by an ulp, which an argument of thousands, such as a positional
    encoding's, turns into ~1e-4 of a value in [-1, 1]; a wrong kernel differs by the scale itself)."""
    spec = load_spec(path).model_copy(update={"engines": ["torch", "reference"]})
    cpu = trace(spec)
    dev = trace(spec.model_copy(update={"device": device}))
    assert dev.result.comparison.verdict == "agree", dev.result.comparison.model_dump_json()[:2000]
    keys = [k for k in cpu.arrays if k.startswith("torch/")]
    assert keys and sorted(keys) == sorted(k for k in dev.arrays if k.startswith("torch/"))
    differ = []
    for k in keys:
        a, b = cpu.arrays[k], dev.arrays[k]
        assert a.shape == b.shape and a.dtype == b.dtype, k
        if a.dtype.kind != "f":
            if not np.array_equal(a, b):
                differ.append(f"{k}: integers differ")
            continue
        finite = np.isfinite(a)
        if not np.array_equal(finite, np.isfinite(b)) or not np.array_equal(a[~finite], b[~finite], equal_nan=True):
            differ.append(f"{k}: inf or nan at other places")
            continue
        scale = float(np.abs(a[finite]).max(initial=0.0))
        err = float(np.abs(b[finite].astype(np.float64) - a[finite]).max(initial=0.0))
        if not err <= 2e-4 * max(scale, 0.1):
            differ.append(f"{k}: max |gpu - cpu| {err:.3g}, scale {scale:.3g}")
    assert not differ, f"{len(differ)} of {len(keys)} tensors differ:\n" + "\n".join(differ[:30])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_traces_on_the_gpu_as_on_the_cpu(path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    same_trace_on(path, "cuda")


# Op cases where torch's CUDA kernel gives other numbers than its CPU one, and the note that says so (Op.on_cuda).
KNOWN_ON_CUDA = {
    "sort-ties-{}": "sort", "sort-ties-{'descending': True}": "sort",  # ties in the order CUDA's sort likes
    **{f"topk-ties-{args}": "topk" for args in ({"k": 2}, {"k": 4}, {"k": 3, "largest": False}, {"k": 1, "dim": 0})},
    "scatter-src-repeated": "scatter",  # which repeated write lands is undefined
    "median-dim-ties": "median",  # CUDA's pick among equal values along a dim (not a first or last rule)
    "weight_norm-dim0": "weight_norm", "weight_norm-dim1": "weight_norm",  # the fused kernel's float64, ~1e-8 off
    "hardsigmoid": "hardsigmoid", "hardswish": "hardswish",  # one sixth rounded to float32, in float64 too
}


def test_every_op_case_agrees_on_the_gpu() -> None:
    """Every case of tests/test_ops*.py (each registered op) traced with `device: cuda`: torch on the GPU against
    the reference engine, values, node grads and edge grads (tests/test_ops.py's check), in float32 and float64.
    Where torch's CUDA kernel differs from its CPU one (KNOWN_ON_CUDA), the result's notes must say so."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from test_ops import ENGINES, all_cases, check, make_spec

    failed = []
    for case in all_cases():
        inputs, nodes, kw = case.values
        engines = [e for e in kw.get("engines", ENGINES) if e != "numeric"]
        for dtype in ("float32", "float64"):
            args = {**kw, "engines": engines, "device": "cuda"}
            try:
                check(inputs, nodes, dtype, **args)
            except AssertionError as e:
                notes = trace(make_spec(inputs, nodes, dtype, **args)).graph.notes
                known = KNOWN_ON_CUDA.get(case.id) or KNOWN_ON_CUDA.get(case.id.split("-")[0])  # hardswish-kinks
                if known and any(n.startswith(f"{known}:") for n in notes):
                    continue
                failed.append(f"{case.id} {dtype}: {str(e)[:300]}")
    print("\n".join(failed))  # every one, in the report's captured output
    assert not failed, f"{len(failed)} op cases differ on the GPU:\n" + "\n".join(failed[:20])
