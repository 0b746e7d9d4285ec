"""Program text: the whitelist accepts what users paste and rejects everything else with line and column."""

from __future__ import annotations

import numpy as np
import pytest

from services.compiler import compile_spec
from services.errors import SpecError
from services.trace import trace
from shared.spec import TraceSpec


def run(program: str, **kw: object):
    return trace(TraceSpec(program=program, **kw))


def test_functions_methods_and_module_aliases() -> None:
    t = run(
        "import torch\nimport torch.nn.functional as F\nimport numpy as np\n"
        "x = torch.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)\n"
        "a = relu(x)\nb = torch.relu(x)\nc = F.relu(x)\nd = x.relu()\ne = torch.nn.functional.relu(x)\n"
        "s = (a + b + c + d + e).sum()\n"
    )
    for name in "abcde":
        np.testing.assert_array_equal(t.arrays[f"torch/value/{name}"], [[1, 0], [3, 0.5]])
    np.testing.assert_array_equal(t.arrays["torch/grad/x"], [[5, 0], [5, 5]])
    assert t.result.nodes["d"].grad_fn == "ReluBackward0"


def test_augmented_assignment_rebinds_to_a_new_node() -> None:
    t = run("x = torch.tensor(1.5, requires_grad=True)\nc = x * 1\nc += c + 1\nc *= 2\n")
    nodes = t.result.nodes
    # A name means its last binding, as in Python: c is the final value, earlier bindings are c@1, c@2.
    # (On a leaf that requires grad torch refuses `+=`: tests/test_program_idioms.py.)
    assert nodes["c@2"].value.data == 4.0 and nodes["c@2"].expr == "c += c + 1"
    assert t.result.output == "c" and nodes["c"].value.data == 8.0
    assert nodes["c@1"].value.data == 1.5 and nodes["x"].grad.data == 4.0  # d(2 * (2c + 1)) / dx


def test_keyword_and_positional_arguments_follow_torch() -> None:
    t = run(
        "x = torch.rand(2, 3, 4, requires_grad=True)\n"
        "w = torch.randn(6, 4, requires_grad=True)\n"
        "y = F.linear(x, w).softmax(dim=-1)\n"
        "z = torch.cat([y, y * 2], dim=1).reshape(2, -1).sum(1, keepdim=True)\n"
        "q = torch.transpose(z, 0, 1).permute(1, 0).flatten().mean()\n"
        "r = F.leaky_relu(q, 0.2) + F.gelu(q, approximate='tanh') + x.pow(2).max()\n"
    )
    assert t.result.nodes["y"].shape == [2, 3, 6]
    assert t.result.nodes["z"].shape == [2, 1]
    assert t.result.output == "r"
    assert t.result.comparison.verdict == "agree"


def test_int_literal_tensor_is_int64_like_torch() -> None:
    with pytest.raises(SpecError, match="floating point"):
        compile_spec(TraceSpec(program="x = torch.tensor([1, 2], requires_grad=True)\ny = x.sum()\n"))


def test_dtype_keyword_and_backward_gradient() -> None:
    t = run(
        "x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)\n"
        "y = x * x\n"
        "y.backward(torch.tensor([1.0, 10.0]))\n"
    )
    assert t.result.nodes["x"].dtype == "float64"
    assert t.result.nodes["x"].grad.data == [2.0, 40.0]


def test_default_output_is_the_last_node_and_backward_overrides_it() -> None:
    g = compile_spec(TraceSpec(program="x = torch.tensor(1.0, requires_grad=True)\ny = x * 2\ny.backward()\nz = y * 3\n"))
    assert g.output == "y"


