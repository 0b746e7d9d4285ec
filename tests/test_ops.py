"""Every registered op, proved three ways: the numpy reference against torch, and both against
float64 finite differences, for values, node gradients and edge gradients, in float32 and float64.

Each case is a small node graph. Its output gets a random `grad_output` (all-ones would hide
backward bugs such as a wrong permutation or a swapped transpose), and `check` asserts the
verdict and then compares the full arrays itself, elementwise."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from services.compiler import compile_spec
from services.engines.reference import run_reference
from services.errors import SpecError
from services.ops import REGISTRY
from services.trace import Trace, trace
from shared.result import TensorData
from shared.spec import TraceSpec

DTYPES = ["float32", "float64"]
ENGINES = ["torch", "reference", "numeric"]

# (rtol, atol) for elementwise comparisons; atol is scaled by max(1, max |expected|).
EXACT = {"float32": (1e-4, 2e-5), "float64": (1e-9, 1e-11)}
NUMERIC = {"float32": (2e-3, 2e-4), "float64": (1e-5, 1e-7)}


# ---- building specs ----------------------------------------------------------------------------


def N(name: str, op: str, *inputs: str | float, **args: Any) -> dict[str, Any]:
    """One node: name = op(*inputs, **args)."""
    return {"name": name, "op": op, "inputs": list(inputs), "args": args}


def normal(*shape: int, seed: int = 0, std: float = 1.0) -> dict[str, Any]:
    return {"shape": list(shape), "init": "normal", "seed": seed, "std": std}


def uniform(*shape: int, low: float, high: float, seed: int = 0) -> dict[str, Any]:
    return {"shape": list(shape), "init": "uniform", "low": low, "high": high, "seed": seed}


def away(*shape: int, seed: int = 0, low: float = 0.2, high: float = 1.5) -> dict[str, Any]:
    """Values with |x| in [low, high] and random signs: far from 0, where relu/abs/div have kinks or poles."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return {"value": v.tolist()}


