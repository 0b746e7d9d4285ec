"""Comparisons, where, clamp, maximum and minimum, proved like tests/test_ops.py: torch, the reference and
finite differences agree on values, grads and edges; at bounds and ties torch's subgradient is matched."""

from __future__ import annotations

from typing import Any

import pytest
from test_ops import DTYPES, ENGINES, N, away, check, given, normal

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

CASES: list[Any] = []
EXACT_ONLY = {"engines": ["torch", "reference"]}
COMPARISONS = ("gt", "lt", "ge", "le", "eq", "ne")


def case(id: str, inputs: dict[str, Any], *nodes: dict[str, Any], **kw: Any) -> None:
    CASES.append(pytest.param(inputs, list(nodes), kw, id=id))


def frozen(spec: dict[str, Any]) -> dict[str, Any]:
    """An input that does not require grad (a float leaf feeding only a comparison gets no grad in torch)."""
    return {**spec, "requires_grad": False}


# Each comparison selects between two float tensors, so the output depends on inputs that require grad.
AB = {"a": away(2, 3, seed=1), "b": away(3, seed=2)}
for op in COMPARISONS:
    case(f"{op}-tensors", AB, N("c", op, "a", "b"), N("y", "where", "c", "a", "b"))
    case(f"{op}-number-right", {"x": away(3, 4, seed=3)}, N("c", op, "x", 0.5), N("y", "where", "c", "x", 0.0))
    case(f"{op}-number-left", {"x": away(3, 4, seed=4)}, N("c", op, -0.25, "x"), N("y", "where", "c", 1.0, "x"))
    case(f"{op}-broadcast", {"a": away(4, 1, seed=5), "b": away(1, 3, seed=6)}, N("c", op, "a", "b"),
         N("y", "where", "c", "a", "b"))
    # int64 against a number and against a float tensor (compared as floats, as torch promotes).
    case(f"{op}-int64", {"t": given([[0, 1, 2], [2, 1, 0]], dtype="int64"), "x": away(2, 3, seed=7)},
         N("c", op, "t", 1), N("y", "where", "c", "x", -1.0))
    case(f"{op}-int64-float", {"t": given([0, 1, 2, 3], dtype="int64"), "f": frozen(given([0.5, 1.0, 2.5, 3.0])),
                               "x": away(4, seed=8)},
         N("c", op, "t", "f"), N("y", "where", "c", "x", 2.0))
    # Exactly equal elements: 0.1 stands for the float32 or float64 nearest it on both sides.
    case(f"{op}-ties", {"x": given([[0.1, -1.0, 0.1], [2.0, 0.1, -0.5]]), "z": normal(2, 3, seed=9)},
         N("c", op, "x", 0.1), N("y", "where", "c", "x", "z"), **EXACT_ONLY)
case("eq-bool-tensors", {"x": away(2, 3, seed=10), "z": away(2, 3, seed=11)},
     N("p", "gt", "x", 0.0), N("q", "gt", "z", 0.0), N("c", "eq", "p", "q"), N("y", "where", "c", "x", "z"))
case("ne-bool-tensors", {"x": away(2, 3, seed=10), "z": away(2, 3, seed=11)},
     N("p", "lt", "x", 0.0), N("q", "lt", "z", 0.0), N("c", "ne", "p", "q"), N("y", "where", "c", "x", "z"))
case("gt-0d", {"x": normal(seed=12), "z": away(3, seed=13)}, N("c", "gt", "z", "x"), N("y", "where", "c", "z", "x"))

# where: three different shapes broadcast, numbers on either side, shared inputs.
case("where-3-shapes", {"p": frozen(away(2, 1, 4, seed=14)), "x": normal(3, 1, seed=15), "z": normal(4, seed=16)},
     N("c", "gt", "p", 0.0), N("y", "where", "c", "x", "z"))
case("where-3-shapes-cond-smallest", {"p": frozen(away(4, seed=17)), "x": normal(2, 1, 4, seed=18), "z": normal(3, 1, seed=19)},
     N("c", "le", "p", 0.0), N("y", "where", "c", "x", "z"))
case("where-number-input", {"x": away(3, 4, seed=20)}, N("c", "gt", "x", 0.0), N("y", "where", "c", 2.5, "x"))
case("where-number-other", {"x": away(3, 4, seed=21)}, N("c", "lt", "x", 0.0), N("y", "where", "c", "x", -3.0))
case("where-two-numbers", {"x": away(3, 4, seed=24)}, N("c", "gt", "x", 0.0), N("m", "where", "c", 1.0, 0.25),
     N("y", "mul", "m", "x"))  # torch.where(mask, 1.0, 0.25): the default dtype, a constant for the gradient
