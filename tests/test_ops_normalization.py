"""batch_norm (training and eval mode) and its running buffers, layer_norm, group_norm, instance_norm and embedding, each proved
against torch and float64 finite differences; and their shape and argument errors, naming the node."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_ops import DTYPES, ENGINES, N, check, given, normal, uniform

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

CASES: list[Any] = []


def case(id: str, inputs: dict[str, Any], *nodes: dict[str, Any], **kw: Any) -> None:
    """Add a case: these inputs, these nodes, extra check() keywords."""
    CASES.append(pytest.param(inputs, list(nodes), kw, id=id))


def frozen(spec: dict[str, Any]) -> dict[str, Any]:
    """An input that does not require grad."""
    return {**spec, "requires_grad": False}


# batch_norm: 2-d (N, C), 3-d (N, C, L), 4-d (N, C, H, W); no affine, weight only, weight and bias.
BN_SHAPES = [(5, 3), (2, 3, 4), (2, 3, 3, 4), (1, 2, 3)]
for shape in BN_SHAPES:
    tag = "x".join(map(str, shape))
    c = shape[1]
    x = normal(*shape, seed=60, std=2.0)
    case(f"batch_norm-{tag}", {"x": x}, N("y", "batch_norm", "x"))
    case(f"batch_norm-{tag}-weight", {"x": x, "w": normal(c, seed=61)}, N("y", "batch_norm", "x", "w"))
    case(f"batch_norm-{tag}-affine", {"x": x, "w": normal(c, seed=61), "b": normal(c, seed=62)},
         N("y", "batch_norm", "x", "w", "b"))
case("batch_norm-eps-momentum", {"x": normal(4, 2, 3, seed=63), "w": normal(2, seed=64), "b": normal(2, seed=65)},
     N("y", "batch_norm", "x", "w", "b", eps=0.1, momentum=0.5))
case("batch_norm-2-values", {"x": normal(2, 3, seed=66)}, N("y", "batch_norm", "x", eps=1e-3))
case("batch_norm-frozen-x", {"x": frozen(normal(3, 2, 2, seed=67)), "w": normal(2, seed=68), "b": normal(2, seed=69)},
     N("y", "batch_norm", "x", "w", "b"))
case("batch_norm-chain", {"x": normal(4, 3, seed=70), "w": normal(5, 3, seed=71)},
     N("h", "linear", "x", "w"), N("n", "batch_norm", "h"), N("y", "tanh", "n"))

# Running buffers after one training step (no gradient: the input is frozen, a weight carries the grad).
for shape in BN_SHAPES:
    tag = "x".join(map(str, shape))
    c = shape[1]
    for stat, momentum in (("mean", 0.1), ("var", 0.1), ("mean", 0.7), ("var", 0.7))[: 4 if len(shape) == 4 else 2]:
        case(f"batch_norm_running-{stat}-{tag}-m{momentum}",
             {"x": frozen(normal(*shape, seed=72, std=3.0)), "w": normal(c, seed=73)},
             N("r", "batch_norm_running", "x", stat=stat, momentum=momentum), N("y", "mul", "r", "w"))
case("batch_norm_running-default-momentum", {"x": frozen(normal(6, 2, seed=74)), "w": normal(2, seed=75)},
     N("r", "batch_norm_running", "x", stat="var"), N("y", "mul", "r", "w"))
case("batch_norm_running-beside-batch_norm",
     {"x": frozen(normal(3, 2, 4, seed=76)), "w": normal(2, seed=77), "b": normal(2, seed=78)},
     N("y", "batch_norm", "x", "w", "b"), N("m", "batch_norm_running", "x", stat="mean"),
     N("v", "batch_norm_running", "x", stat="var"), N("s", "add", "m", "v"), N("z", "mul", "s", "w"))

# Eval mode: the running statistics (frozen: no gradient), an affine map per channel; a batch of one is fine.
STATS = {"m": frozen(normal(3, seed=83)), "v": frozen(uniform(3, low=0.5, high=2.0, seed=84))}
for shape in ((4, 3), (2, 3, 5), (1, 3, 2, 2)):
    tag = "x".join(map(str, shape))
    case(f"batch_norm_eval-{tag}", {"x": normal(*shape, seed=85), **STATS}, N("y", "batch_norm_eval", "x", "m", "v"))
    case(f"batch_norm_eval-{tag}-affine", {"x": normal(*shape, seed=85), **STATS, "w": normal(3, seed=86), "b": normal(3, seed=87)},
         N("y", "batch_norm_eval", "x", "m", "v", "w", "b", eps=1e-3), N("z", "mul", "y", "y"))

# layer_norm over the last one and two dims, with and without weight and bias.
LN_X = normal(2, 3, 4, seed=80, std=2.0)
for ns in ([4], [3, 4], 4, [2, 3, 4]):
    tag = str(ns).replace(" ", "")
    shp = [ns] if isinstance(ns, int) else ns
    case(f"layer_norm-{tag}", {"x": LN_X}, N("y", "layer_norm", "x", normalized_shape=ns))
    case(f"layer_norm-{tag}-weight", {"x": LN_X, "w": normal(*shp, seed=81)}, N("y", "layer_norm", "x", "w", normalized_shape=ns))
    case(f"layer_norm-{tag}-affine", {"x": LN_X, "w": normal(*shp, seed=81), "b": normal(*shp, seed=82)},
         N("y", "layer_norm", "x", "w", "b", normalized_shape=ns))
case("layer_norm-1d-eps", {"x": normal(5, seed=83), "w": normal(5, seed=84), "b": normal(5, seed=85)},
     N("y", "layer_norm", "x", "w", "b", normalized_shape=[5], eps=0.5))
case("layer_norm-4d", {"x": normal(2, 2, 3, 2, seed=86)}, N("y", "layer_norm", "x", normalized_shape=[3, 2]))
case("layer_norm-size-1", {"x": normal(3, 1, seed=87)},
     N("h", "mul", "x", "x"), N("y", "layer_norm", "h", normalized_shape=[1]), N("z", "add", "y", "x"))
case("layer_norm-frozen-weight", {"x": LN_X, "w": frozen(normal(4, seed=89)), "b": normal(4, seed=90)},
     N("y", "layer_norm", "x", "w", "b", normalized_shape=[4]))

# group_norm with several group counts, on 2-d, 3-d and 4-d inputs. Groups of 1 or 2 values are left out:
# there the input gradient is 0 or nearly cancels, and float32 torch returns its rounding noise.
for shape in ((2, 6, 4), (3, 6), (2, 6, 2, 3)):
    tag = "x".join(map(str, shape))
    for groups in (1, 2, 3, 6) if len(shape) > 2 else (1, 2):
        x = normal(*shape, seed=91, std=2.0)
        case(f"group_norm-{tag}-g{groups}", {"x": x}, N("y", "group_norm", "x", num_groups=groups))
        case(f"group_norm-{tag}-g{groups}-affine", {"x": x, "w": normal(6, seed=92), "b": normal(6, seed=93)},
             N("y", "group_norm", "x", "w", "b", num_groups=groups, eps=1e-3))
case("group_norm-weight-only", {"x": normal(2, 4, 3, seed=94), "w": normal(4, seed=95)},
     N("y", "group_norm", "x", "w", num_groups=2))
# instance_norm: each sample's channel over its positions (1-d, 2-d and 3-d), with and without weight and bias.
for shape in ((2, 3, 5), (2, 3, 3, 4), (1, 2, 2, 3, 2)):
    case(f"instance_norm-{len(shape) - 2}d", {"x": normal(*shape, seed=96)}, N("y", "instance_norm", "x"), N("z", "mul", "y", "x"))
    case(f"instance_norm-{len(shape) - 2}d-affine", {"x": normal(*shape, seed=96), "w": normal(shape[1], seed=97),
                                                    "b": normal(shape[1], seed=98)}, N("y", "instance_norm", "x", "w", "b", eps=1e-3))

# embedding: repeated indices accumulate into their rows; the padding row gets no gradient.
IDX = given([[0, 2, 2, 4], [4, 0, 2, 2]], dtype="int64")
W = normal(5, 3, seed=96)
# A used padding row's zero gradient is torch's convention, not the derivative: there only torch and the
# reference are compared.
EXACT_ONLY = {"engines": ["torch", "reference"]}
case("embedding", {"i": IDX, "w": W}, N("y", "embedding", "i", "w"))
for pad in (2, 0, -1, -3):
    case(f"embedding-padding_idx{pad}", {"i": IDX, "w": W}, N("y", "embedding", "i", "w", padding_idx=pad), **EXACT_ONLY)
case("embedding-padding_idx-unused", {"i": IDX, "w": W}, N("y", "embedding", "i", "w", padding_idx=1))
case("embedding-0d-index", {"i": given(3, dtype="int64"), "w": W}, N("y", "embedding", "i", "w"))
case("embedding-1d", {"i": given([1, 1, 1, 0], dtype="int64"), "w": W}, N("y", "embedding", "i", "w"))
case("embedding-3d-index", {"i": given([[[0, 1], [1, 3]], [[3, 3], [2, 0]]], dtype="int64"), "w": W},
     N("y", "embedding", "i", "w", padding_idx=3), **EXACT_ONLY)
case("embedding-layer_norm", {"i": IDX, "w": W, "g": normal(3, seed=97)},
     N("e", "embedding", "i", "w"), N("y", "layer_norm", "e", "g", normalized_shape=3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("inputs", "nodes", "kw"), CASES)
def test_op(inputs: dict[str, Any], nodes: list[dict[str, Any]], kw: dict[str, Any], dtype: str) -> None:
    """torch, the reference and finite differences agree on every value, grad and edge."""
    check(inputs, nodes, dtype, **kw)


def test_running_stats_are_torch_buffers() -> None:
    """batch_norm_running matches an nn.BatchNorm2d's buffers after one training-mode forward."""
    import torch

    x = np.random.default_rng(0).standard_normal((3, 4, 2, 5))
    graph = compile_spec(TraceSpec(
        inputs={"x": frozen(given(x.tolist())), "w": normal(4)}, dtype="float64", engines=ENGINES, grad_output=1.0,
        nodes=[N("m", "batch_norm_running", "x", stat="mean", momentum=0.3),
               N("v", "batch_norm_running", "x", stat="var", momentum=0.3), N("s", "add", "m", "v"), N("y", "mul", "s", "w")],
    ))
    bn = torch.nn.BatchNorm2d(4, momentum=0.3).double().train()
    bn(torch.tensor(x))
    from services.engines.reference import forward
    from services.materialize import materialize

    materialize(graph)
    values = forward(graph)
    np.testing.assert_allclose(values["m"], bn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(values["v"], bn.running_var.numpy(), rtol=1e-12)


# ---- shape and argument errors -----------------------------------------------------------------


def spec_error(inputs: dict[str, Any], *nodes: dict[str, Any], dtype: str = "float32") -> SpecError:
    """The SpecError compiling these nodes raises."""
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(inputs=inputs, nodes=list(nodes), engines=ENGINES, grad_output=1.0, dtype=dtype))
    return info.value