def distinct(*shape: int, seed: int = 0) -> dict[str, Any]:
    """Values in [-2, 2) at least 4/size apart: no ties for max/min/max_pool, even after finite-difference steps."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    v = rng.permutation(n) * (4.0 / max(n, 1)) - 2.0 + rng.uniform(0, 0.5 / max(n, 1), size=n)
    return {"value": v.reshape(shape).tolist()}


def given(values: Any, dtype: str | None = None, requires_grad: bool | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"value": values}
    if dtype:
        spec["dtype"] = dtype
    if requires_grad is not None:
        spec["requires_grad"] = requires_grad
    return spec


# ---- checking a trace --------------------------------------------------------------------------


def _tol(table: dict[str, tuple[float, float]], dtype: str, expected: np.ndarray) -> dict[str, float]:
    rtol, atol = table[dtype]
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    return {"rtol": rtol, "atol": atol * scale}


def assert_close(actual: Any, expected: Any, dtype: str, what: str, numeric: bool = False) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, err_msg=what, **_tol(NUMERIC if numeric else EXACT, dtype, expected))


def _decode(td: Any) -> np.ndarray:
    """An inlined TensorData as an array (non-finite numbers survive JSON as 'Infinity', '-Infinity', 'NaN')."""
    assert td is not None and td.data is not None, "edge tensor missing or not inlined"
    td = TensorData.model_validate_json(td.model_dump_json())  # through JSON and back
    return np.asarray(td.data, dtype=np.float64).reshape(td.shape)


def _as_json(a: np.ndarray) -> np.ndarray:
    """An array as compared with what came through JSON."""
    return np.asarray(a, np.float64)


def make_spec(inputs: dict[str, Any], nodes: list[dict[str, Any]], dtype: str, *, seed: int = 7,
              engines: list[str] | None = None, **extra: Any) -> TraceSpec:
    """A spec whose output gets a random grad_output of its shape (found by compiling once)."""
    engines = engines or ENGINES
    probe = compile_spec(TraceSpec(inputs=inputs, nodes=nodes, dtype=dtype, engines=engines, grad_output=1.0, **extra))
    shape = probe.shape_of(probe.output)
    go = np.random.default_rng(seed).uniform(0.5, 1.5, size=shape) * np.random.default_rng(seed + 1).choice([-1, 1], size=shape)
    return TraceSpec(inputs=inputs, nodes=nodes, dtype=dtype, engines=engines, grad_output=go.tolist(), **extra)


def check(inputs: dict[str, Any], nodes: list[dict[str, Any]], dtype: str, **kw: Any) -> Trace:
    """Trace with all three engines and prove values, node grads and edge grads agree."""
    spec = make_spec(inputs, nodes, dtype, **kw)
    t = trace(spec, inline_limit=10**7)
    res, arrays, graph = t.result, t.arrays, t.graph
    failures = {p.engines: p.failures for p in res.comparison.pairs if p.failures}
    assert res.comparison.verdict == "agree", f"engines disagree: {failures}"
    declared = [leaf.dtype for leaf in graph.leaves.values()] + [n.dtype for n in graph.nodes]
    dtype = "float32" if "float32" in declared else dtype  # judged by the least precise tensor, as compare.py does

    for name in graph.names():
        want = tuple(graph.shape_of(name))
        for eng in ("torch", "reference"):
            got = arrays[f"{eng}/value/{name}"]
            assert got.shape == want, f"{eng} value of {name}: shape {got.shape}, shape rule says {want}"
            declared = graph.leaves[name].dtype if name in graph.leaves else graph.node(name).dtype
            assert got.dtype == np.dtype(declared), f"{eng} value of {name} is {got.dtype}, the dtype rule says {declared}"
        assert_close(arrays[f"reference/value/{name}"], arrays[f"torch/value/{name}"], dtype, f"value of {name}")
        tg, rg = arrays.get(f"torch/grad/{name}"), arrays.get(f"reference/grad/{name}")
        assert (tg is None) == (rg is None), f"grad of {name}: torch {tg is not None}, reference {rg is not None}"
        if tg is not None:
            assert tg.shape == want and rg.shape == want, f"grad of {name}: shapes {tg.shape}, {rg.shape}, want {want}"
            assert_close(rg, tg, dtype, f"reference grad of {name}")

    if "numeric" in graph.engines:
        sampled = 0
        for name, leaf in graph.leaves.items():
            tg = arrays.get(f"torch/grad/{name}")
            if not leaf.requires_grad or tg is None:
                assert f"numeric/grad/{name}" not in arrays, f"numeric grad for {name}, which torch leaves None"
                continue
            ng = arrays[f"numeric/grad/{name}"]
            keep = ~np.isnan(ng)
            sampled += int(keep.sum())
            assert_close(ng[keep], tg[keep], dtype, f"numeric grad of {name}", numeric=True)
        assert sampled > 0, "finite differences checked nothing"

    # Edge grads: torch's and the reference's agree, and per source they add up to its grad.
    ref_edges = run_reference(graph).edges
    torch_edges = {(e.src, e.dst): e for e in res.edges}
    assert set(torch_edges) == set(ref_edges), f"edges: torch {sorted(torch_edges)}, reference {sorted(ref_edges)}"
    for key, e in torch_edges.items():
        assert_close(_decode(e.grad), _as_json(ref_edges[key]), dtype, f"edge {key}")
        assert_close(_decode(e.engines["reference"]), _as_json(ref_edges[key]), dtype, f"edge {key} in the result")
    for src in {s for s, _ in torch_edges}:
        for eng, edges in (("torch", {k: _decode(e.grad) for k, e in torch_edges.items()}), ("reference", ref_edges)):
            total = sum(g for (s, _), g in edges.items() if s == src)
            assert_close(_as_json(total), _as_json(arrays[f"{eng}/grad/{src}"]), dtype,
                         f"{eng}: edges out of {src} sum to its grad")
    for name in graph.names():
        if name != graph.output and f"torch/grad/{name}" in arrays:
            assert any(s == name for s, _ in torch_edges), f"{name} has a grad but no edge carries it"
    return t


# ---- cases -------------------------------------------------------------------------------------

CASES: list[Any] = []


def case(id: str, inputs: dict[str, Any], *nodes: dict[str, Any], **kw: Any) -> None:
    CASES.append(pytest.param(inputs, list(nodes), kw, id=id))


# Elementwise binary ops over broadcasting shapes, both operands requiring grad.
BROADCASTS = [((2, 3), (3,)), ((4, 1), (1, 5)), ((3,), (2, 3)), ((), (2, 3)), ((2, 1, 3), (4, 1)), ((2, 3), (2, 3))]
for sa, sb in BROADCASTS:
    tag = f"{list(sa)}x{list(sb)}"
    for op in ("add", "sub", "mul"):
        case(f"{op}-{tag}", {"a": normal(*sa, seed=1), "b": normal(*sb, seed=2)}, N("y", op, "a", "b"))
    case(f"div-{tag}", {"a": normal(*sa, seed=1), "b": away(*sb, seed=2, low=0.5)}, N("y", "div", "a", "b"))
    case(f"pow-{tag}", {"a": uniform(*sa, low=0.5, high=2.0, seed=1), "b": normal(*sb, seed=2)}, N("y", "pow", "a", "b"))

# Python scalars on either side.
X = {"x": away(2, 3, seed=3)}
XPOS = {"x": uniform(2, 3, low=0.3, high=2.0, seed=4)}
case("2-x", X, N("y", "sub", 2, "x"))
case("x-2", X, N("y", "sub", "x", 2))
case("1.5+x", X, N("y", "add", 1.5, "x"))
case("x*3", X, N("y", "mul", "x", 3))
case("-0.5*x", X, N("y", "mul", -0.5, "x"))
case("2/x", X, N("y", "div", 2, "x"))
case("x/4", X, N("y", "div", "x", 4))
case("x**3", X, N("y", "pow", "x", 3))
case("x**2.5", XPOS, N("y", "pow", "x", 2.5))
case("x**-1", X, N("y", "pow", "x", -1))
case("x**0", X, N("y", "pow", "x", 0))
case("2**x", X, N("y", "pow", 2, "x"))
case("0.5**x", X, N("y", "pow", 0.5, "x"))
case("x*x", X, N("y", "mul", "x", "x"))
case("x**x", XPOS, N("y", "pow", "x", "x"))

# Unary ops on safe domains.
for op in ("neg", "exp", "sin", "cos", "tanh", "sigmoid", "square"):
    case(f"{op}", {"x": normal(2, 3, 4, seed=5)}, N("y", op, "x"))
for op in ("abs", "relu"):
    case(f"{op}", {"x": away(2, 3, 4, seed=6)}, N("y", op, "x"))
for op in ("log", "sqrt", "rsqrt"):
    case(f"{op}", {"x": uniform(2, 3, 4, low=0.2, high=3.0, seed=7)}, N("y", op, "x"))
case("exp-0d", {"x": normal(seed=1)}, N("y", "exp", "x"))
for op in ("tan", "atan", "sinh", "cosh", "asinh", "erf", "erfc", "expm1", "exp2", "logsigmoid", "softsign", "mish", "deg2rad",
           "rad2deg"):
    case(f"{op}", {"x": normal(2, 3, 4, seed=11)}, N("y", op, "x"))
for op in ("asin", "acos", "atanh"):  # inside (-1, 1)
    case(f"{op}", {"x": uniform(2, 3, 4, low=-0.9, high=0.9, seed=12)}, N("y", op, "x"))
for op in ("log1p", "log2", "log10", "reciprocal"):
    case(f"{op}", {"x": uniform(2, 3, 4, low=0.2, high=3.0, seed=13)}, N("y", op, "x"))
# step functions (gradient 0) and kinked ones, away from their steps and kinks.
STEPS = given([[0.3, -1.4, 2.7, -0.2], [1.2, -2.6, 0.45, 3.3], [-3.6, 4.2, -0.7, 2.2]])
for op in ("sign", "floor", "ceil", "round", "trunc", "frac", "hardsigmoid", "hardswish"):
    case(f"{op}", {"x": STEPS}, N("y", op, "x"), N("z", "mul", "y", "x"))
# at the kinks themselves, torch's backward picks a side: hardswish 0 at -3 and 1 at 3, hardsigmoid 0 at both
# (finite differences straddle the kink: torch and reference only)
for op in ("hardsigmoid", "hardswish"):
    case(f"{op}-kinks", {"x": given([-3.0, 3.0, -2.5, 3.5])}, N("y", op, "x"), N("z", "mul", "y", "x"),
         engines=["torch", "reference"])
case("leaky_relu", {"x": away(3, 4, seed=8)}, N("y", "leaky_relu", "x"))
case("leaky_relu-0.2", {"x": away(3, 4, seed=9)}, N("y", "leaky_relu", "x", negative_slope=0.2))
case("gelu", {"x": normal(3, 4, seed=10, std=2.0)}, N("y", "gelu", "x"))
case("gelu-none", {"x": normal(3, 4, seed=10, std=2.0)}, N("y", "gelu", "x", approximate="none"))
case("gelu-tanh", {"x": normal(3, 4, seed=11, std=2.0)}, N("y", "gelu", "x", approximate="tanh"))
case("softplus", {"x": normal(3, 4, seed=12, std=3.0)}, N("y", "softplus", "x"))
# beta*x either side of the threshold (kept away from it: the branch is discontinuous).
SP = [[-3.0, -0.4, 0.1, 0.3], [0.7, 1.0, 2.5, 4.0]]
case("softplus-threshold", {"x": given(SP)}, N("y", "softplus", "x", beta=2.0, threshold=1.0))
case("softplus-beta", {"x": given(SP)}, N("y", "softplus", "x", beta=0.5))
case("softplus-linear", {"x": given([21.0, 25.0, -1.0, 30.0])}, N("y", "softplus", "x"))
# Far tails, where a value underflowing to 0 shows up after a log: sigmoid(-30) is 9e-14, not 0.
TAILS = [-30.0, -20.0, 3.0, 40.0]
case("log-sigmoid-tails", {"x": given(TAILS)}, N("s", "sigmoid", "x"), N("y", "log", "s"))
case("log-softplus-tails", {"x": given(TAILS)}, N("s", "softplus", "x"), N("y", "log", "s"))

# Reductions.
R = {"x": normal(2, 3, 4, seed=13)}
for op in ("sum", "mean"):
    for dim in (None, 0, 1, -1, [0, 2], [-1, 0], [1], []):
        for keepdim in (False, True):
            args = {"keepdim": keepdim} if dim is None else {"dim": dim, "keepdim": keepdim}
            case(f"{op}-dim{dim}-keep{keepdim}", R, N("y", op, "x", **args))
    case(f"{op}-0d", {"x": normal(seed=2)}, N("y", op, "x"))
    case(f"{op}-0d-dim0", {"x": normal(seed=2)}, N("y", op, "x", dim=0))
for op in ("max", "min"):
    case(f"{op}-all", {"x": distinct(3, 4, seed=14)}, N("y", op, "x"))
    case(f"{op}-all-3d", {"x": distinct(2, 3, 4, seed=15)}, N("y", op, "x"))
    case(f"{op}-0d", {"x": normal(seed=2)}, N("y", op, "x"))
    for dim in (0, 1, -1, -3):
        for keepdim in (False, True):
            case(f"{op}-dim{dim}-keep{keepdim}", {"x": distinct(2, 3, 4, seed=16)}, N("y", op, "x", dim=dim, keepdim=keepdim))
for op in ("softmax", "log_softmax"):
    for dim in (0, 1, 2, -1, -2):
        case(f"{op}-dim{dim}", {"x": normal(2, 3, 4, seed=17, std=2.0)}, N("y", op, "x", dim=dim))
    case(f"{op}-1d", {"x": normal(5, seed=18)}, N("y", op, "x", dim=0))
    case(f"{op}-0d", {"x": normal(seed=18), "w": normal(seed=19)}, N("y", op, "x", dim=-1), N("z", "mul", "y", "w"))
    case(f"{op}-large", {"x": given([[100.0, 101.0, 99.5], [-50.0, 0.0, 50.0]])}, N("y", op, "x", dim=1))

# Matrix products.
for sa, sb in [((4,), (4,)), ((4,), (4, 3)), ((2, 4), (4,)), ((2, 4), (4, 3)), ((2, 1, 3, 4), (5, 4, 2)),
               ((3, 2, 4), (3, 4, 5)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)), ((1, 3, 4), (2, 4, 2))]:
    case(f"matmul-{list(sa)}@{list(sb)}", {"a": normal(*sa, seed=20), "b": normal(*sb, seed=21)}, N("y", "matmul", "a", "b"))
case("bmm", {"a": normal(2, 3, 4, seed=20), "b": normal(2, 4, 5, seed=21)}, N("y", "bmm", "a", "b"))
case("matmul-x@x.T", {"a": normal(3, 3, seed=22)}, N("t", "transpose", "a", dim0=0, dim1=1), N("y", "matmul", "a", "t"))
LIN = {"w": normal(5, 4, seed=23), "b": normal(5, seed=24)}
case("linear", {"x": normal(3, 4, seed=25), **LIN}, N("y", "linear", "x", "w", "b"))
case("linear-nobias", {"x": normal(3, 4, seed=25), "w": LIN["w"]}, N("y", "linear", "x", "w"))
case("linear-3d", {"x": normal(2, 3, 4, seed=26), **LIN}, N("y", "linear", "x", "w", "b"))
case("linear-3d-nobias", {"x": normal(2, 3, 4, seed=26), "w": LIN["w"]}, N("y", "linear", "x", "w"))
case("linear-1d", {"x": normal(4, seed=27), **LIN}, N("y", "linear", "x", "w", "b"))
case("linear-0d-bias", {"x": normal(3, 4, seed=25), "w": LIN["w"], "b": normal(seed=28)}, N("y", "linear", "x", "w", "b"))
case("linear-frozen-w", {"x": normal(3, 4, seed=25), "w": {**LIN["w"], "requires_grad": False}, "b": LIN["b"]},
     N("y", "linear", "x", "w", "b"))

# Shaping.
S = {"x": normal(2, 3, 4, seed=29)}
for shape in ([-1, 2], [3, -1, 2], [24], [4, 3, 2], [2, 3, 4], [1, -1, 1]):
    case(f"reshape-{shape}", S, N("y", "reshape", "x", shape=shape))
case("view", S, N("y", "view", "x", shape=[4, -1]))
case("view-contiguous-of-a-transpose", S, N("t", "transpose", "x", dim0=1, dim1=2), N("y", "view", "t", shape=[2, -1], contiguous=True))
for d0, d1 in ((0, 2), (-1, -2), (1, 1)):
    case(f"transpose-{d0},{d1}", S, N("y", "transpose", "x", dim0=d0, dim1=d1))
for dims in ([2, 0, 1], [-1, 0, 1], [1, 2, 0], [0, 1, 2]):
    case(f"permute-{dims}", S, N("y", "permute", "x", dims=dims))
for shape in ((3, 4), (5,), ()):
    case(f"t-{list(shape)}", {"x": normal(*shape, seed=30)}, N("y", "t", "x"), N("z", "mul", "y", "y"))
case("t-into-matmul", {"a": normal(3, 4, seed=31), "b": normal(3, 2, seed=32)}, N("at", "t", "a"), N("y", "matmul", "at", "b"))
case("clone-shared", {"x": normal(2, 3, seed=33)}, N("c", "clone", "x"), N("y", "mul", "c", "x"))
for dims in ([0], [-1, 0], [2, 1, 0]):
    case(f"flip-{dims}", S, N("y", "flip", "x", dims=dims), N("z", "mul", "y", "x"))  # z: the flipped against the original
case("flip-0d", {"x": normal(seed=34)}, N("y", "flip", "x", dims=[0]))
case("diagonal", {"x": normal(3, 4, seed=40)}, N("y", "diagonal", "x"), N("z", "mul", "y", "y"))
case("unbind-two-slices", S, N("a", "unbind", "x", dim=1, index=0), N("b", "unbind", "x", dim=1, index=-1), N("y", "mul", "a", "b"))
case("diagonal-offset-dims", S, N("y", "diagonal", "x", offset=-1, dim1=2, dim2=1))
case("diagonal-past-the-edge", S, N("y", "diagonal", "x", offset=5))
case("pad-last-dim", S, N("y", "pad", "x", pad=[1, 2]))
case("pad-two-dims-value", S, N("y", "pad", "x", pad=[1, 0, 0, 2], value=-1.5), N("z", "mul", "y", "y"))
case("pad-negative-crops", S, N("y", "pad", "x", pad=[-1, 2, 1, -1, 0, 1]))
# reflect / replicate / circular: each output element copies an input one, whose grad sums theirs.
for mode, pads in (("reflect", ([2, 1], [1, 3, 2, 0], [0, 1, 1, 2, 1, 1])), ("replicate", ([3, 1], [1, 4, 2, 0], [2, 1, 1, 1, 3, 0])),
                   ("circular", ([2, 1], [1, 3, 2, 0], [1, 1, 0, 2, 1, 1]))):
    for pad in pads:
        case(f"pad-{mode}-{pad}", {"x": normal(2, 3, 4, 5, seed=35)} if len(pad) == 6 else S,
             N("y", "pad", "x", pad=pad, mode=mode), N("z", "mul", "y", "y"))
for dim in (0, 1, -1):
    case(f"cumsum-{dim}", S, N("y", "cumsum", "x", dim=dim), N("z", "mul", "y", "y"))
case("cumsum-0d", {"x": normal(seed=35)}, N("y", "cumsum", "x", dim=0))
case("cumsum-int64-positions", {"x": normal(2, 4, seed=36), "m": given([[1, 1, 0, 1], [0, 1, 1, 1]], dtype="int64")},
     N("p", "cumsum", "m", dim=1), N("f", "to", "p", dtype="float32"), N("y", "mul", "x", "f"))
case("outer", {"a": normal(3, seed=36), "b": normal(4, seed=37)}, N("y", "outer", "a", "b"))
case("outer-self-then-sum", {"a": normal(3, seed=38)}, N("o", "outer", "a", "a"), N("y", "sum", "o", dim=0))
# cross: torch.cross's first dim of size 3, a dim given, broadcasting along another dim; linalg.cross's last dim
case("cross-default-dim", {"a": normal(3, 4, seed=39), "b": normal(3, 4, seed=40)}, N("c", "cross", "a", "b"),
     N("y", "mul", "c", "c"))
case("cross-broadcast", {"a": normal(5, 3, seed=41), "b": normal(1, 3, seed=42)}, N("c", "cross", "a", "b", dim=-1),
     N("y", "mul", "c", "a"))
case("linalg_cross", {"a": normal(2, 4, 3, seed=43), "b": normal(2, 1, 3, seed=44)}, N("c", "linalg_cross", "a", "b"),
     N("y", "mul", "c", "c"))
for args in ({}, {"start_dim": 1}, {"start_dim": 0, "end_dim": 1}, {"start_dim": -2, "end_dim": -1}, {"start_dim": 1, "end_dim": 1}):
    case(f"flatten-{args}", S, N("y", "flatten", "x", **args))
case("flatten-1d", {"x": normal(5, seed=30)}, N("y", "flatten", "x"))
case("flatten-0d", {"x": normal(seed=30)}, N("y", "flatten", "x"))
C3 = {"a": normal(2, 3, seed=31), "b": normal(2, 1, seed=32), "c": normal(2, 4, seed=33)}
case("cat-3-dim-1", C3, N("y", "cat", "a", "b", "c", dim=-1))
case("cat-3-dim1", C3, N("y", "cat", "a", "b", "c", dim=1))
case("cat-dim0", {"a": normal(2, 3, seed=31), "b": normal(1, 3, seed=32), "c": normal(3, 3, seed=33)}, N("y", "cat", "a", "b", "c"))
case("cat-same-input", {"a": normal(2, 3, seed=31)}, N("y", "cat", "a", "a", dim=0))
case("cat-1", {"a": normal(2, 3, seed=31)}, N("y", "cat", "a"))

# conv2d.
CONV: list[tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any], bool]] = [
    ("basic", (2, 3, 5, 5), (4, 3, 3, 3), {}, True),
    ("nobias", (2, 3, 5, 5), (4, 3, 3, 3), {}, False),
    ("stride2", (1, 2, 7, 6), (3, 2, 3, 3), {"stride": 2}, True),
    ("stride-pair", (1, 2, 7, 8), (3, 2, 3, 2), {"stride": [2, 3]}, True),
    ("padding", (1, 2, 4, 5), (3, 2, 3, 3), {"padding": 1}, True),
    ("padding-pair", (1, 2, 4, 5), (3, 2, 3, 1), {"padding": [2, 0]}, False),
    ("dilation", (1, 2, 7, 7), (2, 2, 3, 3), {"dilation": 2}, True),
    ("dilation-pair", (1, 2, 7, 8), (2, 2, 2, 3), {"dilation": [3, 2]}, True),
    ("groups2", (2, 4, 5, 6), (6, 2, 3, 2), {"groups": 2}, True),
    ("depthwise", (1, 3, 6, 6), (3, 1, 3, 3), {"groups": 3}, False),
    ("depthwise-x2", (1, 3, 6, 6), (6, 1, 3, 3), {"groups": 3, "padding": 1}, True),
    # depthwise (one multiply-add per kernel offset in the reference): ConvNeXt's 7x7, strided and dilated, unbatched
    ("depthwise-7x7", (2, 4, 9, 8), (4, 1, 7, 7), {"groups": 4, "padding": 3}, True),
    ("depthwise-all", (2, 3, 11, 9), (3, 1, 3, 2), {"groups": 3, "stride": [2, 1], "padding": [2, 1], "dilation": [2, 3]}, True),
    ("depthwise-unbatched", (4, 6, 5), (4, 1, 3, 3), {"groups": 4, "stride": 2}, False),
    ("nonsquare", (2, 2, 6, 7), (3, 2, 2, 4), {}, True),
    ("1x1", (2, 3, 4, 4), (5, 3, 1, 1), {}, True),
    ("all", (2, 4, 9, 10), (6, 2, 3, 2), {"stride": [2, 3], "padding": [1, 2], "dilation": [2, 1], "groups": 2}, True),
    ("stride-uneven", (1, 1, 8, 8), (2, 1, 3, 3), {"stride": 3, "padding": 1}, True),
    ("unbatched", (3, 5, 6), (4, 3, 3, 2), {"padding": 1}, True),
    ("unbatched-groups", (4, 5, 5), (2, 2, 2, 2), {"groups": 2, "stride": 2}, False),
    ("kernel-fills", (1, 2, 3, 4), (2, 2, 3, 4), {}, True),
]
for label, xs, ws, args, bias in CONV:
    ins = {"x": normal(*xs, seed=34), "w": normal(*ws, seed=35, std=0.5)}
    if bias:
        ins["b"] = normal(ws[0], seed=36)
    case(f"conv2d-{label}", ins, N("y", "conv2d", "x", "w", *(["b"] if bias else []), **args))
# conv_transpose2d: weight (C_in, C_out/groups, KH, KW); DCGAN's stride 2, padding 1 doubles the size.
CONV_T: list[tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any], bool]] = [
    ("plain", (2, 3, 3, 4), (3, 2, 3, 2), {}, True),
    ("dcgan-up", (2, 4, 3, 3), (4, 3, 4, 4), {"stride": 2, "padding": 1}, False),
    ("output-padding", (1, 2, 3, 3), (2, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}, True),
    ("asymmetric-dilated", (1, 2, 3, 4), (2, 1, 2, 3), {"stride": [2, 1], "padding": [1, 0], "dilation": 2}, True),
    ("groups", (2, 4, 2, 3), (4, 3, 2, 2), {"groups": 2, "stride": 2}, True),
    ("unbatched-1x1-input", (3, 1, 1), (3, 2, 4, 4), {}, False),
]
for label, xs, ws, args, bias in CONV_T:
    ins = {"x": normal(*xs, seed=37), "w": normal(*ws, seed=38, std=0.5)}
    if bias:
        ins["b"] = normal(ws[1] * args.get("groups", 1), seed=39)
    case(f"conv_transpose2d-{label}", ins, N("y", "conv_transpose2d", "x", "w", *(["b"] if bias else []), **args))

# conv1d / conv_transpose1d (the 2-d ops over a height of 1), and padding 'same' / 'valid'.
CONV_1D: list[tuple[str, str, tuple[int, ...], tuple[int, ...], dict[str, Any], bool]] = [
    ("conv1d", "plain", (2, 3, 7), (4, 3, 3), {}, True),
    ("conv1d", "strided-padded-groups", (2, 4, 9), (6, 2, 3), {"stride": 2, "padding": 1, "groups": 2}, True),
    ("conv1d", "same-dilated", (1, 3, 8), (2, 3, 3), {"padding": "same", "dilation": 2}, False),
    ("conv1d", "valid-unbatched", (3, 6), (2, 3, 4), {"padding": "valid"}, True),
    ("conv1d", "depthwise-causal", (2, 5, 12), (5, 1, 4), {"padding": 3, "groups": 5}, True),  # Mamba's conv1d
    ("conv_transpose1d", "plain", (2, 3, 5), (3, 2, 3), {}, True),
    ("conv_transpose1d", "upsample", (1, 4, 4), (4, 2, 4), {"stride": 2, "padding": 1, "output_padding": 1}, False),
]
for op, label, xs, ws, args, bias in CONV_1D:
    ins = {"x": normal(*xs, seed=40), "w": normal(*ws, seed=41, std=0.5)}
    if bias:
        ins["b"] = normal(ws[0] if op == "conv1d" else ws[1] * args.get("groups", 1), seed=42)
    case(f"{op}-{label}", ins, N("y", op, "x", "w", *(["b"] if bias else []), **args))
# interpolate: nearest (floor(i * scale)), nearest-exact, (bi)linear with half-pixel centres or align_corners, by size
# or scale factor (fractional too); pixel_shuffle.
IMG = {"x": normal(2, 2, 3, 4, seed=45)}
for label, args in (("nearest-x2", {"scale_factor": 2}), ("nearest-size", {"size": [5, 7]}), ("nearest-down", {"size": [2, 3]}),
                    ("nearest-exact", {"scale_factor": [2, 0.5], "mode": "nearest-exact"}),
                    ("bilinear", {"size": [7, 3], "mode": "bilinear"}), ("bilinear-x1.5", {"scale_factor": 1.5, "mode": "bilinear"}),
                    ("bilinear-align-corners", {"size": [6, 9], "mode": "bilinear", "align_corners": True}),
                    ("bilinear-recompute", {"scale_factor": 1.7, "mode": "bilinear", "recompute_scale_factor": True})):
    case(f"interpolate-{label}", IMG, N("y", "interpolate", "x", **args), N("z", "mul", "y", "y"))
case("interpolate-linear", {"x": normal(2, 3, 5, seed=46)}, N("y", "interpolate", "x", scale_factor=2.5, mode="linear"))
case("interpolate-trilinear", {"x": normal(1, 1, 2, 3, 2, seed=47)}, N("y", "interpolate", "x", size=[3, 4, 4], mode="trilinear"))
case("pixel_shuffle", {"x": normal(2, 8, 2, 3, seed=48)}, N("y", "pixel_shuffle", "x", upscale_factor=2), N("z", "mul", "y", "y"))
# topk / sort / argsort: values carry the gradient back to where they came from; indices are int64, taken here by a
# gather. Ties keep their order in sort, as torch's CPU sort does (finite differences cannot see a tie's gradient);
# topk picks among tied values as torch's CPU kernel does (libstdc++'s nth_element / partial_sort: topk_order).
SRT = {"x": normal(3, 5, seed=51)}
TIES = {"x": given([[1.0, 3.0, 1.0, 2.0, 3.0], [0.5, 0.5, -1.0, 0.5, 2.0]])}
for op, args in (("topk", {"k": 3}), ("topk", {"k": 2, "dim": 0, "largest": False}), ("sort", {"dim": 0}),
                 ("sort", {"descending": True})):
    label = f"{op}-{'-'.join(f'{k}{v}' for k, v in args.items())}"
    case(f"{label}-values", SRT, N("y", op, "x", part="values", **args), N("z", "mul", "y", "y"))
    case(f"{label}-indices", SRT, N("i", op, "x", part="indices", **args), N("z", "gather", "x", "i", dim=args.get("dim", -1)))
for args in ({"k": 2}, {"k": 4}, {"k": 3, "largest": False}, {"k": 1, "dim": 0}):  # [5, 5, 5, 0]-like rows: not the first two
    case(f"topk-ties-{args}", TIES, N("y", "topk", "x", **args), N("i", "topk", "x", part="indices", **args),
         N("g", "gather", "x", "i", dim=args.get("dim", -1)), N("z", "mul", "y", "g"), engines=["torch", "reference"])
for args in ({}, {"descending": True}):
    case(f"sort-ties-{args}", TIES, N("y", "sort", "x", **args), N("i", "sort", "x", part="indices", **args),
         N("g", "gather", "x", "i", dim=-1), N("z", "mul", "y", "g"), engines=["torch", "reference"])
# einsum: matmul, batched, attention scores, implicit output, a diagonal (trace, 'ii->i'), a letter summed within one
# operand, outer product, '...' (broadcast along it too), three operands.
EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 2)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]), ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("ij,kj", [(3, 4), (2, 4)]), ("ii->", [(3, 3)]), ("ii->i", [(3, 3)]), ("ij->j", [(3, 4)]), ("i,j->ij", [(3,), (4,)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (3, 4, 2)]), ("ij...->j...", [(2, 3, 4)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("ijk->kji", [(2, 3, 4)]), ("iij->ij", [(3, 3, 2)]), ("...d,de", [(2, 3, 4), (4, 5)]), ("...ij->ij", [(2, 3, 4)]),
    # operands of over services.ops.einsum.BLAS_SIZE elements: contracted along numpy's optimised path
    ("bij,bjk->bik", [(4, 64, 40), (4, 40, 48)]), ("...ij,...jk->...ik", [(2, 1, 48, 64), (3, 64, 40)]),
    ("ij,jk,kl->il", [(64, 128), (128, 96), (96, 8)]), ("bhqd,bhkd->bhqk", [(2, 2, 64, 40), (2, 2, 32, 40)]),
]
for eq, shapes in EINSUM:
    ins = {f"x{k}": normal(*sh, seed=52 + k) for k, sh in enumerate(shapes)}
    case(f"einsum-{eq}", ins, N("y", "einsum", *ins, equation=eq), N("z", "mul", "y", "y"))
# roll, cumprod (zeros included), p-norms, trace, diag_embed, inv, det, solve.
case("roll-flat", SRT, N("y", "roll", "x", shifts=3), N("z", "mul", "y", "y"))
case("roll-dims", SRT, N("y", "roll", "x", shifts=[1, -2], dims=[0, 1]), N("z", "mul", "y", "x"))
case("cumprod", {"x": uniform(3, 5, low=0.5, high=1.5, seed=56)}, N("y", "cumprod", "x", dim=1))
case("cumprod-zeros-dim0", {"x": given([[0.5, 0.0, 2.0], [0.0, 1.5, -1.0], [2.0, 0.5, 0.0]])}, N("y", "cumprod", "x", dim=0))
for p_, label in ((3.0, "3"), (0.5, "0.5"), (float("inf"), "inf"), (float("-inf"), "-inf")):
    case(f"norm-p{label}-dim", {"x": away(3, 4, seed=57)}, N("y", "norm", "x", p=p_, dim=1))
case("norm-p0.5-zeros", {"x": given([[0.0, 1.0, -2.0], [0.5, 0.0, 0.0]])}, N("y", "norm", "x", p=0.5, dim=1),
     engines=["torch", "reference"])  # torch's gradient at a zero element is 0 (finite differences: a cusp)
case("norm-inf-ties", {"x": given([[1.0, -3.0, 3.0], [2.0, 0.5, -1.0]])}, N("y", "norm", "x", p=float("inf")),
     engines=["torch", "reference"])  # the gradient shared by the tied maxima (finite differences see one side)
case("trace", {"x": normal(3, 4, seed=58)}, N("y", "trace", "x"))
case("diag_embed", {"x": normal(2, 3, seed=59)}, N("y", "diag_embed", "x"), N("z", "mul", "y", "y"))
case("diag_embed-offset", {"x": normal(3, seed=59)}, N("y", "diag_embed", "x", offset=-1), N("z", "mul", "y", "y"))
SQ = {"a": normal(2, 3, 3, seed=60), "b": normal(3, seed=61), "m": normal(3, 2, seed=62)}
case("inv", SQ, N("e", "mul", "a", 0.3), N("y", "inv", "e"))
case("det", SQ, N("y", "det", "a"))
# torch's gradient of a singular matrix is 0 (det * A^-T solved against det * I) where LU gives det exactly 0: a zero
# row does on every LAPACK; two proportional rows gave 0 or 3.6e-7 in float32 by the machine (its pivoting's rounding)
case("det-singular", {"a": given([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.5, -1.0, 2.0]], [[1.0, 2.0, 0.0], [2.0, 4.0, 0.0],
                                                                                    [0.0, 0.0, 1.0]]])},
     N("y", "det", "a"), engines=["torch", "reference"])
case("solve-vector", SQ, N("y", "solve", "a", "b"))
case("solve-matrix", SQ, N("y", "solve", "a", "m"))
# scatter (a tensor's elements or a number, repeated indices: the last write), scatter_add, index_add.
SC = {"x": normal(3, 5, seed=63), "i": given([[0, 2], [1, 1], [4, 3]], dtype="int64"), "s": normal(3, 2, seed=64)}
case("scatter-src", {**SC, "i": given([[0, 2], [1, 3], [4, 3]], dtype="int64")}, N("y", "scatter", "x", "i", "s", dim=1),
     N("z", "mul", "y", "y"))
case("scatter-src-repeated", SC, N("y", "scatter", "x", "i", "s", dim=1), N("z", "mul", "y", "y"),
     engines=["torch", "reference"])  # torch's gradient reaches the overwritten element too (a gather of the output's)
case("scatter-value", SC, N("y", "scatter", "x", "i", 0.5, dim=1), N("z", "mul", "y", "y"))
case("scatter-dim0", {"x": normal(3, 2, seed=65), "i": given([[2, 0]], dtype="int64"), "s": normal(1, 2, seed=66)},
     N("y", "scatter", "x", "i", "s", dim=0), N("z", "mul", "y", "y"))
case("scatter_add", SC, N("y", "scatter_add", "x", "i", "s", dim=1), N("z", "mul", "y", "y"))
case("index_add", {"x": normal(4, 3, seed=67), "i": given([0, 2, 0], dtype="int64"), "s": normal(3, 3, seed=68)},
     N("y", "index_add", "x", "i", "s", dim=0, alpha=0.5), N("z", "mul", "y", "y"))
# remainder / fmod (away from the jumps), atan2, hypot, copysign, lerp, addcmul, addcdiv, add/sub with alpha,
# floor_divide of int64.
AB2 = {"a": given([[2.3, -1.7, 0.4], [-2.6, 3.1, 1.2]]), "b": given([[0.9, 0.8, -0.7], [1.1, -1.3, 0.5]])}
for op in ("remainder", "fmod"):
    case(f"{op}", AB2, N("y", op, "a", "b"), N("z", "mul", "y", "y"))
    case(f"{op}-number", AB2, N("y", op, "a", 0.7), N("z", "mul", "y", "y"))
for op in ("atan2", "hypot", "copysign", "logaddexp"):
    case(f"{op}", {"a": away(2, 3, seed=69), "b": normal(3, seed=70)}, N("y", op, "a", "b"), N("z", "mul", "y", "a"))
case("atan2-origin", {"a": given([0.0, 1.0, 0.0, -2.0]), "b": given([0.0, 0.0, 2.0, 0.0])},  # torch: grad 0 at (0, 0)
     N("y", "atan2", "a", "b"), N("z", "mul", "y", 3.0), engines=["torch", "reference"])
case("lerp-number", {"a": normal(2, 3, seed=71), "b": normal(3, seed=72)}, N("y", "lerp", "a", "b", 0.3), N("z", "mul", "y", "y"))
case("lerp-tensor", {"a": normal(2, 3, seed=71), "b": normal(3, seed=72), "w": uniform(2, 1, low=0.0, high=1.0, seed=73)},
     N("y", "lerp", "a", "b", "w"), N("z", "mul", "y", "y"))
for op in ("addcmul", "addcdiv"):
    case(f"{op}", {"a": normal(2, 3, seed=74), "p": normal(3, seed=75), "q": uniform(2, 3, low=0.5, high=2.0, seed=76)},
         N("y", op, "a", "p", "q", value=0.5), N("z", "mul", "y", "y"))
case("add-alpha", {"a": normal(2, 3, seed=77), "b": normal(3, seed=78)}, N("y", "add", "a", "b", alpha=-0.5))
case("sub-alpha", {"a": normal(2, 3, seed=77), "b": normal(3, seed=78)}, N("y", "sub", "a", "b", alpha=3))
case("remainder-int64", {"t": given([[7, -7, 3], [10, 4, -1]], dtype="int64"), "x": normal(2, 3, seed=79)},
     N("q", "remainder", "t", 3), N("y", "mul", "x", "q"))  # `idx % 3`: int64, exactly
case("floor_divide-int64", {"t": given([[7, -7, 3], [10, 4, -1]], dtype="int64"), "x": normal(2, 3, seed=79)},
     N("q", "floor_divide", "t", 3), N("y", "mul", "x", "q"))
# searchsorted / bucketize: int64 bin indices (NeRF's sample_pdf); values exactly on a boundary show left and right,
# a NaN goes past the end, as in torch. The indices pick values with a gather, which carries the gradient.
CDF = given([[0.0, 0.1, 0.5, 0.5, 1.0], [0.0, 0.3, 0.6, 0.9, 1.0]])
U = given([[0.05, 0.5, 0.99, 1.0], [0.3, 0.0, 0.75, float("nan")]])
for args in ({}, {"right": True}, {"side": "right"}, {"side": "left"}):
    case(f"searchsorted-rows-{args}", {"c": CDF, "u": U, "x": normal(2, 5, seed=81)}, N("i", "searchsorted", "c", "u", **args),
         N("j", "clamp", "i", max=4), N("y", "gather", "x", "j", dim=1), engines=["torch", "reference"])
case("searchsorted-1d-boundaries", {"b": given([-1.0, 0.0, 0.5, 2.0]), "v": normal(3, 4, seed=82), "x": normal(3, 4, seed=83)},
     N("i", "searchsorted", "b", "v"), N("y", "mul", "x", "i"), engines=["torch", "reference"])
case("searchsorted-int64", {"b": given([1, 3, 3, 8], dtype="int64"), "v": given([0, 3, 5, 9], dtype="int64"),
                            "x": normal(4, seed=84)},
     N("i", "searchsorted", "b", "v", right=True), N("y", "mul", "x", "i"), engines=["torch", "reference"])
for args in ({}, {"right": True}):
    case(f"bucketize-{args}", {"v": given([[-2.0, 0.0, 0.25], [0.5, 1.0, 3.0]]), "b": given([0.0, 0.5, 1.0]),
                               "x": normal(2, 3, seed=85)},
         N("i", "bucketize", "v", "b", **args), N("y", "mul", "x", "i"), engines=["torch", "reference"])
# A NaN input, where users look for where their NaN came from: the reference takes torch's NaN rules (relu and
# hardtanh pass the gradient at NaN; abs and sign use sgn, 0 at NaN; a NaN max sends its gradient to the NaNs;
# prod and cumprod divide the result by the input when no element is 0; the inf-norm's mask holds the NaNs).
NANX = {"x": given([[float("nan"), -1.0, 0.5], [2.0, -3.0, 0.25]])}
for label, node in (("relu", N("y", "relu", "x")), ("abs", N("y", "abs", "x")), ("sign", N("y", "sign", "x")), ("max", N("y", "max", "x")),
                    ("min", N("y", "min", "x")), ("prod", N("y", "prod", "x")), ("prod-dim", N("y", "prod", "x", dim=1)),
                    ("cumprod", N("y", "cumprod", "x", dim=1)), ("norm-inf", N("y", "norm", "x", p=float("inf"), dim=1)),
                    ("norm-1", N("y", "norm", "x", p=1, dim=1))):
    case(f"nan-input-{label}", NANX, node, N("z", "mul", "y", "x" if node["op"] not in ("prod", "norm") else "y"),
         engines=["torch", "reference"])
case("nan_to_num", {"x": given([[float("nan"), float("inf"), 0.5], [-float("inf"), -3.0, 0.25]])},
     N("y", "nan_to_num", "x", nan=0.5, posinf=2.0), N("z", "mul", "y", "y"), engines=["torch", "reference"])
case("nan_to_num-finite", {"x": normal(2, 3, seed=87)}, N("y", "nan_to_num", "x"), N("z", "mul", "y", "x"))
# clamp with tensor bounds (torch's clamp.Tensor), broadcast; a row where max < min takes max, as torch
CB = {"x": distinct(4, 3, seed=88), "lo": given([-0.5, 0.1, -1.2]), "hi": given([[0.5], [1.0], [0.2], [-1.0]])}
for label, nodes in (("both", [N("y", "clamp_tensors", "x", "lo", "hi", bounds="both")]),
                     ("min", [N("y", "clamp_tensors", "x", "lo", bounds="min")]),
                     ("max", [N("y", "clamp_tensors", "x", "hi", bounds="max", fn="clamp_max")]),
                     ("min-fn", [N("y", "clamp_tensors", "x", "lo", bounds="min", fn="clamp_min")])):
    case(f"clamp_tensors-{label}", CB, *nodes, N("z", "mul", "y", "y"))
case("sinc", {"x": given([[0.0, 0.25, -1.5], [2.0, -0.7, 3.3]])}, N("y", "sinc", "x"), N("z", "mul", "y", "y"))
# maximum / minimum of int64 tensors (bin indices clamped into range), and of int64 with float (float, as torch)
INTS = {"i": given([[0, 3, 5], [2, 1, 4]], dtype="int64"), "k": given([[1, 3, 2], [2, 5, 0]], dtype="int64"),
        "x": normal(2, 3, seed=86)}
for op in ("maximum", "minimum"):
    case(f"{op}-int64", INTS, N("m", op, "i", "k"), N("y", "mul", "x", "m"), engines=["torch", "reference"])
    case(f"{op}-int64-float", INTS, N("m", op, "i", "x"), N("y", "mul", "m", "m"))
case("conv2d-same", {"x": normal(1, 2, 5, 6, seed=43), "w": normal(3, 2, 3, 5, seed=44)}, N("y", "conv2d", "x", "w", padding="same"))

# Pooling.
POOL: list[tuple[str, tuple[int, ...], dict[str, Any]]] = [
    ("k2", (2, 2, 4, 6), {"kernel_size": 2}),
    ("k3", (1, 2, 7, 7), {"kernel_size": 3}),
    ("k3-s1", (1, 2, 5, 5), {"kernel_size": 3, "stride": 1}),
    ("k2-s1-overlap", (1, 1, 4, 5), {"kernel_size": 2, "stride": 1}),
    ("k2x3", (1, 2, 6, 7), {"kernel_size": [2, 3]}),
    ("k3-s2-p1", (1, 2, 6, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("k3x2-s-pair-p", (2, 1, 7, 6), {"kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 0]}),
    ("k2-p1", (1, 2, 5, 5), {"kernel_size": 2, "padding": 1}),
    ("k4-s3", (1, 1, 9, 10), {"kernel_size": 4, "stride": 3, "padding": 2}),
    ("unbatched", (2, 5, 6), {"kernel_size": 2, "stride": 1}),
    ("unbatched-p", (3, 5, 5), {"kernel_size": 3, "stride": 2, "padding": 1}),
]
for op in ("max_pool2d", "avg_pool2d"):
    for label, xs, args in POOL:
        case(f"{op}-{label}", {"x": distinct(*xs, seed=37)}, N("y", op, "x", **args))
# ceil_mode: a last, partial window where it starts inside the input (7 -> 3 with kernel 3 stride 2; 8 -> 4, padded)
for label, xs, args in (("ceil", (2, 3, 8, 7), {"kernel_size": 3, "stride": 2}),
                        ("ceil-padded", (1, 2, 7, 8), {"kernel_size": 2, "stride": 2, "padding": 1}),
                        ("ceil-unbatched", (2, 5, 6), {"kernel_size": [3, 2], "stride": [2, 3]})):
    case(f"max_pool2d-{label}", {"x": distinct(*xs, seed=36)}, N("y", "max_pool2d", "x", ceil_mode=True, **args))
    for include in (True, False):  # average pooling divides a last window by what it covers up to the padding's end
        case(f"avg_pool2d-{label}-{'pad' if include else 'nopad'}", {"x": distinct(*xs, seed=36)},
             N("y", "avg_pool2d", "x", ceil_mode=True, count_include_pad=include, **args))
case("avg_pool2d-count_include_pad-false", {"x": distinct(1, 2, 5, 6, seed=35)},
     N("y", "avg_pool2d", "x", kernel_size=3, stride=1, padding=1, count_include_pad=False))

# Losses.
LOGITS = {"x": normal(4, 5, seed=38, std=2.0), "t": given([1, 0, 4, 1], dtype="int64")}
for red in ("mean", "sum", "none"):
    case(f"cross_entropy-{red}", LOGITS, N("L", "cross_entropy", "x", "t", reduction=red))
    case(f"cross_entropy-1d-{red}", {"x": normal(5, seed=39), "t": given(3, dtype="int64")},
         N("L", "cross_entropy", "x", "t", reduction=red))
    case(f"mse_loss-{red}", {"x": normal(3, 4, seed=40), "y": normal(3, 4, seed=41)}, N("L", "mse_loss", "x", "y", reduction=red))
case("cross_entropy-default", LOGITS, N("L", "cross_entropy", "x", "t"))
# (N, C, d1, ...) with (N, d1, ...) targets: segmentation's per-pixel classes (torch's NllLoss2d), 255 ignored.
SEG = {"x": normal(2, 3, 2, 3, seed=42, std=2.0), "t": given([[[0, 2, 1], [1, 255, 0]], [[2, 2, 0], [1, 0, 255]]], dtype="int64")}
for red in ("mean", "sum", "none"):
    case(f"cross_entropy-seg-{red}", SEG, N("L", "cross_entropy", "x", "t", reduction=red, ignore_index=255))
    case(f"nll_loss-seg-{red}", SEG, N("p", "log_softmax", "x", dim=1), N("L", "nll_loss", "p", "t", reduction=red, ignore_index=255))
case("cross_entropy-seq-smoothing", {"x": normal(2, 4, 3, seed=43), "t": given([[0, 3, 1], [2, 2, 0]], dtype="int64")},
     N("L", "cross_entropy", "x", "t", label_smoothing=0.1))
# class weights (nn.CrossEntropyLoss(weight=...)): the mean divides by the kept targets' weights; with smoothing too
CW = {"w": given([0.5, 2.0, 1.0], requires_grad=False)}
for red in ("mean", "sum", "none"):
    case(f"cross_entropy-seg-weight-smoothing-{red}", {**SEG, **CW},
         N("L", "cross_entropy", "x", "t", "w", reduction=red, ignore_index=255, label_smoothing=0.2))
    case(f"nll_loss-weight-{red}", {**SEG, **CW}, N("p", "log_softmax", "x", dim=1),
         N("L", "nll_loss", "p", "t", "w", reduction=red, ignore_index=255))
case("cross_entropy-1d-weight", {"x": normal(5, seed=39), "t": given(3, dtype="int64"),
                                 "w": given([1.0, 2.0, 3.0, 0.5, 1.5], requires_grad=False)},
     N("L", "cross_entropy", "x", "t", "w"))
case("mse_loss-fixed-target", {"x": normal(3, 4, seed=40), "y": {**normal(3, 4, seed=41), "requires_grad": False}},
     N("L", "mse_loss", "x", "y"))
case("mse_loss-0d", {"x": normal(seed=40), "y": normal(seed=41)}, N("L", "mse_loss", "x", "y"))
# smooth_l1 / huber on both sides of beta / delta (std 1.5: many elements past it), target requiring grad too.
for red in ("mean", "sum", "none"):
    case(f"smooth_l1_loss-{red}", {"x": normal(3, 4, seed=44, std=1.5), "y": normal(3, 4, seed=45)},
         N("L", "smooth_l1_loss", "x", "y", reduction=red, beta=0.7))
    case(f"huber_loss-{red}", {"x": normal(3, 4, seed=44, std=1.5), "y": normal(3, 4, seed=45)},
         N("L", "huber_loss", "x", "y", reduction=red, delta=0.6))
case("smooth_l1_loss-beta-0", {"x": normal(3, 4, seed=46), "y": normal(3, 4, seed=47)}, N("L", "smooth_l1_loss", "x", "y", beta=0.0))
case("smooth_l1_loss-broadcast", {"x": normal(3, 4, seed=46), "y": normal(4, seed=47)}, N("L", "smooth_l1_loss", "x", "y"))
# xlogy: x * log(y), 0 where x is 0 (kl_div's target term).
case("xlogy", {"x": uniform(3, 4, low=0.1, high=2.0, seed=48), "y": uniform(3, 4, low=0.2, high=3.0, seed=49)}, N("z", "xlogy", "x", "y"))
case("xlogy-y-zero", {"x": given([0.0, 0.5, 1.5]), "y": given([0.0, 0.0, 2.0])}, N("z", "xlogy", "x", "y"), N("w", "mul", "z", "z"),
     engines=["torch", "reference"])  # x * log(0): -inf, its gradient 0 in x (torch's), NaN in y
case("xlogy-zeros", {"x": given([0.0, 0.5, 0.0, 2.0]), "y": uniform(4, low=0.5, high=2.0, seed=50)}, N("z", "xlogy", "x", "y"))

# Small graphs: shared inputs, fan-out and chains, so edges carry partial grads.
case("diamond", {"x": normal(2, 3, seed=42)}, N("y", "mul", "x", "x"), N("z", "add", "y", "x"), N("w", "sin", "x"),
     N("L", "mul", "z", "w"))
case("mlp", {"x": normal(4, 3, seed=43), "w1": normal(5, 3, seed=44), "b1": normal(5, seed=45), "w2": normal(2, 5, seed=46),
             "t": given([0, 1, 1, 0], dtype="int64")},
     N("h", "linear", "x", "w1", "b1"), N("a", "gelu", "h"), N("o", "linear", "a", "w2"), N("L", "cross_entropy", "o", "t"))
case("cnn", {"x": normal(2, 1, 6, 6, seed=47), "k": normal(2, 1, 3, 3, seed=48)},
     N("c", "conv2d", "x", "k", padding=1), N("r", "relu", "c"), N("p", "max_pool2d", "r", kernel_size=2),
     N("f", "flatten", "p", start_dim=1), N("m", "mean", "f", dim=1, keepdim=True),
     N("L", "sum", "m"))
case("softmax-attention", {"q": normal(2, 3, 4, seed=50), "k": normal(2, 3, 4, seed=51), "v": normal(2, 3, 4, seed=52)},
     N("kt", "transpose", "k", dim0=-1, dim1=-2), N("s", "matmul", "q", "kt"), N("sc", "div", "s", 2.0),
     N("a", "softmax", "sc", dim=-1), N("o", "matmul", "a", "v"))
# a bool tensor compared with numbers as torch promotes it (`mask == 0` of the translation tutorial; 0.5 matches nothing)
case("eq-bool-number", {"x": normal(2, 5, seed=55)}, N("p", "gt", "x", 0.0), N("c", "eq", "p", 0), N("h", "ne", "p", 0.5),
     N("y", "where", "c", "x", 0.0), N("z", "where", "h", "y", 1.0), N("L", "sum", "z"))
case("safe_softmax", {"x": normal(2, 3, 4, seed=53)}, N("y", "safe_softmax", "x", dim=-1), N("z", "mul", "y", "y"))
# a row masked whole (-inf everywhere: its output and gradient 0, where softmax gives NaN), one masked in part
case("safe_softmax-masked-row", {"x": normal(3, 4, seed=54), "m": given([[0.0, 0.0, 0.0, 0.0], [-math.inf] * 4,
                                                                          [0.0, -math.inf, 0.0, -math.inf]])},
     N("s", "add", "x", "m"), N("y", "safe_softmax", "s", dim=1), N("z", "mul", "y", "y"), engines=["torch", "reference"])

# At kinks and ties only the two analytic engines can be compared: the reference must pick torch's subgradient.
EXACT_ONLY = {"engines": ["torch", "reference"]}
KINK = [[-1.0, 0.0, 2.0], [0.0, -0.0, 3.0]]
for op, args in (("relu", {}), ("abs", {}), ("leaky_relu", {"negative_slope": 0.1}), ("sqrt", {}), ("pow", {})):
    inputs = ("x", 2) if op == "pow" else ("x",)
    case(f"{op}-at-0", {"x": given(KINK if op != "sqrt" else [[0.0, 1.0], [4.0, 0.0]])}, N("y", op, *inputs, **args), **EXACT_ONLY)
case("pow-0-base-tensor-exp", {"x": given([0.0, 0.0, 2.0]), "e": given([0.0, 2.0, 1.5])}, N("y", "pow", "x", "e"), **EXACT_ONLY)
TIES = [[[1.0, 3.0, 3.0, 0.0], [3.0, -2.0, 3.0, 1.0]], [[0.5, 0.5, 0.5, 0.5], [-1.0, 2.0, 2.0, -1.0]]]
for op in ("max", "min"):
    case(f"{op}-ties", {"x": given(TIES)}, N("y", op, "x"), **EXACT_ONLY)
    for dim in (0, 1, 2):
        case(f"{op}-ties-dim{dim}", {"x": given(TIES)}, N("y", op, "x", dim=dim), **EXACT_ONLY)
case("max_pool2d-ties", {"x": given([[[[1.0, 1.0, 0.0, 2.0], [1.0, 0.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0]]]])},
     N("y", "max_pool2d", "x", kernel_size=2, stride=1, padding=1), **EXACT_ONLY)

# Casts, detach and dropout (the mask drawn from torch's generator, given to every engine as data).
case("to-float64", {"x": normal(2, 3, seed=55)}, N("d", "to", "x", dtype="float64"), N("y", "mul", "d", "d"), N("w", "sin", "y"))
case("to-float32", {"x": normal(2, 3, seed=55)}, N("d", "to", "x", dtype="float32"), N("w", "sin", "d"))
# Finite differences see through detach (the function does depend on x there): only the analytic engines agree.
case("detach", {"x": normal(2, 3, seed=56)}, N("d", "detach", "x"), N("y", "mul", "x", "d"), engines=["torch", "reference"])
case("dropout", {"x": normal(4, 5, seed=57)}, N("y", "dropout", "x", p=0.4), N("z", "tanh", "y"))
case("dropout-given-mask", {"x": normal(2, 3, seed=58), "m": given([[2.0, 0.0, 2.0], [0.0, 0.0, 2.0]], requires_grad=False)},
     N("y", "dropout", "x", "m", p=0.5))

# Leaves the output never reaches: no grad from any engine (torch leaves .grad None).
case("unused-input", {"x": normal(2, 3, seed=53), "u": normal(4, seed=54)}, N("y", "exp", "x"))
case("dead-branch", {"x": normal(2, 3, seed=53), "u": normal(3, seed=54)}, N("d", "mul", "x", "u"), N("y", "tanh", "x"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("inputs", "nodes", "kw"), CASES)
def test_op(inputs: dict[str, Any], nodes: list[dict[str, Any]], kw: dict[str, Any], dtype: str) -> None:
    check(inputs, nodes, dtype, **kw)


def all_cases() -> list[Any]:
    """The cases of this file and of every tests/test_ops_*.py that defines CASES (op families added later)."""
    import importlib
    from pathlib import Path

    cases = list(CASES)
    for path in sorted(Path(__file__).parent.glob("test_ops_*.py")):
        cases += getattr(importlib.import_module(path.stem), "CASES", [])
    return cases


def test_every_registered_op_has_a_case() -> None:
    covered = {n["op"] for p in all_cases() for n in p.values[1]}
    missing = sorted(set(REGISTRY) - covered)
    assert not missing, f"ops without a test case in tests/test_ops.py: {missing}"
    assert not covered - set(REGISTRY), f"cases use unknown ops: {sorted(covered - set(REGISTRY))}"


# ---- direct checks of numbers the engines must produce -----------------------------------------


def test_known_values_and_grads() -> None:
    """A hand-computed example: y = a * b, L = sum(y); dL/da = b broadcast, dL/db = column sums of a."""
    a = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    t = trace(TraceSpec(inputs={"a": given(a), "b": given([0.5, -1.0, 2.0])},
                        nodes=[N("y", "mul", "a", "b"), N("L", "sum", "y")], engines=ENGINES, dtype="float64"))
    assert t.result.comparison.verdict == "agree"
    for eng in ("torch", "reference"):
        np.testing.assert_allclose(t.arrays[f"{eng}/value/L"], 0.5 * 5 - 7 + 2 * 9)
        np.testing.assert_allclose(t.arrays[f"{eng}/grad/a"], [[0.5, -1.0, 2.0]] * 2)
        np.testing.assert_allclose(t.arrays[f"{eng}/grad/b"], [5.0, 7.0, 9.0])
    np.testing.assert_allclose(t.arrays["numeric/grad/b"], [5.0, 7.0, 9.0], rtol=1e-7)


def test_numeric_samples_large_leaves() -> None:
    """Leaves over max_elements_per_leaf are sampled: NaN elsewhere, and still 'agree'."""
    t = check({"x": normal(10, 10, seed=1)}, [N("y", "tanh", "x")], "float64")
    ng = t.arrays["numeric/grad/x"]
    assert (~np.isnan(ng)).sum() == 32


def test_reference_disagreement_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above would notice a wrong reference backward (guards against a vacuous harness)."""
    op = REGISTRY["sin"]
    monkeypatch.setattr(type(op), "backward", lambda self, g, out, xs, a: [g * np.sin(xs[0])])
    spec = make_spec({"x": normal(2, 3, seed=1)}, [N("y", "sin", "x")], "float64")
    res = trace(spec).result
    assert res.comparison.verdict == "disagree"
    failing = {p.engines: p.failures for p in res.comparison.pairs}
    assert "grad:x" in failing["torch~reference"] and "edge:x->y" in failing["torch~reference"]
    assert "grad:x" in failing["reference~numeric"] and not failing["torch~numeric"]


