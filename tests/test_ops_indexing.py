"""getitem, index_select and gather: each proved against torch and finite differences (tests/test_ops.py's
harness), their shape and range errors named at compile time, and property tests that the getitem shape
rule accepts exactly the index tuples torch accepts, with torch's result shape.

GRADTRACE_PROPERTY_EXAMPLES raises the number of examples for a longer hunt."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import given as hgiven
from hypothesis import strategies as st
from test_ops import DTYPES, N, check, distinct, given, normal

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

CASES: list[Any] = []


def case(id: str, inputs: dict[str, Any], *nodes: dict[str, Any], **kw: Any) -> None:
    CASES.append(pytest.param(inputs, list(nodes), kw, id=id))


def sl(start: int | None = None, stop: int | None = None, step: int | None = None) -> dict[str, Any]:
    """The spec form of start:stop:step."""
    return {"slice": [start, stop, step]}


def ix(*values: Any) -> dict[str, Any]:
    """An int64 index tensor input: ix(1, 0) is [1, 0], ix(2) is 0-d, ix([[0], [1]]) is that nested list."""
    return given(values[0] if len(values) == 1 else list(values), dtype="int64")


ALL = sl()
X = {"x": normal(2, 3, 4, seed=1)}
GETITEM: list[tuple[str, list[Any]]] = [
    ("int", [1]),
    ("neg-int", [-1]),
    ("ints-to-0d", [1, -2, 3]),
    ("slice", [sl(1, None)]),
    ("slice-step", [ALL, sl(None, None, 2)]),
    ("slice-neg-start-stop", [ALL, sl(-2, -1), sl(-3, None)]),
    ("slice-past-end", [sl(1, 10), sl(-10, 2, 3)]),
    ("none", [None]),
    ("none-middle", [ALL, None, 1]),
    ("ellipsis", ["..."]),
    ("ellipsis-int", ["...", 2]),
    ("int-ellipsis-none", [0, "...", None]),
    ("empty-tuple", []),
    ("list", [[1, 0]]),
    ("list-repeats", [ALL, [2, 0, 2, 2, -1]]),
    ("list-2d-repeats", [[[0, 1], [1, 1]]]),
    ("int-slice-list", [0, ALL, [1, 2]]),  # torch: (3, 2); numpy would give (2, 3)
    ("list-int-list", [[0, 1, 1], 0, [3, 3, 2]]),
    ("lists-adjacent", [ALL, [0, 2, 2], [1, 1, 3]]),
    ("lists-apart", [[1, 0], ALL, [3, 3]]),
    ("lists-broadcast", [[[0], [1]], ALL, [0, 3, 3]]),
    ("lists-apart-none", [[0, 1], None, [2, 2]]),
    ("list-ellipsis-list", [[1, 0], "...", [2, 2]]),
    ("slice-list-step", [sl(None, None, 2), [2, -1, 2], sl(1, None, 2)]),
]
for label, index in GETITEM:
    case(f"getitem-{label}", X, N("y", "getitem", "x", index=index))
# Empty results (torch checks no bounds then), summed and added to x so that the output has elements to check.
for label, index in (("slice-empty-dim", [ALL, sl(2, 1), ALL]), ("empty-list", [[], ALL]), ("empty-skips-bounds", [[5], sl(0, 0)])):
    case(f"getitem-{label}", X, N("e", "getitem", "x", index=index), N("s", "sum", "e"), N("y", "add", "s", "x"))
case("getitem-tensor", {**X, "i": ix(1, 0, 1)}, N("y", "getitem", "x", "i", index=[{"tensor": 0}]))
case("getitem-tensor-2d", {**X, "i": ix([[2, 0], [2, 2]])}, N("y", "getitem", "x", "i", index=[ALL, {"tensor": 0}]))
case("getitem-tensor-0d-selects", {**X, "i": ix(1)}, N("y", "getitem", "x", "i", index=[{"tensor": 0}, ALL, [3, 1]]))
case("getitem-tensor-neg", {**X, "i": ix(-1, -2, -1)}, N("y", "getitem", "x", "i", index=["...", {"tensor": 0}]))
case("getitem-two-tensors", {**X, "i": ix([[0], [1]]), "j": ix(3, 3, 0)},
     N("y", "getitem", "x", "i", "j", index=[{"tensor": 0}, 1, {"tensor": 1}]))
case("getitem-tensor-twice", {**X, "i": ix(1, 1)}, N("y", "getitem", "x", "i", index=[{"tensor": 0}, {"tensor": 0}]))
case("getitem-tensor-and-list", {**X, "i": ix(2, 2, 0)}, N("y", "getitem", "x", "i", index=[[1, 1, 0], {"tensor": 0}, ALL]))
case("getitem-0d-none", {"x": normal(seed=2)}, N("y", "getitem", "x", index=[None, "...", None]))
case("getitem-0d-ellipsis", {"x": normal(seed=2)}, N("y", "getitem", "x", index=["..."]))
case("getitem-chain", X, N("a", "getitem", "x", index=[ALL, [0, 0, 2]]), N("b", "getitem", "a", index=[-1, sl(None, None, 3)]),
     N("y", "mul", "b", "x"))
for label, args in (("dim0", {"dim": 0}), ("dim1", {"dim": 1}), ("dim-1", {"dim": -1})):
    case(f"index_select-{label}", {**X, "i": ix(1, 0, 1, 1)}, N("y", "index_select", "x", "i", **args))
case("index_select-0d-index", {**X, "i": ix(2)}, N("y", "index_select", "x", "i", dim=2))
case("index_select-0d-input", {"x": normal(seed=3), "i": ix(0)}, N("y", "index_select", "x", "i", dim=0))
case("index_select-0d-input-1d-index", {"x": normal(seed=3), "i": ix([0])}, N("y", "index_select", "x", "i", dim=-1))
# setitem: x with the indexed part replaced; x's gradient is zero there, the value's is the part, summed to its shape
V = {"v": normal(3, seed=8)}
case("setitem-int-slice", {**X, **V}, N("y", "setitem", "x", "v", index=[0, ALL, 1]))
case("setitem-broadcast-leading-ones", {**X, "v": normal(1, 2, 1, seed=8)},
     N("y", "setitem", "x", "v", index=[ALL, 1, sl(None, None, 2)]))
case("setitem-number", X, N("y", "setitem", "x", 0.5, index=["...", 0]))
case("setitem-0d-value-everywhere", {**X, "v": normal(seed=9)}, N("y", "setitem", "x", "v", index=[]))
case("setitem-list", {**X, "v": normal(2, seed=8)}, N("y", "setitem", "x", "v", index=[[1, 0], 2, 3]))
case("setitem-tensor", {**X, "v": normal(1, 1, 4, seed=8), "i": ix(2, 0)},
     N("y", "setitem", "x", "v", "i", index=[ALL, {"tensor": 0}]))
case("setitem-twice-then-read", {**X, **V},  # a write, a write over it, and a read of both
     N("a", "setitem", "x", "v", index=[1, ALL, 0]), N("b", "setitem", "a", 2.0, index=[1, 0]),
     N("c", "getitem", "b", index=[1]), N("y", "mul", "c", "a"))
case("setitem-value-computed", {**X, **V}, N("w", "tanh", "v"), N("y", "setitem", "x", "w", index=[ALL, 2, sl(1, None)]),
     N("z", "mul", "y", "x"))
# mask_put: x[mask] = value with a bool mask over x's leading dims (a number, a 0-d tensor, or one row)
MASK = {"m": given([[True, False, True, False], [False, False, True, True], [True, True, False, False]], dtype="bool")}
case("mask_put-number", {"x": normal(3, 4, seed=9), **MASK}, N("y", "mask_put", "x", "m", -1.5))
case("mask_put-0d-value", {"x": normal(3, 4, seed=9), "v": normal(seed=10), **MASK}, N("y", "mask_put", "x", "m", "v"))
case("mask_put-computed-mask", {"x": normal(3, 4, seed=9)}, N("m", "lt", "x", 0.0), N("y", "mask_put", "x", "m", 0.0),
     N("z", "mul", "y", "x"))
case("mask_put-rows", {"x": normal(3, 4, seed=9), "v": normal(4, seed=11), "r": given([True, False, True], dtype="bool")},
     N("y", "mask_put", "x", "r", "v"))
case("mask_put-nothing-selected", {"x": normal(3, 4, seed=9), "v": normal(1, 4, seed=11),
                                   "r": given([False, False, False], dtype="bool")}, N("y", "mask_put", "x", "r", "v"))
G = {"x": normal(3, 4, seed=4)}
case("gather-dim1-repeats", {**G, "i": ix([[0, 0, 3], [1, 1, 1], [2, 3, 2]])}, N("y", "gather", "x", "i", dim=1))
case("gather-dim0-smaller", {**G, "i": ix([[2, 2], [0, 2]])}, N("y", "gather", "x", "i", dim=0))
case("gather-dim0-taller", {**G, "i": ix([[2], [0], [2], [1], [2]])}, N("y", "gather", "x", "i", dim=0))
case("gather-dim-1", {**G, "i": ix([[3, 3, 3, 3, 0, 0]])}, N("y", "gather", "x", "i", dim=-1))
case("gather-3d", {"x": normal(2, 3, 4, seed=5), "i": ix([[[1, 0]], [[0, 0]]])}, N("y", "gather", "x", "i", dim=0))
case("gather-0d", {"x": normal(seed=6), "i": ix([0, 0, 0])}, N("y", "gather", "x", "i", dim=0))
case("gather-1d-0d-index", {"x": normal(3, seed=6), "i": ix(2)}, N("y", "gather", "x", "i", dim=0))
# A lookup feeding a loss: the pattern indexing exists for.
case("gather-nll", {"x": distinct(4, 5, seed=7), "t": ix([[1], [0], [4], [1]])},
     N("p", "log_softmax", "x", dim=1), N("g", "gather", "p", "t", dim=1), N("L", "mean", "g"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("inputs", "nodes", "kw"), CASES)
def test_op(inputs: dict[str, Any], nodes: list[dict[str, Any]], kw: dict[str, Any], dtype: str) -> None:
    check(inputs, nodes, dtype, **kw)


GRAD_FNS: list[tuple[dict[str, Any], str]] = [
    (N("y", "getitem", "x", index=[0]), "SelectBackward0"),
    (N("y", "getitem", "x", index=[sl(1, None)]), "SliceBackward0"),
    (N("y", "getitem", "x", index=[None]), "UnsqueezeBackward0"),
    (N("y", "getitem", "x", index=["..."]), "AliasBackward0"),
    (N("y", "getitem", "x", index=[ALL, [1, 1]]), "IndexBackward0"),
    (N("y", "getitem", "x", "i", index=[{"tensor": 0}]), "IndexBackward0"),
    (N("y", "index_select", "x", "i", dim=0), "IndexSelectBackward0"),
    (N("y", "gather", "x", "j", dim=1), "GatherBackward0"),
    (N("y", "setitem", "x", 0.0, index=[0]), "CopySlices"),
    (N("y", "setitem", "x", 0.0, index=[[1, 0]]), "IndexPutBackward0"),
]


@pytest.mark.parametrize(("node", "grad_fn"), GRAD_FNS, ids=[g for _, g in GRAD_FNS])
def test_grad_fn_is_the_users(node: dict[str, Any], grad_fn: str) -> None:
    """The torch call indexes as a user would, so torch records the grad_fn a user sees."""
    from services.trace import trace

    inputs = {**X, "i": ix(1, 1), "j": ix([[[0]], [[2]]])}
    t = trace(TraceSpec(inputs=inputs, nodes=[node, N("L", "sum", "y")], engines=["torch"]))
    assert t.result.nodes["y"].grad_fn == grad_fn


# ---- shape and range errors name the node ------------------------------------------------------


def _spec_error(inputs: dict[str, Any], *nodes: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(inputs=inputs, nodes=list(nodes), engines=["torch", "reference"], grad_output=1.0))
    return info.value


X23 = {"x": normal(2, 3)}
ERRORS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    (X23, N("y", "getitem", "x", index=[0, 0, 0]), "too many indices"),
    (X23, N("y", "getitem", "x", index=[None, 0, [1], 0]), "too many indices"),
    ({"x": normal()}, N("y", "getitem", "x", index=[0]), "too many indices"),
    (X23, N("y", "getitem", "x", index=[2]), "index 2 is out of bounds for dimension 0 with size 2"),
    (X23, N("y", "getitem", "x", index=[ALL, -4]), "index -4 is out of bounds for dimension 1"),
    (X23, N("y", "getitem", "x", index=[[0, 2, 1]]), "index 2 is out of bounds"),
    (X23, N("y", "getitem", "x", index=[ALL, [[0], [-4]]]), "index -4 is out of bounds"),
    (X23, N("y", "getitem", "x", index=[[0, 1], [0, 1, 2]]), "could not be broadcast"),
    ({**X23, "i": ix(0, 3)}, N("y", "getitem", "x", "i", index=[ALL, {"tensor": 0}]), "index 3 is out of bounds"),
    ({**X23, "i": ix(-3)}, N("y", "getitem", "x", "i", index=[{"tensor": 0}]), "index -3 is out of bounds"),
    ({**X23, "i": ix(0, 1)}, N("y", "getitem", "x", "i", index=[ALL]), "not used"),
    ({**X23, "i": ix(0, 1)}, N("y", "getitem", "x", "i", index=[{"tensor": 1}]), "only 1 index tensors"),
    ({**X23, "i": normal(2)}, N("y", "getitem", "x", "i", index=[{"tensor": 0}]), "must be int64"),
    (X23, N("y", "getitem", "x", index=[True]), "torch.where"),
    (X23, N("y", "getitem", "x", index=[[True, False]]), "torch.where"),
    (X23, N("y", "getitem", "x", index=[sl(None, None, -1)]), "greater than zero"),
    (X23, N("y", "getitem", "x", index=[sl(None, None, 0)]), "cannot be zero"),
    (X23, N("y", "getitem", "x", index=[sl(None, None, 2**40)]), "too large"),
    (X23, N("y", "getitem", "x", index=["...", 0, "..."]), "single Ellipsis"),
    (X23, N("y", "getitem", "x", index=[1.5]), "not an index item"),
    (X23, N("y", "getitem", "x", index=[[0, [1]]]), "ragged"),
    (X23, N("y", "getitem", "x", index=[sl(0.5)]), "must be ints or null"),
    (X23, N("y", "getitem", "x", index=0), "list of index items"),
    (X23, N("y", "getitem", "x", index=[0], dim=0), "is not one gradtrace traces"),
    ({**X23, "v": normal(3)}, N("y", "setitem", "x", "v", index=[ALL, 0]), "value tensor of shape [3] cannot be broadcast to indexing result of shape [2]"),
    ({**X23, "v": normal(2, 1, 3)}, N("y", "setitem", "x", "v", index=[]), "cannot be broadcast"),
    (X23, N("y", "setitem", "x", 1.0, index=[0, 3]), "index 3 is out of bounds for dimension 1"),
    ({**X23, "i": ix(5)}, N("y", "setitem", "x", 1.0, "i", index=[{"tensor": 0}]), "index 5 is out of bounds"),
    ({**X23, "i": normal(2)}, N("y", "setitem", "x", 1.0, "i", index=[{"tensor": 0}]), "setitem: tensors used as indices must be int64"),
    (X23, N("y", "setitem", "x", index=[0]), "at least 2"),
    ({**X23, "m": given([True, False], dtype="bool"), "v": normal(2)}, N("y", "mask_put", "x", "m", "v"), "depends on the data"),
    ({**X23, "m": given([True, False, True], dtype="bool")}, N("y", "mask_put", "x", "m", 0.0), "leading dims"),
    ({**X23, "m": ix(1, 0)}, N("y", "mask_put", "x", "m", 0.0), "must be a bool tensor"),
    ({**X23, "i": ix([[0]])}, N("y", "index_select", "x", "i", dim=0), "vector"),
    ({**X23, "i": ix(0, -1)}, N("y", "index_select", "x", "i", dim=1), "index -1 is out of range"),
    ({**X23, "i": ix(0, 3)}, N("y", "index_select", "x", "i", dim=1), "index 3 is out of range"),
    ({**X23, "i": ix(0)}, N("y", "index_select", "x", "i", dim=2), "out of range"),
    ({**X23, "i": normal(2)}, N("y", "index_select", "x", "i", dim=0), "int64"),
    ({"x": normal(), "i": ix(0, 0)}, N("y", "index_select", "x", "i", dim=0), "only 1 value"),
    ({**X23, "i": ix(0)}, N("y", "index_select", "x", "i"), "dim"),
    ({**X23, "i": ix(0, 1)}, N("y", "gather", "x", "i", dim=1), "same number of dims"),
    ({**X23, "i": ix([[0], [1], [1]])}, N("y", "gather", "x", "i", dim=1), "larger than input"),
    ({**X23, "i": ix([[0, 3]])}, N("y", "gather", "x", "i", dim=1), "index 3 is out of range"),
    ({**X23, "i": ix([[0, -1]])}, N("y", "gather", "x", "i", dim=1), "index -1 is out of range"),
    ({**X23, "i": ix([[0]])}, N("y", "gather", "x", "i", dim=1, sparse_grad=True), "sparse_grad"),
    ({**X23, "i": normal(1, 1)}, N("y", "gather", "x", "i", dim=1), "int64"),
]


@pytest.mark.parametrize(("inputs", "node", "words"), ERRORS,
                         ids=[f"{n['op']}-{w[:24]}" for _, n, w in ERRORS])
def test_shape_errors_name_the_node(inputs: dict[str, Any], node: dict[str, Any], words: str) -> None:
    err = _spec_error(inputs, node)
    assert err.node == node["name"]
    assert words in err.message, err.message


OURS = ("not used", "only 1 index tensors", "single Ellipsis", "torch.where", "sparse_grad", "list of index items", "is not one gradtrace traces",
        "too large", "at least 2", "must be a bool tensor")
"""Refusals of our own: unused or missing index tensors, several Ellipses, bool masks, sparse_grad, malformed spec
forms, slice steps so large that torch's strides may overflow, and a setitem without its value."""


