"""Node-list and model specs: they compile, trace, and fail with errors that name the field or node."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from services.compiler import Limits, compile_spec
from services.errors import SpecError
from services.trace import trace
from shared.spec import TraceSpec


def nodes_spec(nodes: list[dict], **kw: object) -> TraceSpec:
    inputs = kw.pop("inputs", {"a": {"shape": [2, 3], "seed": 1}, "b": {"shape": [3], "seed": 2}})
    return TraceSpec(inputs=inputs, nodes=nodes, **kw)


def test_nodes_out_of_order_are_sorted_topologically() -> None:
    spec = nodes_spec([
        {"name": "L", "op": "sum", "inputs": ["y"]},
        {"name": "y", "op": "mul", "inputs": ["a", "b"]},
    ])
    t = trace(spec)
    np.testing.assert_allclose(t.arrays["torch/grad/b"], t.arrays["torch/value/a"].sum(axis=0), rtol=1e-6)
    assert t.result.output == "L"


def test_nodes_in_order_keep_it_and_draw_as_torch_runs_them() -> None:
    """A list already in order is run as written (Kahn's algorithm would put the root d2 before d1): the
    dropout masks are the ones torch draws running the nodes top to bottom."""
    import torch

    spec = nodes_spec([
        {"name": "y", "op": "mul", "inputs": ["a", "b"]},
        {"name": "d1", "op": "dropout", "inputs": ["y"]},
        {"name": "d2", "op": "dropout", "inputs": ["a"]},
        {"name": "s", "op": "add", "inputs": ["d1", "d2"]},
        {"name": "L", "op": "sum", "inputs": ["s"]},
    ], seed=7)
    t = trace(spec)
    assert [n.name for n in t.graph.nodes] == ["y", "d1", "d2", "s", "L"]
    torch.manual_seed(7)
    a, b = (torch.from_numpy(t.arrays[f"torch/value/{k}"].copy()) for k in "ab")
    d1 = torch.nn.functional.dropout(a * b, 0.5)
    d2 = torch.nn.functional.dropout(a, 0.5)
    np.testing.assert_array_equal(t.arrays["torch/value/d1"], d1.numpy())
    np.testing.assert_array_equal(t.arrays["torch/value/d2"], d2.numpy())


@pytest.mark.parametrize(
    ("nodes", "node", "needle"),
    [
        ([{"name": "y", "op": "frobnicate", "inputs": ["a"]}], "y", "unknown op"),
        ([{"name": "y", "op": "add", "inputs": ["a"]}], "y", "takes 2 tensor inputs"),
        ([{"name": "y", "op": "add", "inputs": ["a", "nope"]}], "y", "unknown input 'nope'"),
        ([{"name": "y", "op": "sum", "inputs": ["a"], "args": {"dimm": 1}}], "y", "dimm"),
        ([{"name": "y", "op": "sum", "inputs": ["a"], "args": {"dim": 5}}], "y", "out of range"),
        ([{"name": "y", "op": "relu", "inputs": ["a"]}, {"name": "y", "op": "relu", "inputs": ["a"]}], "y", "defined twice"),
        ([{"name": "y", "op": "add", "inputs": ["a", "z"]}, {"name": "z", "op": "add", "inputs": ["y", "b"]}], "y", "cycle"),
        ([{"name": "y", "op": "matmul", "inputs": ["a", "a"]}], "y", "inner sizes"),
        ([{"name": "y", "op": "reshape", "inputs": ["a"], "args": {"shape": [4, -1]}}], "y", "invalid for input of size 6"),
    ],
)
def test_bad_nodes_name_the_node(nodes: list[dict], node: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(nodes_spec(nodes))
    assert info.value.node == node
    assert needle in str(info.value)
    assert info.value.loc[0] == "nodes"


def test_non_scalar_output_needs_grad_output() -> None:
    with pytest.raises(SpecError, match="not a scalar") as info:
        compile_spec(nodes_spec([{"name": "y", "op": "mul", "inputs": ["a", "b"]}]))
    assert info.value.loc == ("output",)
    t = trace(nodes_spec([{"name": "y", "op": "mul", "inputs": ["a", "b"]}], grad_output=[1.0, 2.0, 3.0]))
    np.testing.assert_allclose(t.arrays["torch/grad/a"], np.broadcast_to(t.arrays["torch/value/b"] * [1, 2, 3], (2, 3)))


def test_output_that_needs_no_grad_is_rejected() -> None:
    spec = nodes_spec([{"name": "y", "op": "sum", "inputs": ["a"]}], inputs={"a": {"value": [1.0], "requires_grad": False}})
    with pytest.raises(SpecError, match="does not depend"):
        compile_spec(spec)


def test_limits_are_enforced() -> None:
    spec = nodes_spec([{"name": "y", "op": "sum", "inputs": ["a"]}])
    with pytest.raises(SpecError, match="limit"):
        compile_spec(spec, Limits(max_tensor_elements=5))
    with pytest.raises(SpecError, match="limit"):
        compile_spec(spec, Limits(max_nodes=0))
    with pytest.raises(SpecError, match="elements in all"):
        compile_spec(spec, Limits(max_total_elements=9))


def test_pydantic_validation_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        TraceSpec.model_validate({"program": "y = 1", "nodes": []})
    assert "exactly one of" in str(info.value)
    with pytest.raises(ValidationError) as info:
        TraceSpec.model_validate({"inputs": {"x": {"shape": [2], "value": 1}}, "program": "y = x"})
    assert "inputs.x" in str(info.value).replace("\n", " ").replace(" ", "") or "x" in str(info.value)
    with pytest.raises(ValidationError) as info:
        TraceSpec.model_validate({"model": {"input": "x", "layers": [{"type": "dropout", "p": 1.5}], "loss": {"type": "sum"}}})
    assert "model.layers.0.dropout.p" in str(info.value).replace("\n", " ").replace(" ", "")


def test_model_params_are_named_like_state_dict_and_reproducible() -> None:
    spec = TraceSpec.model_validate({
        "inputs": {"x": {"shape": [2, 4], "seed": 3, "requires_grad": False}, "t": {"value": [[0.5, 1.0], [0.0, 2.0]]}},
        "model": {
            "input": "x",
            "layers": [{"type": "linear", "in_features": 4, "out_features": 3}, {"type": "sigmoid"},
                       {"type": "linear", "name": "head", "in_features": 3, "out_features": 2, "bias": False}],
            "loss": {"type": "mse", "target": "t"},
            "seed": 7,
        },
        "engines": ["torch", "reference", "numeric"],
    })
    a, b = trace(spec), trace(spec)
    assert set(a.result.parameters) == {"0.weight", "0.bias", "head.weight"}
    assert a.result.parameters["0.weight"].init == "nn.Linear default init"
    np.testing.assert_array_equal(a.arrays["torch/grad/head.weight"], b.arrays["torch/grad/head.weight"])
    assert a.result.comparison.verdict == "agree"
    # The parameters are torch's own default init: the same layers built after torch.manual_seed(7).
    import torch

    torch.manual_seed(7)
    first, _, head = torch.nn.Linear(4, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 2, bias=False)
    np.testing.assert_array_equal(a.arrays["torch/value/0.weight"], first.weight.detach().numpy())
    np.testing.assert_array_equal(a.arrays["torch/value/0.bias"], first.bias.detach().numpy())
    np.testing.assert_array_equal(a.arrays["torch/value/head.weight"], head.weight.detach().numpy())
    # Reproducing by hand with torch from the reported weights gives the same loss.

    x = torch.tensor(a.arrays["torch/value/x"])
    w0 = torch.tensor(np.array(a.result.parameters["0.weight"].value.data, dtype=np.float32))
    b0 = torch.tensor(np.array(a.result.parameters["0.bias"].value.data, dtype=np.float32))
    wh = torch.tensor(np.array(a.result.parameters["head.weight"].value.data, dtype=np.float32))
    y = torch.sigmoid(x @ w0.T + b0) @ wh.T
    loss = torch.nn.functional.mse_loss(y, torch.tensor([[0.5, 1.0], [0.0, 2.0]]))
    assert abs(loss.item() - a.result.nodes["loss"].value.data) < 1e-6


def test_a_conv_transpose2d_model_layer_is_torch_s_module() -> None:
    """The model spec's conv_transpose2d: nn.ConvTranspose2d's parameters (weight [C_in, C_out, KH, KW]) and init,
    proved against finite differences."""
    import torch

    spec = TraceSpec.model_validate({
        "inputs": {"z": {"shape": [2, 3, 2, 2], "seed": 1, "requires_grad": False}},
        "model": {"input": "z", "seed": 5, "loss": {"type": "mean"}, "layers": [
            {"type": "conv_transpose2d", "in_channels": 3, "out_channels": 2, "kernel_size": 4, "stride": 2, "padding": 1},
            {"type": "tanh"}]},
        "engines": ["torch", "reference", "numeric"],
    })
    t = trace(spec)
    assert t.result.comparison.verdict == "agree"
    assert t.arrays["torch/value/0.conv_transpose2d"].shape == (2, 2, 4, 4)
    torch.manual_seed(5)
    ref = torch.nn.ConvTranspose2d(3, 2, 4, 2, 1)
    np.testing.assert_array_equal(t.arrays["torch/value/0.weight"], ref.weight.detach().numpy())
    np.testing.assert_array_equal(t.arrays["torch/value/0.bias"], ref.bias.detach().numpy())


def test_a_model_with_dropout_draws_as_nn_sequential_built_then_called() -> None:
    """Dropout before a linear layer: torch's nn.Sequential draws every layer's parameters when it is built and the
    dropout mask when called; the model spec does the same (the linear layer's weights were drawn after the mask)."""
    import torch

    spec = TraceSpec.model_validate({
        "inputs": {"x": {"shape": [4, 6], "seed": 1, "requires_grad": True}},
        "model": {"input": "x", "seed": 3, "loss": {"type": "mean"}, "layers": [
            {"type": "linear", "in_features": 6, "out_features": 5}, {"type": "dropout", "p": 0.5},
            {"type": "linear", "in_features": 5, "out_features": 2}]},
        "engines": ["torch", "reference"],
    })
    t = trace(spec)
    assert t.result.comparison.verdict == "agree"
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Dropout(0.5), torch.nn.Linear(5, 2))
    x = torch.tensor(t.arrays["torch/value/x"], requires_grad=True)
    loss = net(x).mean()
    loss.backward()
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(t.arrays[f"torch/value/{k}"], v.numpy(), err_msg=k)
    np.testing.assert_array_equal(t.arrays["torch/value/loss"], loss.detach().numpy())
    np.testing.assert_array_equal(t.arrays["torch/grad/x"], x.grad.numpy())


def test_model_errors_name_the_layer() -> None:
    spec = TraceSpec.model_validate({
        "inputs": {"x": {"shape": [1, 3, 5, 5]}},
        "model": {"input": "x", "layers": [{"type": "conv2d", "in_channels": 2, "out_channels": 4, "kernel_size": 3}],
                  "loss": {"type": "sum"}},
    })
    with pytest.raises(SpecError) as info:
        compile_spec(spec)
    assert info.value.loc == ("model", "layers", 0)
    assert "channels" in str(info.value)
    bad_w = spec.model_dump()
    bad_w["model"]["layers"][0].update(in_channels=3, weights={"weight": [[1.0]]})
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec.model_validate(bad_w))
    assert info.value.loc == ("model", "layers", 0, "weights", "weight")