# ---- shape errors ------------------------------------------------------------------------------


def _spec_error(inputs: dict[str, Any], *nodes: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(inputs=inputs, nodes=list(nodes), engines=ENGINES, grad_output=1.0))
    return info.value


def test_shape_error_add() -> None:
    err = _spec_error({"a": normal(2, 3), "b": normal(4)}, N("c", "add", "a", "b"))
    assert err.node == "c" and "[2, 3]" in str(err) and "[4]" in str(err)
    assert err.loc == ("nodes", 0)


def test_shape_error_matmul() -> None:
    err = _spec_error({"a": normal(2, 3), "b": normal(4, 5)}, N("y", "add", "a", 1.0), N("m", "matmul", "y", "b"))
    assert err.node == "m" and "[2, 3]" in str(err) and "[4, 5]" in str(err)
    assert err.loc == ("nodes", 1)


def test_shape_error_conv_channels() -> None:
    err = _spec_error({"x": normal(1, 3, 5, 5), "w": normal(4, 2, 3, 3)}, N("c", "conv2d", "x", "w"))
    assert err.node == "c" and "[1, 3, 5, 5]" in str(err) and "[4, 2, 3, 3]" in str(err)
    assert "3 channels" in err.message


def test_shape_error_conv_groups() -> None:
    err = _spec_error({"x": normal(1, 4, 5, 5), "w": normal(3, 2, 3, 3)}, N("c", "conv2d", "x", "w", groups=2))
    assert err.node == "c" and "groups" in err.message


