"""`gradtrace run`: table, JSON, graph files and exit codes, in one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
runner = CliRunner()


def test_installed_console_script_runs_the_chain_rule() -> None:
    exe = Path(sys.executable).parent / "gradtrace"
    proc = subprocess.run([str(exe), "run", str(EXAMPLES / "chain_rule.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "2569" in proc.stdout and "367" in proc.stdout and "PowBackward0" in proc.stdout
    assert "verdict: agree" in proc.stdout


def test_json_output_is_a_trace_result() -> None:
    res = runner.invoke(app, ["run", str(EXAMPLES / "chain_rule.py"), "--json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["nodes"]["x"]["grad"]["data"] == 2569.0
    assert data["comparison"]["verdict"] == "agree"


def test_dot_and_svg_files(tmp_path: Path) -> None:
    dot, svg = tmp_path / "g.dot", tmp_path / "g.svg"
    res = runner.invoke(app, ["run", str(EXAMPLES / "conv_weight_grad.json"), "--dot", str(dot), "--svg", str(svg)])
    assert res.exit_code == 0, res.output
    assert "ConvolutionBackward0" in dot.read_text() and "digraph" in dot.read_text()
    assert "<svg" in svg.read_text()


def test_bad_spec_exits_2_with_reason_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = torch.tensor(1.0, requires_grad=True)\nimport os\n")
    res = runner.invoke(app, ["run", str(bad)])
    assert res.exit_code == 2
    assert "line 2" in res.stderr and "import of 'os'" in res.stderr
    broken = tmp_path / "bad.json"
    broken.write_text('{"nodes": [], "program": "y=1"}')
    res = runner.invoke(app, ["run", str(broken)])
    assert res.exit_code == 2 and "exactly one of" in res.stderr


def test_disagreement_exits_1(tmp_path: Path) -> None:
    # relu at exactly 0 has a kink: finite differences see 0.5, autograd says 0, so the engines disagree.
    spec = tmp_path / "kink.json"
    spec.write_text(json.dumps({
        "inputs": {"x": {"value": [0.0, 1.0], "dtype": "float64"}},
        "nodes": [{"name": "r", "op": "relu", "inputs": ["x"]}, {"name": "s", "op": "sum", "inputs": ["r"]}],
        "engines": ["torch", "reference", "numeric"],
    }))
    res = runner.invoke(app, ["run", str(spec)])
    assert res.exit_code == 1
    assert "disagree" in res.stdout
