"""silu, elu, hardtanh, var, std and logsumexp, proved like tests/test_ops.py: torch, the reference and
finite differences agree on values, grads and edges; at kinks, and where var's count minus correction
is <= 0 (inf and NaN), the reference must reproduce torch exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_ops import DTYPES, ENGINES, N, away, check, distinct, given, make_spec, normal, uniform

from services.compiler import compile_spec
from services.errors import SpecError
from services.trace import trace
from shared.spec import TraceSpec

# torch warns where count - correction <= 0; those cases are deliberate.
pytestmark = pytest.mark.filterwarnings("ignore:.*degrees of freedom is <= 0:UserWarning")

CASES: list[Any] = []
EXACT_ONLY = {"engines": ["torch", "reference"]}


def case(id: str, inputs: dict[str, Any], *nodes: dict[str, Any], **kw: Any) -> None:
    CASES.append(pytest.param(inputs, list(nodes), kw, id=id))


# ---- activations -------------------------------------------------------------------------------

KINKS = [[-2.0, -1.0, -0.5, 0.0], [0.5, 1.0, 2.0, -0.0]]
case("silu", {"x": normal(2, 3, 4, seed=1, std=2.0)}, N("y", "silu", "x"))
case("silu-tails", {"x": given([-40.0, -15.0, 0.0, 15.0, 40.0])}, N("y", "silu", "x"))
case("elu", {"x": away(3, 4, seed=2, high=3.0)}, N("y", "elu", "x"))
case("elu-alpha", {"x": away(3, 4, seed=3, high=3.0)}, N("y", "elu", "x", alpha=0.5))
case("elu-alpha-negative", {"x": away(3, 4, seed=4)}, N("y", "elu", "x", alpha=-1.5))
case("elu-tails", {"x": given([-100.0, -20.0, 20.0, 100.0])}, N("y", "elu", "x", alpha=2.0))
case("elu-at-0", {"x": given(KINKS)}, N("y", "elu", "x", alpha=2.0), **EXACT_ONLY)
case("hardtanh", {"x": away(3, 4, seed=5, high=2.0)}, N("y", "hardtanh", "x"))
case("hardtanh-bounds", {"x": away(3, 4, seed=6, high=2.0)}, N("y", "hardtanh", "x", min_val=-0.4, max_val=1.3))
case("hardtanh-at-bounds", {"x": given(KINKS)}, N("y", "hardtanh", "x"), **EXACT_ONLY)
case("hardtanh-at-custom-bounds", {"x": given(KINKS)}, N("y", "hardtanh", "x", min_val=-0.5, max_val=0.5), **EXACT_ONLY)
case("hardtanh-equal-bounds", {"x": given(KINKS)}, N("y", "hardtanh", "x", min_val=0.5, max_val=0.5), **EXACT_ONLY)
case("mlp-silu", {"x": normal(4, 3, seed=7), "w": normal(5, 3, seed=8), "b": normal(5, seed=9)},
     N("h", "linear", "x", "w", "b"), N("a", "silu", "h"), N("e", "elu", "a"), N("L", "mean", "e"))

# ---- var and std -------------------------------------------------------------------------------

V = {"x": normal(2, 3, 4, seed=10)}
VAR_ARGS: list[dict[str, Any]] = [
    {},
    {"keepdim": True},
    {"dim": 1},
    {"dim": -1, "keepdim": True},
    {"dim": [0, 2]},
    {"dim": [-1, 0], "keepdim": True},
    {"dim": [0, 1, 2]},
    {"dim": [1]},
    {"unbiased": False},
    {"unbiased": True},
    {"dim": 1, "unbiased": False},
    {"dim": [0, 2], "unbiased": False, "keepdim": True},
    {"dim": False},  # torch.var(x, False): a bool where dim goes is `unbiased`
    {"dim": True},
    {"correction": 0},
    {"correction": 2},
    {"correction": 0.5, "dim": 2},
    {"correction": -1, "dim": [0, 1], "keepdim": True},
    {"dim": None, "correction": 3, "keepdim": True},
]
for op in ("var", "std"):
    for args in VAR_ARGS:
        case(f"{op}-{args}", V, N("y", op, "x", **args))
    case(f"{op}-1d", {"x": normal(5, seed=11)}, N("y", op, "x"))
    case(f"{op}-0d-correction0", {"x": normal(seed=12), "w": normal(seed=13)}, N("v", op, "x", correction=0),
         N("y", "add", "v", "w"), **EXACT_ONLY)
    case(f"{op}-after-exp", {"x": normal(3, 4, seed=14)}, N("e", "exp", "x"), N("y", op, "e", dim=0))
    # count - correction <= 0: inf and NaN forward, torch's inf/NaN/finite-negative gradients.
    VC = {"x": given([[1.0, 2.0, 2.0], [3.0, 3.0, 3.0]])}
    case(f"{op}-count-equals-correction", VC, N("y", op, "x", dim=1, correction=3), **EXACT_ONLY)
    case(f"{op}-count-under-correction", VC, N("y", op, "x", dim=1, correction=4), **EXACT_ONLY)
    case(f"{op}-all-count-equals-correction", VC, N("y", op, "x", correction=6), **EXACT_ONLY)
    case(f"{op}-all-count-under-correction", VC, N("y", op, "x", correction=7, keepdim=True), **EXACT_ONLY)
    case(f"{op}-all-dims-count-equals-correction", VC, N("y", op, "x", dim=[0, 1], correction=6), **EXACT_ONLY)
    case(f"{op}-single-element", {"x": normal(1, 3, seed=15)}, N("y", op, "x", dim=0), **EXACT_ONLY)
    case(f"{op}-0d-dim[]", {"x": normal(seed=16)}, N("y", op, "x", dim=[], correction=0.5), **EXACT_ONLY)
    case(f"{op}-constant-rows", VC, N("y", op, "x", dim=1), **EXACT_ONLY)

# ---- logsumexp ---------------------------------------------------------------------------------

LS = {"x": normal(2, 3, 4, seed=17, std=2.0)}
for dim in (0, 1, -1, [0, 2], [-1, -2], [2], [0, 1, 2]):
    for keepdim in (False, True):
        case(f"logsumexp-dim{dim}-keep{keepdim}", LS, N("y", "logsumexp", "x", dim=dim, keepdim=keepdim))
case("logsumexp-dim[]-keep", LS, N("y", "logsumexp", "x", dim=[], keepdim=True))
case("logsumexp-1d", {"x": normal(5, seed=18)}, N("y", "logsumexp", "x", dim=0))
case("logsumexp-0d", {"x": normal(seed=19), "w": normal(seed=20)}, N("s", "logsumexp", "x", dim=0), N("y", "mul", "s", "w"))
case("logsumexp-0d-dim[]", {"x": normal(seed=19), "w": normal(seed=20)}, N("s", "logsumexp", "x", dim=[]),
     N("y", "mul", "s", "w"))
LARGE = [[1000.0, 1001.0, 999.5], [-1000.0, -1002.0, -999.0], [88.0, 89.0, -3.0], [0.0, 50.0, -50.0]]
case("logsumexp-large", {"x": given(LARGE)}, N("y", "logsumexp", "x", dim=1))
case("logsumexp-large-dim0", {"x": given(LARGE)}, N("y", "logsumexp", "x", dim=0, keepdim=True))
case("logsumexp-large-all", {"x": given(LARGE)}, N("y", "logsumexp", "x", dim=[0, 1]))
case("logsumexp-ties", {"x": distinct(3, 4, seed=21), "z": uniform(3, 4, low=-1.0, high=1.0, seed=22)},
     N("m", "maximum", "x", "z"), N("y", "logsumexp", "m", dim=-1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("inputs", "nodes", "kw"), CASES)
def test_op(inputs: dict[str, Any], nodes: list[dict[str, Any]], kw: dict[str, Any], dtype: str) -> None:
    check(inputs, nodes, dtype, **kw)


def test_var_dof_at_most_zero_is_inf_or_nan() -> None:
    """Forward values where count - correction <= 0 are torch's: inf, or NaN for 0/0 (a constant row, a 0-d input)."""
    t = check({"x": given([[1.0, 2.0, 2.0], [3.0, 3.0, 3.0]])}, [N("y", "var", "x", dim=1, correction=3)], "float64",
              **EXACT_ONLY)
    for eng in ("torch", "reference"):
        v = t.arrays[f"{eng}/value/y"]
        assert v[0] == float("inf") and v[1] != v[1]