def _torch_call(inputs: dict[str, Any], node: dict[str, Any]) -> Any:
    """The node's call in torch, with the index items turned into Python's objects unchecked."""
    import torch

    def tensor(spec: dict[str, Any]) -> Any:
        if "value" not in spec:
            return torch.zeros(spec["shape"])
        return torch.tensor(spec["value"], dtype={"int64": torch.int64, "bool": torch.bool}.get(spec.get("dtype", ""), torch.float32))

    x = tensor(inputs["x"])
    if node["op"] == "mask_put":  # x[mask] = value
        mask, v = node["inputs"][1:]
        x[tensor(inputs[mask])] = tensor(inputs[v]) if isinstance(v, str) else v
        return x
    value = None
    if node["op"] == "setitem":  # x[index] = value, the value second
        v = node["inputs"][1]
        value = tensor(inputs[v]) if isinstance(v, str) else v
        node = {**node, "inputs": [node["inputs"][0], *node["inputs"][2:]]}
    ts = [tensor(inputs[i]) for i in node["inputs"][1:]]
    if node["op"] not in ("getitem", "setitem"):
        return getattr(torch, node["op"])(x, index=ts[0], **node["args"])

    def item(v: Any) -> Any:
        if isinstance(v, dict):
            return slice(*v["slice"]) if "slice" in v else ts[v["tensor"]]
        return Ellipsis if v == "..." else v

    if value is not None:
        x[tuple(item(v) for v in node["args"]["index"])] = value
        return x
    return x[tuple(item(v) for v in node["args"]["index"])]


