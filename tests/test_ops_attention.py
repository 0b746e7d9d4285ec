"""scaled_dot_product_attention proved against torch and float64 finite differences: unbatched and batched,
broadcast batch dims, L != S, Ev != E, causal, float and bool masks, fully masked rows, custom scales; and
its shape and argument errors, naming the node."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from test_ops import DTYPES, ENGINES, N, assert_close, check, given, normal

from services.compiler import compile_spec
from services.engines.reference import run_reference
from services.engines.torch_engine import run_torch
from services.errors import ShapeError, SpecError
from services.materialize import materialize
from services.ops import REGISTRY
from shared.spec import TraceSpec

SDPA = "scaled_dot_product_attention"
CASES: list[Any] = []


def case(id: str, inputs: dict[str, Any], *nodes: dict[str, Any], **kw: Any) -> None:
    """Add a case: these inputs, these nodes, extra check() keywords."""
    CASES.append(pytest.param(inputs, list(nodes), kw, id=id))


def qkv(q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...], seed: int = 100) -> dict[str, Any]:
    """Query, key and value inputs of these shapes."""
    return {"q": normal(*q, seed=seed), "k": normal(*k, seed=seed + 1), "v": normal(*v, seed=seed + 2)}


def frozen(spec: dict[str, Any]) -> dict[str, Any]:
    """An input that does not require grad."""
    return {**spec, "requires_grad": False}


# (L, E), (B, L, E), (B, H, L, E); L != S and Ev != E; 4-d with E == Ev runs torch's CPU flash kernel.
SHAPES: list[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = [
    ("LE", (3, 4), (5, 4), (5, 2)),
    ("LE-square", (4, 3), (4, 3), (4, 3)),
    ("BLE", (2, 3, 4), (2, 5, 4), (2, 5, 6)),
    ("BHLE", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 6)),
    ("BHLE-flash", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4)),
    ("BHLE-flash-L>S", (1, 2, 5, 4), (1, 2, 3, 4), (1, 2, 3, 4)),
    ("bcast-heads", (2, 1, 3, 4), (1, 3, 5, 4), (1, 3, 5, 6)),
    ("bcast-rank", (2, 3, 3, 4), (5, 4), (5, 6)),
    ("bcast-value", (1, 3, 4), (1, 5, 4), (2, 5, 6)),
    ("bcast-query", (3, 4), (2, 5, 4), (2, 5, 2)),
]
for label, q, k, v in SHAPES:
    case(f"sdpa-{label}", qkv(q, k, v), N("y", SDPA, "q", "k", "v"))
    case(f"sdpa-{label}-causal", qkv(q, k, v), N("y", SDPA, "q", "k", "v", is_causal=True))
for label, q, k, v in SHAPES[::3]:
    for scale in (0.3, -0.5, 0.0):
        case(f"sdpa-{label}-scale{scale}", qkv(q, k, v), N("y", SDPA, "q", "k", "v", scale=scale))
case("sdpa-causal-scale", qkv((2, 2, 4, 3), (2, 2, 4, 3), (2, 2, 4, 3)), N("y", SDPA, "q", "k", "v", is_causal=True, scale=0.8))
case("sdpa-positional-args", qkv((3, 4), (3, 4), (3, 4)), N("y", SDPA, "q", "k", "v", dropout_p=0.0, is_causal=True))
case("sdpa-frozen-qk", {"q": frozen(normal(2, 3, 4, seed=1)), "k": frozen(normal(2, 5, 4, seed=2)), "v": normal(2, 5, 3, seed=3)},
     N("y", SDPA, "q", "k", "v"))
case("sdpa-frozen-v", {"q": normal(2, 3, 4, seed=1), "k": normal(2, 5, 4, seed=2), "v": frozen(normal(2, 5, 3, seed=3))},
     N("y", SDPA, "q", "k", "v"))
case("sdpa-self", {"x": normal(2, 4, 3, seed=4)}, N("y", SDPA, "x", "x", "x", is_causal=True))

# Float masks, added to the scores: broadcast from (L, S), (1, 1, S), a full (B, L, S) and a 0-d mask; they get gradients.
MQKV = qkv((2, 3, 4), (2, 5, 4), (2, 5, 6), seed=110)
for mshape in ((3, 5), (1, 1, 5), (2, 3, 5), (5,), (3, 1), ()):
    case(f"sdpa-float-mask-{list(mshape)}", {**MQKV, "m": normal(*mshape, seed=111)}, N("y", SDPA, "q", "k", "v", "m"))
case("sdpa-float-mask-frozen", {**MQKV, "m": frozen(normal(3, 5, seed=112))}, N("y", SDPA, "q", "k", "v", "m"))
case("sdpa-float-mask-4d-flash", {**qkv((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4), seed=113), "m": frozen(normal(2, 1, 3, 5, seed=114))},
     N("y", SDPA, "q", "k", "v", "m", scale=0.5))
case("sdpa-float-mask-4d-grad", {**qkv((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4), seed=113), "m": normal(2, 1, 3, 5, seed=114)},
     N("y", SDPA, "q", "k", "v", "m"))
case("sdpa-float-mask-scale", {**MQKV, "m": normal(3, 5, seed=115)}, N("y", SDPA, "q", "k", "v", "m", scale=-0.3))

# -inf entries and a fully masked row: torch's math and flash kernels give that row 0 output and 0 gradients.
INF = float("-inf")
NEG = [[0.0, INF, 0.5, INF, -1.0], [INF, INF, INF, INF, INF], [0.0, 0.0, 0.0, 0.0, INF]]
case("sdpa-neg-inf-mask", {**MQKV, "m": frozen(given(NEG))}, N("y", SDPA, "q", "k", "v", "m"))
case("sdpa-neg-inf-mask-flash", {**qkv((1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4), seed=116), "m": frozen(given(NEG))},
     N("y", SDPA, "q", "k", "v", "m"))
case("sdpa-neg-inf-mask-scale0", {**MQKV, "m": frozen(given(NEG))}, N("y", SDPA, "q", "k", "v", "m", scale=0.0))

# Bool masks made by a comparison (True may attend), broadcast from (L, S), with a fully masked row; only
# while the comparison ops are registered (their family lives in services/ops/comparison.py).
if "gt" in REGISTRY:
    LS = frozen(given([[0.3, -1.0, 0.2, 0.5, -0.1], [-0.2, -0.3, -0.5, -1.0, -0.7], [1.0, 0.5, -0.5, 0.25, 0.4]]))
    for label, q, k, v in (SHAPES[0], SHAPES[2], SHAPES[4]):
        case(f"sdpa-bool-mask-{label}", {**qkv(q, k, v), "s": LS}, N("m", "gt", "s", 0.0), N("y", SDPA, "q", "k", "v", "m"))
    case("sdpa-bool-mask-scale", {**qkv(*SHAPES[3][1:]), "s": LS}, N("m", "gt", "s", 0.0), N("y", SDPA, "q", "k", "v", "m", scale=-0.4))

# Grouped-query attention (enable_gqa): 4 query heads over 2 (and over 1) key/value heads, causal, with a float mask,
# unbatched (H, L, E).
case("sdpa-gqa-causal", qkv((2, 4, 3, 5), (2, 2, 3, 5), (2, 2, 3, 6), seed=130), N("y", SDPA, "q", "k", "v", is_causal=True, enable_gqa=True))
case("sdpa-gqa-one-kv-head-mask", {**qkv((1, 4, 3, 5), (1, 1, 4, 5), (1, 1, 4, 5), seed=133), "m": normal(3, 4, seed=136)},
     N("y", SDPA, "q", "k", "v", "m", enable_gqa=True))
case("sdpa-gqa-kv-heads-differ", qkv((1, 6, 3, 4), (1, 2, 3, 4), (1, 3, 3, 5), seed=140), N("y", SDPA, "q", "k", "v", enable_gqa=True))
case("sdpa-gqa-unbatched", qkv((6, 2, 4), (3, 2, 4), (3, 2, 4), seed=137), N("y", SDPA, "q", "k", "v", enable_gqa=True, scale=0.3))

# A transformer-ish block: embedding, layer_norm, projections, causal attention, residual.
case("sdpa-block", {"i": given([[0, 3, 1, 3], [2, 2, 0, 1]], dtype="int64"), "e": normal(4, 6, seed=120),
                    "g": normal(6, seed=121), "wq": normal(6, 6, seed=122, std=0.5), "wk": normal(6, 6, seed=123, std=0.5),
                    "wv": normal(6, 6, seed=124, std=0.5)},
     N("x", "embedding", "i", "e"), N("h", "layer_norm", "x", "g", normalized_shape=[6]),
     N("q", "linear", "h", "wq"), N("k", "linear", "h", "wk"), N("v", "linear", "h", "wv"),
     N("q4", "reshape", "q", shape=[2, 4, 2, 3]), N("k4", "reshape", "k", shape=[2, 4, 2, 3]), N("v4", "reshape", "v", shape=[2, 4, 2, 3]),
     N("qh", "transpose", "q4", dim0=1, dim1=2), N("kh", "transpose", "k4", dim0=1, dim1=2), N("vh", "transpose", "v4", dim0=1, dim1=2),
     N("a", SDPA, "qh", "kh", "vh", is_causal=True), N("at", "transpose", "a", dim0=1, dim1=2),
     N("o", "reshape", "at", shape=[2, 4, 6]), N("y", "add", "o", "x"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("inputs", "nodes", "kw"), CASES)
def test_op(inputs: dict[str, Any], nodes: list[dict[str, Any]], kw: dict[str, Any], dtype: str) -> None:
    """torch, the reference and finite differences agree on every value, grad and edge."""
    check(inputs, nodes, dtype, **kw)


# ---- bool masks --------------------------------------------------------------------------------
# No spec input can be bool (only comparison ops make bool tensors), so these run the op and the
# engines directly, with numpy bool masks against torch.

BOOL_MASKS: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = [
    ((3, 4), (5, 4), (5, 2), (3, 5)),
    ((2, 3, 4), (2, 5, 4), (2, 5, 6), (3, 5)),
    ((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4), (3, 5)),
    ((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 6), (2, 1, 1, 5)),
    ((2, 3, 4), (2, 5, 4), (2, 5, 6), ()),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [None, 0.0, -0.7])
@pytest.mark.parametrize(("q", "k", "v", "m"), BOOL_MASKS)
def test_bool_mask_against_torch(q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...], m: tuple[int, ...],
                                 scale: float | None, dtype: str) -> None:
    """A bool mask (True may attend), broadcast from (L, S), with a fully masked row: values and grads as torch's."""
    import torch

    op = REGISTRY[SDPA]
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(dtype) for s in (q, k, v)]
    mask = rng.random(m) > 0.4
    if len(m) >= 2:
        mask[..., 0, :] = False  # a row that attends to nothing
        mask[..., -1, :] = True
    args = op.Args(scale=scale)
    assert tuple(op.shape([*(x.shape for x in xs), mask.shape], args)) == op.forward([*xs, mask], args).shape
    assert op.dtype([dtype, dtype, dtype, "bool"]) == dtype
    out = op.forward([*xs, mask], args)
    g = rng.standard_normal(out.shape).astype(dtype)
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    t_out = op.torch(torch, [*ts, torch.tensor(mask)], args)
    t_out.backward(torch.tensor(g))
    grads = op.backward(g, out, [*xs, mask], args)
    assert grads[3] is None
    assert_close(out, t_out.detach().numpy(), dtype, "value")
    for name, mine, t in zip("qkv", grads, ts, strict=False):
        assert mine is not None and mine.dtype == np.dtype(dtype)
        assert_close(mine, t.grad.numpy(), dtype, f"grad of {name}")


