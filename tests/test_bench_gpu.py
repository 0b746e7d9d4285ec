"""bench/gpu.py run alone (`python -m bench.gpu`): on a machine without CUDA it says so; its table renders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import gpu_section
from bench.stats import ratio, summary

ROOT = Path(__file__).resolve().parent.parent


def test_standalone_run_without_a_gpu_reports_skipped(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the section runs for real (see the device notes in bench/README.md)")
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, "-m", "bench.gpu", "--out", str(out), "--redis-server", ""], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text()) == {"gpu": {"skipped": "skipped: no CUDA device"}}
    assert "skipped: no CUDA device" in r.stdout


def test_the_section_renders_bare_and_floor_ratios() -> None:
    bare, eng, full = summary([1.0, 1.1, 1.2, 1.3]), summary([1.5, 1.6, 1.7, 1.8]), summary([7.0, 7.1, 7.2, 7.3])
    floor = {"median": 0.005, "n": 1}
    row = {"batch": 32, "bytes_moved": 254_264, "copy_floor_ms": 0.005, "bare_gpu_ms": bare, "torch_gpu_ms": eng,
           "full_trace_ms": full, "store_ms": None, "torch_over_bare": ratio(eng, bare), "full_over_bare": ratio(full, bare),
           "torch_over_floor": ratio(eng, floor), "full_over_floor": ratio(full, floor),
           "stages_ms": {"compile": summary([0.3, 0.4, 0.5]), "torch": summary([1.6, 1.7, 1.8])}}
    bw = summary([55.0, 55.1, 55.2])
    text = "\n".join(gpu_section({"device": "NVIDIA H200", "torch": "2.11.0", "store": False,
                                  "bandwidth": {"h2d_GBps": bw, "d2h_GBps": bw}, "rows": [row]}))
    assert "NVIDIA H200" in text and "bare torch fwd+bwd on GPU" in text and "full trace, no store" in text
    line = next(x for x in text.splitlines() if x.startswith("| 32 |"))
    assert "1.43x" in line  # torch engine / bare: medians 1.65 / 1.15
    assert "Where the full trace's time goes at batch 32 (median ms): compile 0.400, torch 1.70." in text