case("where-number-broadcast", {"p": frozen(away(2, 3, seed=22)), "x": normal(3, seed=23)},
     N("c", "ge", "p", 0.0), N("y", "where", "c", "x", 0.5))

# Logic on masks (bool in, bool out, no gradient), selecting between float tensors.
MASKS = {"x": away(2, 3, seed=40), "z": away(1, 3, seed=41)}
for op in ("logical_and", "logical_or", "logical_xor"):
    case(f"{op}-broadcast", MASKS, N("p", "gt", "x", 0.0), N("q", "lt", "z", 0.0), N("c", op, "p", "q"),
         N("y", "where", "c", "x", "z"))
case("logical_not", MASKS, N("p", "gt", "x", 0.0), N("c", "logical_not", "p"), N("y", "where", "c", "x", "z"))
for op in ("any", "all"):
    case(f"{op}-dim", MASKS, N("p", "gt", "x", 0.0), N("c", op, "p", dim=1, keepdim=True), N("y", "where", "c", "x", "z"))
    case(f"{op}-whole", MASKS, N("p", "gt", "x", 0.0), N("c", op, "p"), N("y", "where", "c", "x", "z"))
case("where-same-input", {"x": away(2, 3, seed=24)}, N("c", "gt", "x", 0.0), N("y", "where", "c", "x", "x"))
case("where-leaky", {"x": away(3, 4, seed=25)}, N("c", "gt", "x", 0.0), N("s", "mul", "x", 0.1),
     N("y", "where", "c", "x", "s"))
case("where-0d", {"x": normal(seed=26), "z": normal(seed=27)}, N("c", "gt", "x", "z"), N("y", "where", "c", "x", "z"))

# clamp, clamp_min, clamp_max away from the bounds (all engines), then exactly at them (inclusive mask).
C = {"x": away(3, 4, seed=28)}
case("clamp-both", C, N("y", "clamp", "x", min=-0.7, max=0.9))
case("clamp-min", C, N("y", "clamp", "x", min=-0.1))
case("clamp-max", C, N("y", "clamp", "x", max=0.1))
case("clamp-min-over-max", C, N("y", "clamp", "x", min=0.5, max=-0.5))
case("clamp-int-bounds", {"x": normal(3, 4, seed=29, std=3.0)}, N("y", "clamp", "x", min=-1, max=2))
# int64: int bounds keep int64 (a target's `t.clamp(max=2)`), a float bound promotes to the default float.
case("clamp-int64", {"t": given([[0, 5, -3], [2, 9, 1]], dtype="int64"), "x": normal(2, 3, seed=29)},
     N("c", "clamp", "t", min=0, max=2), N("y", "mul", "x", "c"))
case("clamp-int64-float-bound", {"t": given([[0, 5, -3], [2, 9, 1]], dtype="int64"), "x": normal(2, 3, seed=29)},
     N("c", "clamp", "t", max=2.5), N("y", "mul", "x", "c"))
case("clamp_min", C, N("y", "clamp_min", "x", min=0.1))
case("clamp_max", C, N("y", "clamp_max", "x", max=-0.1))
BOUNDS = [[-1.0, -0.5, 0.0, 0.5], [1.0, 2.0, -2.0, 0.25]]
case("clamp-at-bounds", {"x": given(BOUNDS)}, N("y", "clamp", "x", min=-0.5, max=0.5), **EXACT_ONLY)
case("clamp-min-at-bound", {"x": given(BOUNDS)}, N("y", "clamp", "x", min=0.0), **EXACT_ONLY)
case("clamp-max-at-bound", {"x": given(BOUNDS)}, N("y", "clamp", "x", max=1.0), **EXACT_ONLY)
case("clamp-equal-bounds", {"x": given(BOUNDS)}, N("y", "clamp", "x", min=0.5, max=0.5), **EXACT_ONLY)
case("clamp-min-over-max-at-bounds", {"x": given(BOUNDS)}, N("y", "clamp", "x", min=0.5, max=-0.5), **EXACT_ONLY)
case("clamp_min-at-bound", {"x": given(BOUNDS)}, N("y", "clamp_min", "x", min=0.5), **EXACT_ONLY)
case("clamp_max-at-bound", {"x": given(BOUNDS)}, N("y", "clamp_max", "x", max=-0.5), **EXACT_ONLY)