def test_bool_mask_through_the_engines() -> None:
    """Both engines run a graph whose mask leaf is a bool input, and agree."""
    rng = np.random.default_rng(1)
    mask = rng.random((3, 5)) > 0.5
    mask[1] = False
    graph = compile_spec(TraceSpec(
        inputs={**MQKV, "m": given(mask.tolist(), dtype="bool")}, nodes=[N("y", SDPA, "q", "k", "v", "m")],
        dtype="float64", engines=ENGINES, grad_output=1.0,
    ))
    assert graph.leaves["m"].dtype == "bool"
    materialize(graph)
    t, r = run_torch(graph), run_reference(graph)
    assert_close(r.values["y"], t.values["y"], "float64", "value")
    assert np.all(r.values["y"][:, 1] == 0)
    for name in "qkv":
        assert_close(r.grads[name], t.grads[name], "float64", f"grad of {name}")
    assert t.grads["m"] is None and r.grads["m"] is None


def test_bool_and_float_masks_agree() -> None:
    """A bool mask equals a float mask of 0 and -inf, and a causal flag equals tril(ones(L, S))."""
    op = REGISTRY[SDPA]
    rng = np.random.default_rng(2)
    for (L, S), causal in itertools.product([(3, 5), (5, 3), (4, 4)], [False, True]):
        xs = [rng.standard_normal(s) for s in ((2, L, 4), (2, S, 4), (2, S, 3))]
        mask = np.tri(L, S, dtype=bool) if causal else rng.random((L, S)) > 0.3
        as_float = np.where(mask, 0.0, -np.inf)
        a, b = op.forward([*xs, mask], op.Args()), op.forward([*xs, as_float], op.Args())
        np.testing.assert_allclose(a, b, rtol=1e-14)
        if causal:
            np.testing.assert_allclose(op.forward(xs, op.Args(is_causal=True)), a, rtol=1e-14)