def test_cross_entropy_model_with_int_targets() -> None:
    spec = TraceSpec.model_validate({
        "inputs": {"x": {"shape": [3, 4], "init": "normal", "seed": 1}, "y": {"shape": [3], "init": "randint", "low": 0, "high": 2}},
        "model": {"input": "x", "layers": [{"type": "linear", "in_features": 4, "out_features": 2}],
                  "loss": {"type": "cross_entropy", "target": "y", "reduction": "sum"}},
        "dtype": "float64",
        "engines": ["torch", "reference", "numeric"],
    })
    t = trace(spec)
    assert t.result.nodes["y"].dtype == "int64" and not t.result.nodes["y"].requires_grad
    assert t.result.nodes["loss"].grad_fn == "NllLossBackward0"
    assert t.result.comparison.verdict == "agree"
    np.testing.assert_allclose(t.arrays["reference/grad/x"], t.arrays["torch/grad/x"], rtol=1e-10)


def test_grad_output_ones_like_backward_of_ones() -> None:
    spec = nodes_spec([{"name": "y", "op": "mul", "inputs": ["a", "b"]}], grad_output="ones")
    t = trace(spec)
    np.testing.assert_allclose(t.arrays["torch/grad/b"], t.arrays["torch/value/a"].sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(t.arrays["reference/grad/b"], t.arrays["torch/grad/b"], rtol=1e-6)


def test_cuda_without_a_gpu_fails_with_a_clear_message() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    spec = nodes_spec([{"name": "y", "op": "sum", "inputs": ["a"]}], device="cuda")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        trace(spec)