def test_shape_error_reshape() -> None:
    err = _spec_error({"x": normal(2, 3)}, N("r", "reshape", "x", shape=[4, -1]))
    assert err.node == "r" and "[4, -1]" in str(err) and "[2, 3]" in str(err)
    err = _spec_error({"x": normal(2, 3)}, N("r", "reshape", "x", shape=[-1, -1]))
    assert err.node == "r"


@pytest.mark.parametrize(
    ("inputs", "node", "words"),
    [
        ({"x": normal(2, 3)}, N("y", "sum", "x", dim=2), "out of range"),
        ({"x": normal(2, 3)}, N("y", "softmax", "x", dim=-3), "out of range"),
        ({"x": normal(2, 3)}, N("y", "max", "x", keepdim=True), "keepdim"),
        ({"x": normal(2, 3), "y": normal(3, 3)}, N("c", "cat", "x", "y", dim=1), "differ"),
        ({"x": normal(2, 3)}, N("p", "permute", "x", dims=[0, 0]), "permutation"),
        ({"x": normal(2, 3)}, N("p", "flip", "x", dims=[0, -2]), "more than once"),
        ({"x": normal(2, 3)}, N("p", "pad", "x", pad=[1, 1, 1]), "pairs"),
        ({"x": normal(3)}, N("p", "diagonal", "x"), "at least 2 dims"),
        ({"x": normal(2, 3)}, N("p", "diagonal", "x", dim1=1, dim2=-1), "cannot be the same"),
        ({"x": normal(2, 3)}, N("p", "pad", "x", pad=[-2, -2]), "crops more than"),
        ({"x": normal(2, 3)}, N("p", "pad", "x", pad=[-4, 2]), "crops more than"),
        ({"x": normal(3)}, N("p", "pad", "x", pad=[1, 1], mode="reflect"), "not supported for 1D input"),
        ({"x": normal(2, 3, 4, 5)}, N("p", "pad", "x", pad=[1, 1], mode="replicate"), "not supported for 4D input"),
        ({"x": normal(2, 3)}, N("p", "pad", "x", pad=[3, 1], mode="reflect"), "less than the corresponding input dimension"),
        ({"x": normal(2, 3)}, N("p", "pad", "x", pad=[4, 0], mode="circular"), "more than once"),
        ({"x": normal(2, 3)}, N("p", "pad", "x", pad=[1, 1], mode="reflect", value=0.5), "doesn't take in value"),
        ({"x": normal(2, 3)}, N("p", "pad", "x", pad=[-1, 1], mode="replicate"), "negative pads"),
        ({"x": normal(2, 3)}, N("p", "cumsum", "x", dim=2), "out of range"),
        ({"x": normal(2, 3), "y": normal(3)}, N("p", "outer", "x", "y"), "1-D vectors"),
        ({"x": normal(4, 2), "y": normal(4, 2)}, N("p", "cross", "x", "y"), "no dimension of size 3"),
        ({"x": normal(2, 3), "y": normal(3)}, N("p", "linalg_cross", "x", "y"), "same number of dimensions"),
        ({"x": normal(3, 4), "y": normal(3, 4)}, N("p", "linalg_cross", "x", "y"), "must have length 3"),
        ({"x": normal(1, 1, 3, 3)}, N("p", "max_pool2d", "x", kernel_size=2, padding=2), "half"),
        ({"x": normal(1, 1, 2, 2)}, N("p", "avg_pool2d", "x", kernel_size=3), "larger"),
        ({"x": normal(1, 1, 2, 2), "w": normal(1, 1, 3, 3)}, N("c", "conv2d", "x", "w"), "larger"),
        ({"x": normal(1, 3, 2, 2), "w": normal(2, 1, 3, 3)}, N("c", "conv_transpose2d", "x", "w"), "expects 2"),
        ({"x": normal(1, 2, 2, 2), "w": normal(2, 1, 3, 3)}, N("c", "conv_transpose2d", "x", "w", stride=2, output_padding=2),
         "smaller than stride"),
        ({"x": normal(1, 2, 1, 1), "w": normal(2, 1, 2, 2)}, N("c", "conv_transpose2d", "x", "w", padding=1), "leaves no output"),
        ({"x": normal(1, 2, 5), "w": normal(2, 2, 2)}, N("c", "conv1d", "x", "w", padding="same"), "pads one side more"),
        ({"x": normal(1, 2, 5)}, N("c", "interpolate", "x", scale_factor=2, mode="bilinear"), "takes a 4-d input"),
        ({"x": normal(1, 2, 5)}, N("c", "interpolate", "x", scale_factor=2, align_corners=True), "align_corners option"),
        ({"x": normal(1, 2, 5)}, N("c", "interpolate", "x"), "either size or scale_factor"),
        ({"c": normal(2, 5), "u": normal(3, 4)}, N("i", "searchsorted", "c", "u"), "first N-1 dimensions"),
        ({"c": normal(5), "u": normal(3)}, N("i", "searchsorted", "c", "u", side="left", right=True), "opposites"),
        ({"c": normal(5), "u": normal(3)}, N("i", "searchsorted", "c", "u", out_int32=True), "out_int32"),
        ({"u": normal(3), "b": normal(2, 2)}, N("i", "bucketize", "u", "b"), "must be 1 dimension"),
        ({"x": normal(3), "lo": normal(3), "hi": normal(2, 3)}, N("c", "clamp_tensors", "x", "lo", "hi", bounds="both"),
         "torch's backward"),
        ({"x": normal(3), "lo": normal(3)}, N("c", "clamp_tensors", "x", "lo", bounds="min", fn="clamp_max"), "takes bounds 'max'"),
        ({"x": normal(2, 3)}, N("c", "topk", "x", k=4), "out of range"),
        ({"x": normal(2, 3), "i": given([[3]], dtype="int64")}, N("c", "scatter", "x", "i", 1.0, dim=1), "out of range"),
        ({"x": normal(2, 3), "i": given([0, 1], dtype="int64")}, N("c", "scatter", "x", "i", 1.0, dim=1), "as many dims"),
        ({"x": normal(2, 3), "i": given([[0], [1]], dtype="int64"), "s": normal(2, 2)}, N("c", "scatter", "x", "i", "s", dim=1),
         "differ in shape"),
        ({"x": normal(2, 3), "w": normal(4, 2)}, N("c", "einsum", "x", "w", equation="ij,jk->ik"), "has size 4 against 3"),
        ({"x": normal(2, 3)}, N("c", "atan2", "x", 1.0), "must be a tensor"),
        ({"x": normal(2, 3)}, N("c", "einsum", "x", equation="ij,jk->ik"), "2 operand(s), 1 tensor(s)"),
        ({"x": normal(2, 3)}, N("c", "einsum", "x", equation="ijk->i"), "3 letters"),
        ({"x": normal(2, 3)}, N("c", "topk", "x", k=2, sorted=False), "sorted"),
        ({"x": normal(1, 6, 2, 2)}, N("c", "pixel_shuffle", "x", upscale_factor=2), "divisible by the square"),
        ({"x": normal(1, 2, 5), "w": normal(2, 2, 3)}, N("c", "conv1d", "x", "w", padding="same", stride=2), "strided"),
        ({"x": normal(1, 2, 5), "w": normal(2, 3, 3)}, N("c", "conv1d", "x", "w"), "conv1d: input has 2 channels"),
        ({"x": normal(2, 5), "w": normal(2, 2, 3, 3)}, N("c", "conv1d", "x", "w"), "3-d weight"),
        ({"x": normal(3, 4), "w": normal(5, 3)}, N("y", "linear", "x", "w"), "in_features"),
        ({"x": normal(3, 4), "t": given([0, 1], dtype="int64")}, N("y", "cross_entropy", "x", "t"), "target"),
        ({"x": normal(3, 4), "t": normal(3)}, N("y", "cross_entropy", "x", "t"), "int64"),
        ({"x": normal(3, 4), "t": normal(4, 3)}, N("y", "mse_loss", "x", "t"), "do not broadcast"),  # torch broadcasts shapes that do (a note says so)
    ],
    ids=lambda v: v["name"] + ":" + v["op"] if isinstance(v, dict) and "op" in v else None,
)
def test_shape_errors_name_the_node(inputs: dict[str, Any], node: dict[str, Any], words: str) -> None:
    err = _spec_error(inputs, node)
    assert err.node == node["name"]
    assert words in err.message, err.message


