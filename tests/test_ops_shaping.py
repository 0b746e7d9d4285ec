"""squeeze, unsqueeze, expand, stack, split and chunk: each proved against torch and finite differences
(tests/test_ops.py's harness), and their shape errors named at compile time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_ops import DTYPES, N, check, normal

from services.compiler import compile_spec
from services.errors import SpecError
from services.ops import REGISTRY
from shared.spec import TraceSpec

CASES: list[Any] = []


def case(id: str, inputs: dict[str, Any], *nodes: dict[str, Any], **kw: Any) -> None:
    CASES.append(pytest.param(inputs, list(nodes), kw, id=id))


X = {"x": normal(2, 1, 3, 1, seed=1)}
for args in ({}, {"dim": 1}, {"dim": -1}, {"dim": 0}, {"dim": [1, 3]}, {"dim": [-3, 0]}, {"dim": []}, {"dim": [2]}):
    case(f"squeeze-{args}", X, N("y", "squeeze", "x", **args))
case("squeeze-0d", {"x": normal(seed=2)}, N("y", "squeeze", "x", dim=0))
case("squeeze-all-ones", {"x": normal(1, 1, seed=2)}, N("y", "squeeze", "x"))
for dim in (0, 2, 4, -1, -5, -3):
    case(f"unsqueeze-{dim}", X, N("y", "unsqueeze", "x", dim=dim))
case("unsqueeze-0d", {"x": normal(seed=3)}, N("y", "unsqueeze", "x", dim=-1))

E = {"x": normal(3, 1, seed=4)}
for size in ([3, 4], [2, 3, 4], [-1, 4], [2, -1, 5], [3, 1], [-1, -1], [1, 2, 3, 1]):
    case(f"expand-{size}", E, N("y", "expand", "x", size=size))
case("expand-0d", {"x": normal(seed=5)}, N("y", "expand", "x", size=[2, 3]))
case("expand-0d-none", {"x": normal(seed=5)}, N("y", "expand", "x", size=[]))
case("expand-ones", {"x": normal(1, 1, seed=6)}, N("y", "expand", "x", size=[2, 3, 4]))

ST = {"a": normal(2, 3, seed=7), "b": normal(2, 3, seed=8), "c": normal(2, 3, seed=9)}
for dim in (0, 1, 2, -1, -3):
    case(f"stack-dim{dim}", ST, N("y", "stack", "a", "b", "c", dim=dim))
case("stack-default", ST, N("y", "stack", "a", "b"))
case("stack-same-input", ST, N("y", "stack", "a", "a", "b", dim=1))
case("stack-one", ST, N("y", "stack", "a"))
case("stack-0d", {"a": normal(seed=10), "b": normal(seed=11)}, N("y", "stack", "a", "b"))

SP = {"x": normal(5, 3, seed=12)}
for size, dim, index in ((2, 0, 0), (2, 0, 2), (2, 0, -1), (5, 0, 0), (7, 0, 0), (2, 1, 1), (2, -1, -2),
                         ([1, 4], 0, 1), ([1, 0, 4], 0, 2), ([2, 1], 1, 0), ([3], 1, -1)):
    case(f"split-{size}-dim{dim}-{index}", SP, N("y", "split", "x", split_size_or_sections=size, dim=dim, index=index))
case("split-default-dim", SP, N("y", "split", "x", split_size_or_sections=3, index=1))
for chunks, dim, index in ((2, 0, 0), (2, 0, 1), (3, 0, -1), (4, 0, 2), (6, 0, 4), (2, 1, 1), (3, -1, 2), (1, 0, 0)):
    case(f"chunk-{chunks}-dim{dim}-{index}", SP, N("y", "chunk", "x", chunks=chunks, dim=dim, index=index))
case("chunk-default-dim", SP, N("y", "chunk", "x", chunks=2, index=-1))
# All pieces of one input recombined: every element's gradient comes back through exactly one piece.
case("split-all-pieces", SP, N("p0", "split", "x", split_size_or_sections=[2, 3], index=0),
     N("p1", "split", "x", split_size_or_sections=[2, 3], index=1), N("q", "mul", "p1", 2.0),
     N("y", "cat", "q", "p0", dim=0))
case("chunk-stack", SP, N("c0", "chunk", "x", chunks=2, dim=1, index=0), N("c1", "chunk", "x", chunks=2, dim=1, index=1),
     N("c1e", "expand", "c1", size=[5, 2]), N("y", "stack", "c0", "c1e", dim=-1))
case("squeeze-unsqueeze-chain", {"x": normal(3, 4, seed=13)}, N("u", "unsqueeze", "x", dim=1),
     N("e", "expand", "u", size=[2, 3, 5, 4]), N("s", "squeeze", "e"), N("y", "sum", "s", dim=0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("inputs", "nodes", "kw"), CASES)
def test_op(inputs: dict[str, Any], nodes: list[dict[str, Any]], kw: dict[str, Any], dtype: str) -> None:
    check(inputs, nodes, dtype, **kw)


# ---- shape rules against torch -----------------------------------------------------------------


def _piece_sizes(op: str, n: int, arg: int | list[int]) -> list[int] | None:
    """Sizes of every piece the shape rule gives for a dim of size n, or None when it rejects."""
    from services.errors import ShapeError

    sizes = []
    key = "split_size_or_sections" if op == "split" else "chunks"
    for index in range(20):
        try:
            shape = REGISTRY[op].shape([(n, 2)], REGISTRY[op].Args(**{key: arg, "index": index}))
        except ShapeError as e:
            if "out of range" in str(e) and index:
                return sizes
            return None
        sizes.append(shape[0])
    raise AssertionError("more than 20 pieces")


@pytest.mark.parametrize("op", ["split", "chunk"])
def test_piece_sizes_match_torch(op: str) -> None:
    import torch

    for n in range(0, 8):
        for arg in [0, 1, 2, 3, 5, 9, -1, [], [n], [1, n - 1], [0, n, 0], [n + 1, -1]] if op == "split" else [-1, 0, 1, 2, 3, 4, 6, 9]:
            x = torch.zeros(n, 2)
            try:
                want = [p.shape[0] for p in (torch.split(x, arg) if op == "split" else torch.chunk(x, arg))]
            except RuntimeError:
                want = None
            got = _piece_sizes(op, n, arg)
            if want == []:  # split of an empty dim into no pieces: there is no piece to pick
                assert got is None
            else:
                assert got == want, f"{op}(n={n}, {arg}): {got} != torch's {want}"


@pytest.mark.parametrize("shape", [(), (1,), (2, 1, 3), (1, 1)])
def test_shape_rules_match_torch(shape: tuple[int, ...]) -> None:
    """squeeze/unsqueeze/expand over every dim and a few sizes: the rule accepts exactly what torch does."""
    import torch

    from services.errors import ShapeError

    x = torch.zeros(shape)
    nd = len(shape)
    trials: list[tuple[str, dict[str, Any], Any]] = []
    for d in range(-nd - 2, nd + 2):
        trials.append(("squeeze", {"dim": d}, lambda d=d: torch.squeeze(x, d)))
        trials.append(("squeeze", {"dim": [d, 0]}, lambda d=d: torch.squeeze(x, (d, 0))))
        trials.append(("unsqueeze", {"dim": d}, lambda d=d: torch.unsqueeze(x, d)))
    for size in ([], [3], [-1], [2, -1], [-1, 2], [1, 3], [2, 1, 3], [4, 2, 1, 3], [0, 1, 3], [-2, 3], [2, 2, 3], [2, 2, 0, 3]):
        trials.append(("expand", {"size": size}, lambda size=size: x.expand(size)))
    for op, args, fn in trials:
        try:
            want: Any = tuple(fn().shape)
        except (RuntimeError, IndexError):
            want = None
        try:
            got: Any = REGISTRY[op].shape([shape], REGISTRY[op].Args(**args))
        except ShapeError:
            got = None
        assert got == want, f"{op}({list(shape)}, {args}): rule {got}, torch {want}"


# ---- shape errors name the node ----------------------------------------------------------------


def _spec_error(inputs: dict[str, Any], *nodes: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(inputs=inputs, nodes=list(nodes), engines=["torch", "reference"], grad_output=1.0))
    return info.value


@pytest.mark.parametrize(
    ("inputs", "node", "words"),
    [
        ({"x": normal(2, 1)}, N("y", "squeeze", "x", dim=2), "out of range"),
        ({"x": normal(2, 1)}, N("y", "squeeze", "x", dim=[1, -1]), "multiple times"),
        ({"x": normal(2, 1)}, N("y", "squeeze", "x", dims=1), "dims"),
        ({"x": normal(2, 1)}, N("y", "unsqueeze", "x", dim=3), "out of range"),
        ({"x": normal(2, 1)}, N("y", "unsqueeze", "x"), "dim"),
        ({"x": normal(3, 1)}, N("y", "expand", "x", size=[4, 4]), "non-singleton"),
        ({"x": normal(3, 1)}, N("y", "expand", "x", size=[4]), "fewer"),
        ({"x": normal(3, 1)}, N("y", "expand", "x", size=[-1, 3, 1]), "leading"),
        ({"x": normal(3, 1)}, N("y", "expand", "x", size=[3, -2]), "negative"),
        ({"a": normal(2, 3), "b": normal(3, 2)}, N("y", "stack", "a", "b"), "equal size"),
        ({"a": normal(2, 3), "b": normal(2, 3)}, N("y", "stack", "a", "b", dim=3), "out of range"),
        ({"x": normal(5, 3)}, N("y", "split", "x", split_size_or_sections=2, index=3), "3 pieces"),
        ({"x": normal(5, 3)}, N("y", "split", "x", split_size_or_sections=2, index=-4), "out of range"),
        ({"x": normal(5, 3)}, N("y", "split", "x", split_size_or_sections=[1, 3], index=0), "sum exactly to 5"),
        ({"x": normal(5, 3)}, N("y", "split", "x", split_size_or_sections=[6, -1], index=0), "non-negative"),
        ({"x": normal(5, 3)}, N("y", "split", "x", split_size_or_sections=0, index=0), "only be 0"),
        ({"x": normal(5, 3)}, N("y", "split", "x", split_size_or_sections=2), "index"),
        ({"x": normal(5, 3)}, N("y", "split", "x", split_size_or_sections=2, dim=2, index=0), "out of range"),
        ({"x": normal()}, N("y", "split", "x", split_size_or_sections=1, index=0), "1-dimensional"),
        ({"x": normal(5, 3)}, N("y", "chunk", "x", chunks=0, index=0), "greater than 0"),
        ({"x": normal(5, 3)}, N("y", "chunk", "x", chunks=4, index=3), "3 pieces"),
        ({"x": normal()}, N("y", "chunk", "x", chunks=1, index=0), "1-dimensional"),
    ],
    ids=lambda v: v["name"] + ":" + v["op"] if isinstance(v, dict) and "op" in v else None,
)
def test_shape_errors_name_the_node(inputs: dict[str, Any], node: dict[str, Any], words: str) -> None:
    err = _spec_error(inputs, node)
    assert err.node == node["name"]
    assert words in err.message, err.message


def test_split_pieces_cover_the_input() -> None:
    """Reference forward of every piece, concatenated, gives the input back."""
    x = np.arange(15.0).reshape(5, 3)
    op = REGISTRY["split"]
    pieces = [op.forward([x], op.Args(split_size_or_sections=2, index=i)) for i in range(3)]
    np.testing.assert_array_equal(np.concatenate(pieces), x)