@pytest.mark.parametrize(
    ("program", "line", "needle"),
    [
        ("import os\nx = torch.ones(1)\nos.system(x)\n", 3, "'os.system', imported from a module gradtrace does not trace"),
        ("from subprocess import run\ny = run(['ls'])\n", 2, "'subprocess.run', imported from a module gradtrace"),
        ("import os.path\ny = os.path.join('a')\n", 2, "'os.path.join', imported from a module gradtrace"),
        ("import matplotlib.pyplot as plt\nx = torch.ones(1)\nplt.plot(x.tolist())\n", 3, "'matplotlib.pyplot.plot', imported"),
        ("from . import sibling\n", 1, "relative import"),
        ("from os import *\n", 1, "import *"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = x.__class__\n", 2, "dunder"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = __import__('os')\n", 2, "dunder"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = eval('x')\n", 2, "unknown function 'eval'"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = open('/etc/passwd')\n", 2, "unknown function"),
        ("x = torch.tensor(1.0, requires_grad=True)\nf = lambda v: open('/etc/passwd')\ny = f(x)\n", 2, "unknown function 'open'"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = [v for v in x]\n", 2, "iteration over a 0-d tensor"),
        ("y = [v for v in torch.nn.ReLU()]\n", 1, "a comprehension goes over range(...)"),
        ("x = torch.tensor(1.0, requires_grad=True)\nfor i in x:\n    y = x\n", 2, "needs their length"),
        ("x = torch.tensor(1.0, requires_grad=True)\nwhile True:\n    pass\n", 2, "ever become false"),
        ("x = torch.rand(2, requires_grad=True)\ny = x[x > 0.5]\n", 2, "depends on the data"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = x.grad\n", 2, "cannot be used inside the computation"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = torch.load('f')\n", 2, "unknown function 'torch.load'"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = x.numpy()\n", 2, "needs the tensor's value"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = x + z\n", 2, "unknown name 'z'"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = x * 'a'\n", 2, "arithmetic needs tensors and numbers"),
        ("x = torch.tensor(1.0, requires_grad=True)\nclass A(dict):\n    pass\n", 2, "only subclasses of nn.Module"),
        ("x = torch.tensor(1.0, requires_grad=True)\ndef f(v=open('x')):\n    pass\n", 2, "unknown function 'open'"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = super().__init__()\n", 2, "super() outside a method"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = 9 ** 9 ** 9 * x\n", 2, "constant power"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = x if x else x\n", 2, "depend on the data"),
        ("x = torch.tensor(1.0, requires_grad=True)\na, b = x\n", 2, "cannot unpack"),
        ("x = torch.tensor(1.0, requires_grad=True)\nx.grad.zero_()\n", 2, "cannot be used inside the computation"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = torch.relu(x, inplace=__import__('os'))\n", 2, "dunder"),
        ("x = torch.tensor(1.0, requires_grad=True)\ny = x +\n", 2, "syntax error"),
        ("torch = 3\n", 1, "module"),
    ],
)
def test_hostile_or_unsupported_program_text_is_rejected_with_its_line(program: str, line: int, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program=program))
    assert info.value.line == line
    assert needle in str(info.value)
    assert "program" in info.value.loc


def test_rejected_program_never_runs(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "ran"
    monkeypatch.chdir(tmp_path)
    text = f"x = torch.tensor(1.0, requires_grad=True)\ny = open('{marker}', 'w')\n"
    with pytest.raises(SpecError):
        compile_spec(TraceSpec(program=text))
    assert not marker.exists()


def test_shape_error_names_node_line_and_shapes() -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program="a = torch.rand(2, 3, requires_grad=True)\nb = torch.rand(4, 3)\nc = a + b\n"))
    e = info.value
    assert e.node == "c" and e.line == 3
    assert "[2, 3]" in str(e) and "[4, 3]" in str(e)


@pytest.mark.parametrize("terms", [3000, 50000])
def test_expressions_too_deep_for_the_parser_are_a_spec_error(terms: int) -> None:
    with pytest.raises(SpecError, match="nested too deeply"):
        compile_spec(TraceSpec(program="x = torch.tensor(1.0, requires_grad=True)\ny = x" + " + x" * terms))


def test_long_program_of_many_lines_compiles() -> None:
    lines = ["x = torch.tensor(1.0, requires_grad=True)"] + ["x = x * 1.001 + 0.5" for _ in range(2000)]
    g = compile_spec(TraceSpec(program="\n".join(lines)))
    assert len(g.nodes) == 4000 and g.output == "x" and "x@2000" in g.names() and "x@1" in g.leaves


def test_a_program_compiled_again_from_its_cached_tree_gives_the_same_graph() -> None:
    # small programs keep their syntax tree: compiling must not change it (loops unroll into new lists)
    from services.compiler.program import PARSE_CACHE_CHARS, parse

    text = ("import torch\nx = torch.tensor([1.0, 2.0], requires_grad=True)\ny = x\n"
            "for i in range(3):\n    y = y * 2 + i\ns = y.sum()\ns.backward()\n")
    first, again = (compile_spec(TraceSpec(program=text)) for _ in range(2))
    assert [(n.name, n.expr) for n in first.nodes] == [(n.name, n.expr) for n in again.nodes]
    assert len(first.nodes) == 7 and parse(text) is parse(text)
    big = text + "# padding\n" * (PARSE_CACHE_CHARS // 10)
    assert parse(big) is not parse(big)  # large programs are parsed each time: the cache stays small