@pytest.mark.parametrize(
    "nodes",
    [[N("y", "linear", "x", "w", 0.5)], [N("c", "exp", 2.0), N("y", "mul", "x", "c")], [N("y", "mse_loss", "s", 1.0)]],
    ids=["linear-bias", "exp", "mse_loss"],
)
def test_number_where_torch_needs_a_tensor(nodes: list[dict[str, Any]]) -> None:
    err = _spec_error({"x": normal(3, 4), "w": normal(5, 4), "s": normal()}, *nodes)
    assert err.node == nodes[0]["name"]
    assert "must be a tensor" in err.message


@pytest.mark.parametrize("stride", [(1, 1), (2, 3), (4, 4)])
def test_conv2d_grads_every_stride_phase_against_torch(stride: tuple[int, int]) -> None:
    # col2im adds window gradients back at strided offsets: kernel taps landing on no, one or several input
    # positions, padding wider than the kernel's reach, dilation sharing a factor with the stride, groups, bias
    import itertools

    import torch

    from services.errors import ShapeError
    from services.ops.conv import Conv2d, Conv2dArgs

    op, rng, checked = Conv2d(), np.random.default_rng(0), 0
    for (kh, kw), pad, dil, groups in itertools.product(
        [(1, 1), (3, 2), (4, 1)], [(0, 0), (1, 2), (3, 4)], [(1, 1), (2, 1), (3, 2)], [1, 2]
    ):
        args = Conv2dArgs(stride=stride, padding=pad, dilation=dil, groups=groups)
        xs = [rng.standard_normal((2, 4, 9, 11)), rng.standard_normal((6, 4 // groups, kh, kw)), rng.standard_normal(6)]
        try:
            op.shape([x.shape for x in xs], args)
        except ShapeError:
            continue  # kernel reach over the padded input: rejected before any engine runs
        out = op.forward(xs, args)
        g = rng.standard_normal(out.shape)
        ts = [torch.tensor(x, requires_grad=True) for x in xs]
        t_out = torch.nn.functional.conv2d(*ts, stride=stride, padding=pad, dilation=dil, groups=groups)
        t_out.backward(torch.tensor(g))
        for mine, want in zip([out, *op.backward(g, out, xs, args)], [t_out, *(t.grad for t in ts)], strict=True):
            np.testing.assert_allclose(mine, want.detach().numpy(), rtol=1e-10, atol=1e-10)
        checked += 1
    assert checked >= 40


@pytest.mark.parametrize("needs", [(False, True, True), (True, False, False), (False, False, True)])
def test_conv2d_backward_skips_inputs_that_want_no_gradient(needs: tuple[bool, bool, bool]) -> None:
    # the reference engine passes torch's needs_input_grad: the skipped gradients are None, the others unchanged
    from services.ops.conv import Conv2d, Conv2dArgs

    op, rng = Conv2d(), np.random.default_rng(1)
    args = Conv2dArgs(stride=2, padding=1, groups=2)
    xs = [rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)]
    out, cols = op.forward_saving(xs, args)
    g = rng.standard_normal(out.shape)
    full = op.backward(g, out, xs, args)
    part = op.backward_saved(g, out, xs, args, cols, needs)
    for want, mine, need in zip(full, part, needs, strict=True):
        if need:
            np.testing.assert_array_equal(mine, want)
        elif mine is not None:  # the bias's gradient is one cheap sum: it may come anyway
            np.testing.assert_array_equal(mine, want)
    assert (part[0] is None) == (not needs[0]) and (part[1] is None) == (not needs[1])


@pytest.mark.parametrize("example", ["small_cnn.json", "resnet_block.json", "transformer_block.json", "rnn_unrolled.py"])
def test_numeric_recomputes_only_what_a_leaf_reaches_with_the_same_numbers(
    example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finite differences recompute only the nodes downstream of the perturbed leaf, from one unperturbed pass:
    every number equal, bit for bit, to whole passes (forced by CONE_WORK = 0), and fewer node evaluations."""
    from pathlib import Path

    from cli.specfile import load_spec
    from services.compiler import compile_spec
    from services.engines import numeric, reference
    from services.materialize import materialize

    graph = compile_spec(load_spec(Path(__file__).resolve().parent.parent / "examples" / example))
    materialize(graph)
    calls = {"nodes": 0}
    real = reference.forward

    def counting(g: Any, *args: Any, **kw: Any) -> Any:
        calls["nodes"] += len(kw.get("nodes") if kw.get("nodes") is not None else g.nodes)
        return real(g, *args, **kw)

    monkeypatch.setattr(numeric, "forward", counting)
    cones = numeric.run_numeric(graph, max_elements_per_leaf=6)
    few, calls["nodes"] = calls["nodes"], 0
    monkeypatch.setattr(numeric, "CONE_WORK", 0)
    whole = numeric.run_numeric(graph, max_elements_per_leaf=6)
    assert set(cones.grads) == set(whole.grads) and cones.grads
    for name, g in whole.grads.items():
        np.testing.assert_array_equal(cones.grads[name], g)  # NaN where not checked, in both
        np.testing.assert_array_equal(cones.checked[name], whole.checked[name])
    assert few < calls["nodes"]
