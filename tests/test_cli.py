"""`gradtrace run`: table, JSON, graph files and exit codes, in one process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_dtype_comes_from_the_option_or_the_program_s_set_default_dtype(tmp_path: Path) -> None:
    """`gradtrace run --dtype float64 prog.py`, or `torch.set_default_dtype(torch.float64)` at the program's top:
    the trace is float64 (a later call that differs from the spec's dtype stays refused)."""
    body = "torch.manual_seed(0)\nnet = nn.Linear(3, 2)\nx = torch.randn(4, 3)\nloss = net(x).pow(2).sum()\nloss.backward()\n"
    plain, top, late = tmp_path / "plain.py", tmp_path / "top.py", tmp_path / "late.py"
    plain.write_text("import torch\nimport torch.nn as nn\n" + body)
    top.write_text("import torch\nimport torch.nn as nn\ntorch.set_default_dtype(torch.float64)\n" + body)
    late.write_text("import torch\nimport torch.nn as nn\nx0 = torch.ones(2)\ntorch.set_default_dtype(torch.float64)\n" + body)
    for args in (["run", "--json", "--dtype", "float64", str(plain)], ["run", "--json", str(top)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert out["dtype"] == "float64" and out["nodes"]["net.weight"]["dtype"] == "float64"
    assert json.loads(runner.invoke(app, ["run", "--json", str(plain)]).stdout)["dtype"] == "float32"
    r = runner.invoke(app, ["run", str(late)])
    assert r.exit_code == 2 and "set \"dtype\" in the spec" in r.output


def test_dot_and_svg_files(tmp_path: Path) -> None:
    dot, svg = tmp_path / "g.dot", tmp_path / "g.svg"
    res = runner.invoke(app, ["run", str(EXAMPLES / "conv_weight_grad.json"), "--dot", str(dot), "--svg", str(svg)])
    assert res.exit_code == 0, res.output
    assert "ConvolutionBackward0" in dot.read_text() and "digraph" in dot.read_text()
    assert "<svg" in svg.read_text()


def test_the_picture_runs_top_to_bottom_in_the_gradient_s_direction(tmp_path: Path) -> None:
    """The small CNN's picture: the loss at the top, the input at the bottom, arrows from each node to its inputs
    (the way the gradient flows), and about as wide as tall (it once was 8,492 px wide, laid out left to right)."""
    svg = tmp_path / "cnn.svg"
    res = runner.invoke(app, ["run", str(EXAMPLES / "small_cnn.json"), "--svg", str(svg)])
    assert res.exit_code == 0, res.output
    text = svg.read_text()
    width, height = (float(v) for v in re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"', text).groups())
    assert width < 1.5 * height and width < 1500, (width, height)
    top = {m[1]: float(m[2]) for m in re.finditer(
        r'class="node">\s*<title>([^<]*)</title>\s*<polygon[^>]*points="[\d.]+,(-?[\d.]+)', text)}
    assert top["n_loss"] == min(top.values()) and top["n_images"] == max(top.values()), top  # y grows downwards
    edge = re.search(r'class="edge">\s*<title>([^<]*)</title>', text)[1]
    assert edge.split("&#45;&gt;")[0] in ("n_loss", *top) and "n_images&#45;&gt;" not in text  # nothing flows out of the input


def test_svg_without_graphviz_is_one_line_and_exit_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    dot, svg = tmp_path / "g.dot", tmp_path / "g.svg"
    res = runner.invoke(app, ["run", str(EXAMPLES / "chain_rule.py"), "--dot", str(dot), "--svg", str(svg)])
    assert res.exit_code == 4, res.output
    assert "Graphviz's `dot` is not installed" in res.stderr and "apt-get install graphviz" in res.stderr
    assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) <= 2, res.stderr
    assert "digraph" in dot.read_text() and not svg.exists()  # DOT needs no program
    assert "2569" in res.stdout  # the trace itself still printed


def test_bad_spec_exits_2_with_reason_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = torch.tensor(1.0, requires_grad=True)\nd = os.getcwd()\n")
    res = runner.invoke(app, ["run", str(bad)])
    assert res.exit_code == 2
    assert "line 3" in res.stderr and "'os.getcwd', imported from a" in res.stderr
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


def test_show_prints_a_node_in_full_as_torch_does(tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text("x = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)\nidx = torch.tensor([2, 0])\n"
                    "y = torch.log(x)\nz = (y[idx] * 2).sum()\n")
    res = runner.invoke(app, ["run", str(prog), "--show", "y", "--show", "idx"])
    assert res.exit_code == 0, res.output
    assert "tensor([0.0000,   -inf, 0.6931])" in res.stdout  # torch's own formatting, -inf as torch prints it
    assert "tensor([2, 0])" in res.stdout  # int64 as integers
    assert "non-finite values" in res.stdout and "log gives -inf at y[1]: x[1] = 0" in res.stdout
    assert runner.invoke(app, ["run", str(prog), "--fail-on-nonfinite"]).exit_code == 1
    res = runner.invoke(app, ["run", str(prog), "--show", "nope"])
    assert res.exit_code == 2 and "no node named 'nope'" in res.stderr
    full = runner.invoke(app, ["run", str(EXAMPLES / "chain_rule.py"), "--full"])
    assert full.exit_code == 0 and full.stdout.count("value (torch): tensor(") == 9


def test_numeric_table_says_how_many_elements_were_checked(tmp_path: Path) -> None:
    spec = tmp_path / "big.json"
    spec.write_text(json.dumps({
        "inputs": {"x": {"shape": [10, 10], "init": "normal"}},
        "nodes": [{"name": "y", "op": "tanh", "inputs": ["x"]}, {"name": "s", "op": "sum", "inputs": ["y"]}],
        "engines": ["torch", "reference", "numeric"], "numeric": {"max_elements_per_leaf": 7},
    }))
    res = runner.invoke(app, ["run", str(spec)])
    assert res.exit_code == 0, res.output
    assert "7 of 100 leaf elements checked" in res.stdout
    data = json.loads(runner.invoke(app, ["run", str(spec), "--json"]).stdout)
    g = data["nodes"]["x"]["engines"]["numeric"]["grad"]
    flat = [v for row in g["data"] for v in row]
    assert g["checked"] == 7 and sum(v is not None for v in flat) == 7  # null marks an element not checked
    assert data["health"]["x"]["vanishing"] is False and data["health"]["x"]["grad_norm"] > 0


def test_vanishing_and_exploding_gradients_are_flagged(tmp_path: Path) -> None:
    prog = tmp_path / "h.py"
    prog.write_text("a = torch.tensor([1.0, 2.0], requires_grad=True)\nb = torch.tensor([3.0], requires_grad=True)\n"
                    "y = (a * 1e-9).sum() + (b * 1e5).sum()\n")
    res = runner.invoke(app, ["run", str(prog)])
    assert res.exit_code == 0 and "vanishing" in res.stdout and "exploding" in res.stdout
    health = json.loads(runner.invoke(app, ["run", str(prog), "--json"]).stdout)["health"]
    assert health["a"]["vanishing"] and not health["a"]["exploding"]
    assert health["b"]["exploding"] and health["b"]["ratio"] == 1e5 / 3
