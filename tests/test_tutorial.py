"""The tutorial's two examples are gradtrace's first acceptance cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cli.specfile import load_spec
from services.trace import trace
from shared.spec import TraceSpec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

X = [[0.5739, 0.9303, 0.5375], [0.2379, 0.0570, 0.7423], [0.7322, 0.7695, 0.8314]]
W = [[0.8531, 0.5101], [0.8575, 0.3703]]
# The tutorial prints its random inputs to 4 decimals; each printed number is off by at most 5e-5,
# so a sum of four products is off by at most ~4 * 5e-5 * (1 + 1) from the tutorial's own result.
PRINTED = 4.5e-4


def test_chain_rule_pasted_code_gives_the_tutorials_numbers() -> None:
    result = trace(load_spec(EXAMPLES / "chain_rule.py")).result
    n = result.nodes
    assert result.output == "gx"
    assert n["x"].value.data == 2.0 and n["fx"].value.data == 11.0 and n["gx"].value.data == 1377.0
    assert n["gx"].grad.data == 1.0
    assert n["fx"].grad.data == 367.0
    assert n["x"].grad.data == 2569.0
    assert n["gx"].grad_fn == "AddBackward0"
    assert n["fx"].engines["reference"].grad.data == 367.0 and n["x"].engines["reference"].grad.data == 2569.0
    assert result.comparison.verdict == "agree"


def test_chain_rule_edges_split_fx_grad_into_363_and_4() -> None:
    t = trace(load_spec(EXAMPLES / "chain_rule.py"))
    out_edges = {e.dst: e for e in t.result.edges if e.src == "fx"}
    by_expr = {t.result.nodes[dst].expr: e.grad.data for dst, e in out_edges.items()}
    assert by_expr == {"fx**3": 363.0, "4*fx": 4.0}
    assert {t.result.nodes[d].expr: e.engines["reference"].data for d, e in out_edges.items()} == {"fx**3": 363.0, "4*fx": 4.0}


@pytest.mark.parametrize("example", ["chain_rule.py", "conv_weight_grad.json", "small_cnn.json", "program_mlp.py"])
def test_sum_of_outgoing_edge_grads_is_the_node_grad(example: str) -> None:
    t = trace(load_spec(EXAMPLES / example))
    sums: dict[str, np.ndarray] = {}
    for engine in ("torch", "reference"):
        edges = _edges(t, engine)
        for (src, _), g in edges.items():
            sums[src] = sums.get(src, 0) + g
        for src, total in sums.items():
            np.testing.assert_allclose(total, t.arrays[f"{engine}/grad/{src}"], rtol=1e-5, atol=1e-6)
        sums.clear()


def _edges(t, engine: str) -> dict[tuple[str, str], np.ndarray]:
    if engine == "torch":
        return {(e.src, e.dst): np.array(e.grad.data) for e in t.result.edges}
    return {(e.src, e.dst): np.array(e.engines["reference"].data) for e in t.result.edges}


def test_tutorial_first_snippet_x_grad_is_7() -> None:
    spec = TraceSpec(program="x = torch.tensor(2.0, requires_grad=True)\ny = x ** 2 + 3*x\ny.backward()\nprint(x.grad)\n")
    assert trace(spec).result.nodes["x"].grad.data == 7.0


@pytest.mark.parametrize("example", ["conv_weight_grad.json", "conv_model.json"])
def test_conv_weight_grad_is_cross_correlation_of_input_with_output_grad(example: str) -> None:
    t = trace(load_spec(EXAMPLES / example))
    wname = "weight" if "weight" in t.result.nodes else "conv.weight"
    out = "output" if "output" in t.result.nodes else "conv.out"
    wgrad = np.array(t.result.nodes[wname].grad.data)[0, 0]
    np.testing.assert_allclose(wgrad, [[1.7992, 2.2671], [1.7966, 2.4002]], atol=PRINTED)
    np.testing.assert_allclose(np.array(t.result.nodes[out].value.data)[0, 0], [[1.1893, 1.3916], [1.1448, 1.3950]], atol=PRINTED)
    assert abs(t.result.nodes["loss"].value.data - 5.1207) < 4 * PRINTED
    # Exactly: dL/dW[i,j] = sum of the 2x2 input window at (i, j), since dL/doutput is all ones.
    x = np.array(X, dtype=np.float32)
    windows = np.array([[x[i : i + 2, j : j + 2].sum() for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(wgrad, windows, rtol=1e-6)
    np.testing.assert_allclose(t.arrays[f"reference/grad/{wname}"][0, 0], windows, rtol=1e-6)
    assert t.result.nodes[out].grad_fn == "ConvolutionBackward0"
    assert t.result.comparison.verdict == "agree"
    if example == "conv_model.json":
        assert t.result.parameters["conv.weight"].grad.data == t.result.nodes["conv.weight"].grad.data


def test_conv_weight_grad_agrees_with_finite_differences() -> None:
    t = trace(load_spec(EXAMPLES / "conv_weight_grad.json"))
    np.testing.assert_allclose(t.arrays["numeric/grad/weight"], t.arrays["torch/grad/weight"], rtol=1e-4)
    pairs = {p.engines: p for p in t.result.comparison.pairs}
    assert pairs["torch~numeric"].ok and pairs["reference~numeric"].ok