# maximum, minimum: broadcasting, then ties (half the gradient each side, summed over broadcasting).
for op in ("maximum", "minimum"):
    for sa, sb in (((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1), (1, 5)), ((), (2, 3)), ((2, 1, 3), (4, 1))):
        case(f"{op}-{list(sa)}x{list(sb)}", {"a": away(*sa, seed=30), "b": away(*sb, seed=31)}, N("y", op, "a", "b"))
    case(f"{op}-same-input", {"a": normal(2, 3, seed=32)}, N("y", op, "a", "a"), **EXACT_ONLY)
    case(f"{op}-ties", {"a": given([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]]), "b": given([[1.0, 1.0, 4.0], [0.0, -1.0, 6.0]])},
         N("y", op, "a", "b"), **EXACT_ONLY)
    case(f"{op}-ties-broadcast", {"a": given([[1.0, 2.0, 3.0], [2.0, 2.0, 0.0]]), "b": given([2.0, 2.0, 0.0])},
         N("y", op, "a", "b"), **EXACT_ONLY)
    case(f"{op}-relu-like", {"x": away(3, 4, seed=33), "z": frozen(given([[0.0] * 4] * 3))}, N("y", op, "x", "z"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("inputs", "nodes", "kw"), CASES)
def test_op(inputs: dict[str, Any], nodes: list[dict[str, Any]], kw: dict[str, Any], dtype: str) -> None:
    check(inputs, nodes, dtype, **kw)


def test_comparison_values_are_bool_and_carry_no_grad() -> None:
    """A comparison node is bool in both engines, with no grad and no edge, and `x > 0.5` compares with 0.5."""
    t = check({"x": given([0.25, 0.5, 0.75, 1.0])}, [N("c", "gt", "x", 0.5), N("y", "where", "c", "x", 0.0)], "float32",
              **EXACT_ONLY)
    for eng in ("torch", "reference"):
        assert t.arrays[f"{eng}/value/c"].dtype == bool
        assert t.arrays[f"{eng}/value/c"].tolist() == [False, False, True, True]
        assert t.arrays.get(f"{eng}/grad/c") is None
    assert t.graph.node("c").dtype == "bool" and not t.graph.node("c").requires_grad
    assert not any(e.src == "c" for e in t.result.edges)


# ---- shape and argument errors -----------------------------------------------------------------


def _spec_error(inputs: dict[str, Any], *nodes: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(inputs=inputs, nodes=list(nodes), engines=ENGINES, grad_output=1.0))
    return info.value


X = {"x": normal(2, 3), "z": normal(4), "t": given([0, 1, 2], dtype="int64")}


@pytest.mark.parametrize(
    ("nodes", "words"),
    [
        ([N("c", "gt", "x", "z")], "do not broadcast"),
        ([N("c", "eq", 1.0, 2.0)], "at least one must be a tensor"),
        ([N("c", "lt", "t", 0.5)], "non-integer 0.5"),
        ([N("c", "ge", 1.5, "t")], "non-integer 1.5"),
        ([N("c", "gt", "x", 0.0, "x")], "takes 2 tensor inputs"),
        ([N("c", "gt", "x", 0.0, inplace=True)], "argument 'inplace'"),
        ([N("c", "where", "x", "x", "x")], "compare first"),
        ([N("c", "where", 1.0, "x", "x")], "got a number"),
        ([N("c", "where", "t", "x", "x")], "int64"),
        ([N("p", "gt", "x", 0.0), N("c", "where", "p", "x", "z")], "do not broadcast"),
        ([N("p", "gt", "z", 0.0), N("c", "where", "p", "x", 0.0)], "do not broadcast"),
        ([N("p", "gt", "x", 0.0), N("c", "where", "p", "x")], "takes 3 tensor inputs"),
        ([N("c", "clamp", "x")], "at least one of 'min' or 'max'"),
        ([N("c", "clamp", "x", min="z")], "tensor bounds are the clamp_tensors op"),
        ([N("c", "clamp_max", "x", max="z")], "tensor bounds are the clamp_tensors op"),
        ([N("p", "gt", "x", 0.0), N("c", "maximum", "x", "p")], "bool tensor"),
        ([N("p", "gt", "x", 0.0), N("c", "clamp", "p", min=0.0)], "bool tensor"),
        ([N("c", "clamp", "x", min=0.0, out="z")], "argument 'out'"),
        ([N("c", "clamp_min", "x")], "argument 'min'"),
        ([N("c", "clamp_max", "x", min=1.0)], "argument"),
        ([N("c", "maximum", "x", 0.0)], "must be a tensor"),
        ([N("c", "minimum", "x", "z")], "do not broadcast"),
    ],
    ids=lambda v: ",".join(n["op"] for n in v) if isinstance(v, list) else None,
)
def test_errors_name_the_node(nodes: list[dict[str, Any]], words: str) -> None:
    err = _spec_error(X, *nodes, N("y", "sum", "x"))
    assert err.node == "c", (err.node, err.message)
    assert words in err.message, err.message


def test_against_torch_with_nan_inf_and_ties() -> None:
    """Values and grads against torch's directly, with NaN, inf and ties, which a spec's JSON cannot carry."""
    import numpy as np
    import torch

    from services.ops import REGISTRY

    nan, inf = float("nan"), float("inf")
    a = np.array([[nan, 1.0, 2.0, -inf, 0.5], [3.0, nan, 2.0, inf, -1.0]])
    b = np.array([1.0, nan, 2.0, -inf, 0.5])
    rng = np.random.default_rng(0)
    runs: list[tuple[str, list[Any], Any]] = [
        (op, [a, b], None) for op in ("maximum", "minimum")
    ] + [
        ("clamp", [a], REGISTRY["clamp"].Args(min=-0.5, max=2.0)),
        ("clamp", [a], REGISTRY["clamp"].Args(min=nan)),
        ("clamp", [a], REGISTRY["clamp"].Args(max=inf)),
        ("clamp_min", [a], REGISTRY["clamp_min"].Args(min=0.5)),
        ("clamp_max", [a], REGISTRY["clamp_max"].Args(max=2.0)),
        ("hardtanh", [a], REGISTRY["hardtanh"].Args(min_val=0.5, max_val=2.0)),
        ("elu", [a], REGISTRY["elu"].Args()),
        ("silu", [np.where(np.isinf(a), 1.0, a)], None),
        ("logsumexp", [a], REGISTRY["logsumexp"].Args(dim=1)),
        ("where", [a > 1.0, a, b], None),
    ]
    for name, xs, args in runs:
        op = REGISTRY[name]
        out = op.forward(xs, args)
        ts = [torch.tensor(x, requires_grad=x.dtype != bool) for x in xs]
        t_out = op.torch(torch, ts, args)
        np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-12, atol=0, err_msg=name)
        gg = rng.standard_normal(out.shape)
        t_out.backward(torch.tensor(gg))
        for k, (mine, t) in enumerate(zip(op.backward(gg, out, xs, args), ts, strict=True)):
            if t.grad is None:
                continue
            theirs = t.grad.numpy()
            if name == "elu":  # at a NaN input torch's grad is g on its scalar path, NaN on its vector path (AVX2):
                nan_in = np.isnan(xs[k])  # it depends on the CPU and the tensor's length; ours is g
                assert np.all(np.isnan(theirs[nan_in]) | (theirs[nan_in] == gg[nan_in])), theirs
                np.testing.assert_array_equal(mine[nan_in], gg[nan_in])
                mine, theirs = mine[~nan_in], theirs[~nan_in]
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=0, err_msg=f"{name} input {k}")
    for name in ("gt", "lt", "ge", "le", "eq", "ne"):
        op = REGISTRY[name]
        np.testing.assert_array_equal(op.forward([a, b], None), op.torch(torch, [torch.tensor(a), torch.tensor(b)], None),
                                      err_msg=name)