I64 = "int64"
ERRORS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"x": normal(3)}, N("y", "batch_norm", "x"), "at least 2 dims"),
    ({"x": normal(1, 3)}, N("y", "batch_norm", "x"), "more than 1 value per channel"),
    ({"x": normal(1, 3, 1, 1)}, N("y", "batch_norm", "x"), "more than 1 value per channel"),
    ({"x": normal(0, 3)}, N("y", "batch_norm", "x"), "empty"),
    ({"x": normal(4, 3), "w": normal(4)}, N("y", "batch_norm", "x", "w"), "weight shape [4] should be [3]"),
    ({"x": normal(4, 3), "w": normal(3), "b": normal(3, 1)}, N("y", "batch_norm", "x", "w", "b"), "bias shape"),
    ({"x": normal(4, 3), "w": {**normal(3), "dtype": "float64"}}, N("y", "batch_norm", "x", "w"), "one dtype"),
    ({"x": given([[1, 2], [3, 4]], dtype=I64), "w": normal(2)}, N("y", "batch_norm", "x", "w"), "int64"),
    ({"x": normal(4, 3)}, N("y", "batch_norm", "x", training=False), "training"),
    ({"x": normal(4, 3)}, N("y", "batch_norm", "x", "x", "x", "x"), "1 to 3 tensor inputs"),
    ({"x": normal(4, 3)}, N("y", "batch_norm_running", "x"), "stat"),
    ({"x": normal(4, 3)}, N("y", "batch_norm_running", "x", stat="std"), "stat"),
    ({"x": normal(1, 3)}, N("y", "batch_norm_running", "x", stat="var"), "more than 1 value per channel"),
    ({"x": given([[1, 2], [3, 4]], dtype=I64)}, N("y", "batch_norm_running", "x", stat="mean"), "floating point"),
    ({"x": normal(2, 3, 4)}, N("y", "layer_norm", "x", normalized_shape=[3]), "[*, 3]"),
    ({"x": normal(2, 3, 4)}, N("y", "layer_norm", "x", normalized_shape=[2, 2, 3, 4]), "[*, 2, 2, 3, 4]"),
    ({"x": normal(2, 3, 4)}, N("y", "layer_norm", "x", normalized_shape=[]), "at least one element"),
    ({"x": normal(2, 3, 4)}, N("y", "layer_norm", "x"), "normalized_shape"),
    ({"x": normal(2, 3, 4), "w": normal(12)}, N("y", "layer_norm", "x", "w", normalized_shape=[3, 4]), "weight shape [12]"),
    ({"x": normal(2, 4), "w": normal(4), "b": normal(3)}, N("y", "layer_norm", "x", "w", "b", normalized_shape=4), "bias shape [3]"),
    ({"x": normal(2, 4)}, N("y", "layer_norm", "x", normalized_shape=[4], elementwise_affine=False), "elementwise_affine"),
    ({"x": normal(2, 6, 4)}, N("y", "group_norm", "x", num_groups=4), "not divisible by num_groups=4"),
    ({"x": normal(2, 6, 1)}, N("y", "instance_norm", "x"), "more than 1 spatial element"),
    ({"x": normal(2, 6)}, N("y", "instance_norm", "x"), "more than 1 spatial element"),
    ({"x": normal(2, 6, 4)}, N("y", "group_norm", "x", num_groups=0), "positive"),
    ({"x": normal(2, 6, 4)}, N("y", "group_norm", "x", num_groups=-2), "positive"),
    ({"x": normal(6)}, N("y", "group_norm", "x", num_groups=2), "at least 2 dims"),
    ({"x": normal(2, 6, 4), "w": normal(3)}, N("y", "group_norm", "x", "w", num_groups=3), "weight shape [3] should be [6]"),
    ({"x": normal(2, 6, 0)}, N("y", "group_norm", "x", num_groups=3), "empty groups"),
    ({"x": normal(2, 6)}, N("y", "group_norm", "x"), "num_groups"),
    ({"i": given([0, 5], dtype=I64), "w": normal(5, 3)}, N("y", "embedding", "i", "w"), "out of range for 5 embeddings"),
    ({"i": given([[-1, 2]], dtype=I64), "w": normal(5, 3)}, N("y", "embedding", "i", "w"), "out of range"),
    ({"i": given([0.0, 1.0]), "w": normal(5, 3)}, N("y", "embedding", "i", "w"), "int64"),
    ({"i": given([0, 1], dtype=I64), "w": normal(5)}, N("y", "embedding", "i", "w"), "2-D"),
    ({"i": given([0, 1], dtype=I64), "w": normal(5, 3, 2)}, N("y", "embedding", "i", "w"), "2-D"),
    ({"i": given([0, 1], dtype=I64), "w": normal(5, 3)}, N("y", "embedding", "i", "w", padding_idx=5), "padding_idx 5"),
    ({"i": given([0, 1], dtype=I64), "w": normal(5, 3)}, N("y", "embedding", "i", "w", padding_idx=-6), "padding_idx -6"),
    ({"i": given([0, 1], dtype=I64), "w": normal(5, 3)}, N("y", "embedding", "i", "w", max_norm=1.0), "max_norm"),
    ({"i": given([0, 1], dtype=I64), "w": given([[1, 2], [3, 4]], dtype=I64)}, N("y", "embedding", "i", "w"), "int64"),
]


@pytest.mark.parametrize(("inputs", "node", "words"), ERRORS,
                         ids=[f"{n['op']}-{words}" for _, n, words in ERRORS])
def test_errors_name_the_node(inputs: dict[str, Any], node: dict[str, Any], words: str) -> None:
    """Each bad shape or argument is a SpecError on the node, saying what is wrong."""
    err = spec_error(inputs, node)
    assert err.node == node["name"]
    assert words in err.message, err.message


def test_embedding_index_range_is_checked_after_other_nodes() -> None:
    """An out-of-range literal index is reported on the embedding node, however deep in the graph."""
    err = spec_error({"i": given([[0, 1], [2, 7]], dtype=I64), "w": normal(4, 2), "v": normal(2, 2)},
                     N("h", "tanh", "v"), N("e", "embedding", "i", "w"), N("y", "mul", "e", "h"))
    assert err.node == "e" and "[0, 7]" in err.message and err.loc == ("nodes", 1)