@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize("args", [{}, {"dim": 0}, {"dim": -1, "keepdim": True}, {"dim": [0]}, {"unbiased": True}])
def test_var_0d_is_nan_with_nan_grad(op: str, args: dict[str, Any]) -> None:
    """A 0-d input has count 1, so the default correction gives 0/0: NaN value and NaN grad in both engines.
    (Not through check(): a 0-d NaN edge comes back from JSON as null, indistinguishable from a missing one.)"""
    spec = make_spec({"x": normal(seed=16)}, [N("y", op, "x", **args)], "float64", **EXACT_ONLY)
    t = trace(spec)
    assert t.result.comparison.verdict == "agree"
    for eng in ("torch", "reference"):
        assert np.isnan(t.arrays[f"{eng}/value/y"]) and np.isnan(t.arrays[f"{eng}/grad/x"])
        assert t.arrays[f"{eng}/value/y"].shape == ()


def test_logsumexp_large_is_finite() -> None:
    t = check({"x": given([[1000.0, 1000.0], [-1000.0, -1000.0]])}, [N("y", "logsumexp", "x", dim=1)], "float32")
    for eng in ("torch", "reference"):
        assert abs(t.arrays[f"{eng}/value/y"][0] - (1000.0 + 0.6931472)) < 1e-3
        assert abs(t.arrays[f"{eng}/value/y"][1] - (-1000.0 + 0.6931472)) < 1e-3