# argmax / argmin: int64 indices (no gradient), used to pick values that carry one; ties take the first index,
# NaN counts as the extreme (torch's rule), and the flat index over all elements.
TIES = {"x": given([[0.1, 0.3, 0.3], [2.0, 2.0, -1.0], [1.0, -4.0, -4.0]])}
for op in ("argmax", "argmin"):
    case(f"{op}-dim-gather", {"x": normal(3, 4, seed=30)}, N("i", op, "x", dim=1, keepdim=True),
         N("y", "gather", "x", "i", dim=1))
    case(f"{op}-ties", TIES, N("i", op, "x", dim=1, keepdim=True), N("y", "gather", "x", "i", dim=1), **EXACT_ONLY)
    case(f"{op}-dim0-index", {"x": normal(3, 4, seed=31)}, N("i", op, "x", dim=0), N("y", "index_select", "x", "i", dim=1))
    case(f"{op}-flat", {"x": normal(2, 3, seed=32), "z": normal(seed=33)}, N("i", op, "x"), N("c", "eq", "i", 4),
         N("y", "where", "c", "z", "x"))


@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_arg_extremes_follow_torch_with_nan_and_keepdim(op: str) -> None:
    import numpy as np
    import torch

    from services.trace import trace

    x = [[1.0, float("nan"), float("nan")], [0.5, 2.0, 2.0]]
    spec = TraceSpec(inputs={"x": {"value": x, "requires_grad": False}, "w": [1.0, 2.0, 3.0]},
                     nodes=[N("i", op, "x", dim=1), N("k", op, "x", keepdim=True), N("j", op, "x"),
                            N("y", "mul", "w", 2.0), N("l", "sum", "y")], output="l")
    t = trace(spec)
    tx = torch.tensor(x)
    for name, want in (("i", getattr(tx, op)(dim=1)), ("k", getattr(tx, op)(keepdim=True)), ("j", getattr(tx, op)())):
        for eng in ("torch", "reference"):
            got = t.arrays[f"{eng}/value/{name}"]
            assert got.dtype == np.int64 and got.shape == tuple(want.shape)
            np.testing.assert_array_equal(got, want.numpy())