# ---- shape and argument errors -----------------------------------------------------------------


def spec_error(inputs: dict[str, Any], *nodes: dict[str, Any]) -> SpecError:
    """The SpecError compiling these nodes raises."""
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(inputs=inputs, nodes=list(nodes), engines=ENGINES, grad_output=1.0))
    return info.value


ERRORS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    (qkv((3, 4), (5, 4), (5, 2)), N("y", SDPA, "q", "k", "v", dropout_p=0.1), "apply dropout explicitly"),
    (qkv((3, 4), (5, 4), (5, 2)), N("y", SDPA, "q", "k", "v", enable_gqa=True), "enable_gqa needs heads in dim -3"),
    (qkv((3, 2, 4), (2, 5, 4), (2, 5, 2)), N("y", SDPA, "q", "k", "v", enable_gqa=True), "a multiple of the key's"),
    ({**qkv((3, 4), (5, 4), (5, 2)), "m": normal(3, 5)}, N("y", SDPA, "q", "k", "v", "m", is_causal=True), "is_causal"),
    (qkv((3, 4), (5, 4), (5, 2)), N("y", SDPA, "q", "k", "v", is_causal=True, scale=0.0), "scale=0.0"),
    (qkv((3, 4), (5, 4), (5, 2)), N("y", SDPA, "q", "k", "v", is_causal=True, scale=-1.0), "as attn_mask instead"),
    (qkv((4,), (4,), (4,)), N("y", SDPA, "q", "k", "v"), "at least 2-D"),
    (qkv((3, 4), (5, 3), (5, 2)), N("y", SDPA, "q", "k", "v"), "embedding size 4"),
    (qkv((3, 4), (5, 4), (6, 2)), N("y", SDPA, "q", "k", "v"), "value has 6 positions"),
    (qkv((2, 3, 4), (3, 5, 4), (3, 5, 2)), N("y", SDPA, "q", "k", "v"), "do not broadcast"),
    (qkv((2, 3, 4), (1, 5, 4), (3, 5, 2)), N("y", SDPA, "q", "k", "v"), "do not broadcast"),
    ({**qkv((2, 3, 4), (2, 5, 4), (2, 5, 2)), "m": normal(3, 4)}, N("y", SDPA, "q", "k", "v", "m"), "do not broadcast"),
    ({**qkv((3, 4), (5, 4), (5, 2)), "m": normal(2, 3, 5)}, N("y", SDPA, "q", "k", "v", "m"), "attn_mask [2, 3, 5]"),
    ({**qkv((1, 3, 4), (1, 5, 4), (2, 5, 2)), "m": normal(2, 3, 5)}, N("y", SDPA, "q", "k", "v", "m"), "attn_mask [2, 3, 5]"),
    ({**qkv((3, 4), (5, 4), (5, 2)), "m": given([[1] * 5] * 3, dtype="int64")}, N("y", SDPA, "q", "k", "v", "m"), "int64"),
    ({**qkv((3, 4), (5, 4), (5, 2)), "m": {**normal(3, 5), "dtype": "float64"}}, N("y", SDPA, "q", "k", "v", "m"), "bool or float32"),
    ({"q": normal(3, 4), "k": {**normal(5, 4), "dtype": "float64"}, "v": normal(5, 2)}, N("y", SDPA, "q", "k", "v"), "one floating dtype"),
    (qkv((3, 4), (5, 4), (5, 2)), N("y", SDPA, "q", "k"), "3 to 4 tensor inputs"),
]


@pytest.mark.parametrize(("inputs", "node", "words"), ERRORS, ids=[f"{i}-{w}" for i, (_, _, w) in enumerate(ERRORS)])
def test_errors_name_the_node(inputs: dict[str, Any], node: dict[str, Any], words: str) -> None:
    """Each bad shape or argument is a SpecError on the node, saying what is wrong."""
    err = spec_error(inputs, node)
    assert err.node == node["name"]
    assert words in err.message, err.message


def test_bool_mask_dtype_rule() -> None:
    """bool masks pass the dtype rule; other mask dtypes than query's do not."""
    op = REGISTRY[SDPA]
    assert op.dtype(["float64"] * 3 + ["bool"]) == "float64"
    with pytest.raises(ShapeError, match="bool or float64"):
        op.dtype(["float64"] * 3 + ["float32"])
    with pytest.raises(ShapeError, match="one floating dtype"):
        op.dtype(["bool"] * 3)