# ---- shape and argument errors -----------------------------------------------------------------


def _spec_error(inputs: dict[str, Any], *nodes: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(inputs=inputs, nodes=list(nodes), engines=ENGINES, grad_output=1.0))
    return info.value


X = {"x": normal(2, 3)}


@pytest.mark.parametrize(
    ("node", "words"),
    [
        (N("c", "silu", "x", inplace=True), "argument 'inplace'"),
        (N("c", "elu", "x", alpha="big"), "argument 'alpha'"),
        (N("c", "elu", "x", inplace=False), "argument 'inplace'"),
        (N("c", "hardtanh", "x", min_val=1.0, max_val=-1.0), "cannot be greater"),
        (N("c", "hardtanh", "x", "x"), "takes 1 tensor inputs"),
        (N("c", "var", "x", dim=2), "out of range"),
        (N("c", "var", "x", dim=[0, -2]), "repeats"),
        (N("c", "std", "x", unbiased=True, correction=0), "not both"),
        (N("c", "var", "x", dim=True, unbiased=False), "unbiased"),
        (N("c", "std", "x", dim=[]), "dim=[]"),
        (N("c", "var", "x", correction=float("nan")), "NaN"),
        (N("c", "var", "x", ddof=1), "argument 'ddof'"),
        (N("c", "std", "x", dim="all"), "argument 'dim"),
        (N("c", "logsumexp", "x"), "argument 'dim'"),
        (N("c", "logsumexp", "x", dim=None), "argument 'dim"),
        (N("c", "logsumexp", "x", dim=2), "out of range"),
        (N("c", "logsumexp", "x", dim=[1, 1]), "repeats"),
        (N("c", "logsumexp", "x", dim=[]), "keepdim=True"),
        (N("c", "logsumexp", "x", 1.0, dim=0), "takes 1 tensor inputs"),
    ],
    ids=lambda v: f"{v['op']}:{v['args']}" if isinstance(v, dict) else None,
)
def test_errors_name_the_node(node: dict[str, Any], words: str) -> None:
    err = _spec_error(X, node, N("y", "sum", "x"))
    assert err.node == "c", (err.node, err.message)
    assert words in err.message, err.message


@pytest.mark.parametrize("node", [N("c", "silu", "p"), N("c", "elu", "p"), N("c", "hardtanh", "p"), N("c", "var", "p"),
                                  N("c", "std", "p", dim=0), N("c", "logsumexp", "p", dim=0)], ids=lambda v: v["op"])
def test_bool_input_is_rejected(node: dict[str, Any]) -> None:
    """A comparison's bool result where floats are needed: torch fails or changes dtype, so it is rejected."""
    err = _spec_error(X, N("p", "gt", "x", 0.0), node, N("y", "sum", "x"))
    assert err.node == "c" and "bool tensor" in err.message, err.message


def test_var_std_against_torch_every_form() -> None:
    """The reference's values and grads against torch's directly, over shapes, dims, corrections and keepdim,
    including count - correction <= 0 (inf and NaN, which a trace's JSON cannot tell apart) and empty tensors."""
    import itertools
    import warnings

    import torch

    from services.errors import ShapeError
    from services.ops import REGISTRY
    from services.ops.reductions import VarArgs

    rng, checked = np.random.default_rng(0), 0
    shapes = [(), (1,), (3,), (2, 3), (2, 1, 3), (0, 3)]
    dims: list[Any] = [None, 0, -1, [0], [0, 1], [-1, 0], [0, 1, 2]]
    forms: list[dict[str, Any]] = [{}, {"unbiased": False}] + [{"correction": c} for c in (0.5, 3, 7, -1)]
    for shape, dim, form, keepdim, name in itertools.product(shapes, dims, forms, [False, True], ["var", "std"]):
        args = VarArgs(dim=dim, keepdim=keepdim, **form)
        op = REGISTRY[name]
        try:
            out_shape = op.shape([shape], args)
        except (ShapeError, ValueError):
            continue
        x = rng.standard_normal(shape)
        if x.ndim == 2 and x.size:
            x[0] = 1.5  # a constant row: std 0, and 0/0 where the count runs out
        out = op.forward([x], args)
        g = rng.standard_normal(out.shape)
        tx = torch.tensor(x, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ty = op.torch(torch, [tx], args)
            ty.backward(torch.tensor(g))
        assert out.shape == tuple(ty.shape) == out_shape, (name, shape, args)
        np.testing.assert_allclose(out, ty.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{name} {shape} {args}")
        np.testing.assert_allclose(op.backward(g, out, [x], args)[0], tx.grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"grad of {name} {shape} {args}")
        checked += 1
    assert checked > 400, checked