@pytest.mark.parametrize(("inputs", "node", "words"), [e for e in ERRORS if e[2] not in OURS],
                         ids=[f"{n['op']}-{w[:24]}" for _, n, w in ERRORS if w not in OURS])
def test_torch_rejects_them_too(inputs: dict[str, Any], node: dict[str, Any], words: str) -> None:
    """Each refusal above, but our own, is torch's: the same call fails in torch."""
    with pytest.raises((IndexError, RuntimeError, TypeError, ValueError)):
        _torch_call(inputs, node)


@pytest.mark.parametrize("op", ["getitem", "index_select", "gather"])
def test_bool_and_float_index_tensors_are_refused(op: str) -> None:
    """A bool tensor (a comparison's result) as an index is a mask: refused, pointing at torch.where."""
    from services.errors import ShapeError
    from services.ops import REGISTRY

    with pytest.raises(ShapeError, match="torch.where"):
        REGISTRY[op].dtype(["float32", "bool"])
    with pytest.raises(ShapeError, match="int64"):
        REGISTRY[op].dtype(["float32", "float32"])
    assert REGISTRY[op].dtype(["float64", "int64"]) == "float64"


# ---- properties: the getitem shape rule is torch's ----------------------------------------------

PROPS = settings(
    max_examples=int(os.environ.get("GRADTRACE_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def index_tuples(draw: st.DrawFn) -> tuple[tuple[int, ...], list[Any], list[np.ndarray]]:
    """A small shape (empty dims included), an index tuple of every kind of item, and its index tensors."""
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    ints = st.integers(-5, 5)
    bound = st.none() | st.integers(-7, 7)
    tensors: list[np.ndarray] = []

    def int_list() -> Any:
        dims = draw(st.lists(st.integers(0, 3), min_size=1, max_size=2))
        return np.asarray(draw(st.lists(ints, min_size=int(np.prod(dims)), max_size=int(np.prod(dims))))).reshape(dims)

    items: list[Any] = []
    ellipsis = False
    for _ in range(draw(st.integers(0, len(shape) + 1))):
        kind = draw(st.sampled_from(["int", "slice", "slice", "none", "ellipsis", "list", "tensor", "tensor0d"]))
        if kind == "int":
            items.append(draw(ints))
        elif kind == "slice":
            items.append(sl(draw(bound), draw(bound), draw(st.none() | st.integers(1, 3))))
        elif kind == "none":
            items.append(None)
        elif kind == "ellipsis" and not ellipsis:
            items.append("...")
            ellipsis = True
        elif kind == "list":
            items.append(int_list().tolist())
        elif kind in ("tensor", "tensor0d"):
            tensors.append(np.asarray(draw(ints)) if kind == "tensor0d" else int_list())
            items.append({"tensor": len(tensors) - 1})
    return shape, items, tensors


def _torch_result(shape: tuple[int, ...], items: list[Any], tensors: list[np.ndarray]) -> tuple[int, ...] | None:
    import torch

    from services.ops.indexing import GetitemArgs, TensorRef

    x = torch.zeros(shape)
    ts = [torch.from_numpy(v.astype(np.int64)) for v in tensors]
    try:
        return tuple(x[tuple(ts[it.k] if isinstance(it, TensorRef) else it for it in GetitemArgs(index=items).index)].shape)
    except (IndexError, RuntimeError, TypeError, ValueError):
        return None


def _leaf(v: np.ndarray) -> dict[str, Any]:
    return given(v.tolist(), dtype="int64") if v.size else {"shape": list(v.shape), "init": "zeros", "dtype": "int64"}


@PROPS
@hgiven(t=index_tuples(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_getitem_property(t: tuple[tuple[int, ...], list[Any], list[np.ndarray]], dtype: str, seed: int) -> None:
    shape, items, tensors = t
    names = [f"i{k}" for k in range(len(tensors))]
    inputs = {"x": normal(*shape, seed=seed), **{n: _leaf(v) for n, v in zip(names, tensors, strict=True)}}
    node = N("y", "getitem", "x", *names, index=items)
    want = _torch_result(shape, items, tensors)
    try:
        graph = compile_spec(TraceSpec(inputs=inputs, nodes=[node], engines=["torch", "reference"], grad_output=1.0))
    except SpecError as e:
        assert want is None, f"x{list(shape)}[{items}] with {[v.tolist() for v in tensors]}: torch gives {want}, rule says {e}"
        assert e.node == "y"
        return
    assert want is not None, f"x{list(shape)}[{items}] with {[v.tolist() for v in tensors]}: torch rejects, rule gives {graph.shape_of('y')}"
    assert tuple(graph.shape_of("y")) == want
    if np.prod(want) and np.prod(shape):
        check(inputs, [node], dtype)


@PROPS
@hgiven(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data(), dtype=st.sampled_from(DTYPES))
def test_index_select_and_gather_property(shape: list[int], data: Any, dtype: str) -> None:
    nd = len(shape)
    dim = data.draw(st.integers(-nd, nd - 1))
    n = shape[dim]
    picks = st.integers(0, n - 1)
    sel = np.asarray(data.draw(st.lists(picks, min_size=1, max_size=5)))
    gshape = [data.draw(st.integers(1, 5)) if i == dim % nd else data.draw(st.integers(1, s)) for i, s in enumerate(shape)]
    gat = np.asarray(data.draw(st.lists(picks, min_size=int(np.prod(gshape)), max_size=int(np.prod(gshape))))).reshape(gshape)
    inputs = {"x": normal(*shape, seed=1), "s": given(sel.tolist(), dtype="int64"), "g": given(gat.tolist(), dtype="int64")}
    check(inputs, [N("a", "index_select", "x", "s", dim=dim), N("b", "gather", "x", "g", dim=dim),
                   N("sa", "sum", "a"), N("sb", "sum", "b"), N("y", "mul", "sa", "sb")], dtype)


@pytest.mark.parametrize("op", ["index_select", "gather"])
def test_index_select_and_gather_rules_match_torch(op: str) -> None:
    """Shapes with 0-d and empty dims, every dim, index values in and just out of range: the shape rule and
    range check accept exactly what torch accepts, with torch's result shape."""
    import itertools

    import torch

    from services.errors import ShapeError
    from services.ops import REGISTRY

    rule = REGISTRY[op]
    xshapes = [(), (0,), (3,), (2, 0), (0, 3), (2, 3)]
    ishapes = [(), (0,), (1,), (2,), (1, 1), (2, 3), (0, 2), (3, 1), (1, 4), (3, 0)]
    checked = 0
    for xs, ish, dim, fill in itertools.product(xshapes, ishapes, range(-3, 3), [0, 1, 2, 3, -1]):
        index = torch.full(ish, fill, dtype=torch.int64)
        try:
            want: Any = tuple(getattr(torch, op)(torch.zeros(xs), dim, index).shape)
        except (IndexError, RuntimeError):
            want = None
        args = rule.Args(dim=dim)
        try:
            got: Any = rule.shape([xs, ish], args)
            rule.check_ranges([None, (fill, fill) if index.numel() else None], [xs, ish], args)
        except ShapeError:
            got = None
        assert got == want, f"{op}(x{list(xs)}, {dim}, index{list(ish)} = {fill}): rule {got}, torch {want}"
        checked += want is not None
    assert checked > 50
