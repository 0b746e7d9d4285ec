"""Property tests: random small shapes, arguments and values for the ops whose shape logic is
easiest to get wrong (broadcasting, reductions, matmul promotion, conv and pool geometry). Each
example is traced by torch, the reference and finite differences, and checked like tests/test_ops.py.

GRADTRACE_PROPERTY_EXAMPLES raises the number of examples for a longer hunt."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_ops import N, away, check, distinct, normal, uniform

PROPS = settings(
    max_examples=int(os.environ.get("GRADTRACE_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
dtypes = st.sampled_from(["float32", "float64"])
seeds = st.integers(0, 2**16)
CONSTANTS = [-2.0, -0.5, 0.5, 1.5, 3.0]


@PROPS
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
    op=st.sampled_from(["add", "sub", "mul", "div", "pow"]),
    scalar=st.sampled_from([None, "left", "right"]),
    const=st.sampled_from(CONSTANTS),
    dtype=dtypes,
    seed=seeds,
)
def test_broadcasting_binary(shapes: Any, op: str, scalar: str | None, const: float, dtype: str, seed: int) -> None:
    sa, sb = shapes.input_shapes
    # Safe domains: pow's base positive, div's denominator away from 0.
    a = uniform(*sa, low=0.5, high=2.0, seed=seed) if op == "pow" else normal(*sa, seed=seed)
    b = away(*sb, seed=seed + 1, low=0.5) if op == "div" else normal(*sb, seed=seed + 1)
    inputs: dict[str, Any] = {"a": a, "b": b}
    args: list[str | float] = ["a", "b"]
    if scalar == "left":
        del inputs["a"]
        args[0] = abs(const) if op == "pow" else const
    elif scalar == "right":
        del inputs["b"]
        args[1] = const
    check(inputs, [N("y", op, *args), N("z", "tanh", "y")], dtype)


@st.composite
def reductions(draw: st.DrawFn) -> tuple[tuple[int, ...], dict[str, Any], str]:
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    op = draw(st.sampled_from(["sum", "mean", "max", "min", "softmax", "log_softmax"]))
    nd = len(shape)
    one_dim = st.integers(-max(nd, 1), max(nd, 1) - 1)
    if op in ("softmax", "log_softmax"):
        return shape, {"dim": draw(one_dim)}, op
    if op in ("max", "min"):
        dim = draw(st.none() | one_dim)
        return shape, {} if dim is None else {"dim": dim, "keepdim": draw(st.booleans())}, op
    axes = draw(st.permutations(range(nd)).flatmap(lambda p: st.integers(0, len(p)).map(lambda k: list(p[:k]))))
    negate = draw(st.lists(st.booleans(), min_size=len(axes), max_size=len(axes)))
    as_list = [d - nd if neg else d for d, neg in zip(axes, negate, strict=True)]
    dim = draw(st.sampled_from([None, as_list] + ([as_list[0]] if len(as_list) == 1 else [])))
    args: dict[str, Any] = {"keepdim": draw(st.booleans())}
    if dim is not None:
        args["dim"] = dim
    return shape, args, op


@PROPS
@given(r=reductions(), dtype=dtypes, seed=seeds)
def test_reductions(r: tuple[tuple[int, ...], dict[str, Any], str], dtype: str, seed: int) -> None:
    shape, args, op = r
    check({"x": distinct(*shape, seed=seed)}, [N("y", op, "x", **args)], dtype)  # distinct: no ties for max/min


@st.composite
def matmul_shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    a = (k,) if draw(st.booleans()) else batch.input_shapes[0] + (n, k)
    b = (k,) if draw(st.booleans()) else batch.input_shapes[1] + (k, m)
    return a, b


@PROPS
@given(shapes=matmul_shapes(), dtype=dtypes, seed=seeds)
def test_matmul(shapes: tuple[tuple[int, ...], tuple[int, ...]], dtype: str, seed: int) -> None:
    sa, sb = shapes
    check({"a": normal(*sa, seed=seed), "b": normal(*sb, seed=seed + 1)}, [N("y", "matmul", "a", "b")], dtype)


def _extent(k: int, d: int, p: int) -> int:
    """The smallest input length that gives one output: the dilated kernel minus both paddings."""
    return max(1, d * (k - 1) + 1 - 2 * p)


@PROPS
@given(
    groups=st.integers(1, 3), cin=st.integers(1, 2), cout=st.integers(1, 2),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    extra=st.tuples(st.integers(0, 3), st.integers(0, 3)), batch=st.sampled_from([None, 1, 2]), bias=st.booleans(),
    dtype=dtypes, seed=seeds,
)
def test_conv2d_geometry(groups: int, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int],
                         dilation: tuple[int, int], padding: tuple[int, int], extra: tuple[int, int],
                         batch: int | None, bias: bool, dtype: str, seed: int) -> None:
    h, w = (_extent(k, d, p) + e for k, d, p, e in zip(kernel, dilation, padding, extra, strict=True))
    x = (groups * cin, h, w) if batch is None else (batch, groups * cin, h, w)
    inputs = {"x": normal(*x, seed=seed), "w": normal(groups * cout, cin, *kernel, seed=seed + 1, std=0.5)}
    if bias:
        inputs["b"] = normal(groups * cout, seed=seed + 2)
    args = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": groups}
    check(inputs, [N("y", "conv2d", *inputs, **args)], dtype)


@PROPS
@given(
    op=st.sampled_from(["max_pool2d", "avg_pool2d"]), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)), pad=st.tuples(st.integers(0, 1), st.integers(0, 1)),
    extra=st.tuples(st.integers(0, 4), st.integers(0, 4)), batch=st.sampled_from([None, 1, 2]),
    channels=st.integers(1, 2), dtype=dtypes, seed=seeds, ceil=st.booleans(), include=st.booleans(),
)
def test_pool_geometry(op: str, kernel: tuple[int, int], stride: tuple[int, int] | None, pad: tuple[int, int],
                       extra: tuple[int, int], batch: int | None, channels: int, dtype: str, seed: int, ceil: bool,
                       include: bool) -> None:
    padding = [min(p, k // 2) for p, k in zip(pad, kernel, strict=True)]  # torch allows at most half the kernel
    h, w = (_extent(k, 1, p) + e for k, p, e in zip(kernel, padding, extra, strict=True))
    x = (channels, h, w) if batch is None else (batch, channels, h, w)
    args: dict[str, Any] = {"kernel_size": list(kernel), "padding": padding}
    if stride is not None:
        args["stride"] = list(stride)
    if ceil:
        args["ceil_mode"] = True  # (a last window past the padding: average pooling divides by less)
    if op == "avg_pool2d" and not include:
        args["count_include_pad"] = False
    check({"x": distinct(*x, seed=seed)}, [N("y", op, "x", **args)], dtype)


@PROPS
@given(n=st.sampled_from([1, 2, 4, 5, 16, 17, 40, 64, 65, 130, 300]), levels=st.integers(1, 5), seed=seeds,
       frac=st.floats(0, 1), largest=st.booleans(), nans=st.booleans())
def test_topk_picks_among_ties_as_torch(n: int, levels: int, seed: int, frac: float, largest: bool, nans: bool) -> None:
    """Rows of a few distinct values (and NaNs): the reference's topk indices are torch's CPU kernel's, for k on both
    sides of its partial-sort threshold (k * 64 <= n)."""
    import numpy as np
    import torch

    from services.ops.topk_order import topk_indices

    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, n).astype(np.float32)
    if nans:
        x[rng.random(n) < 0.2] = np.nan
    for k in {int(frac * n), max(1, n // 64), n}:
        want = torch.from_numpy(x).topk(k, largest=largest).indices.tolist()
        assert topk_indices(x.tolist(), k, largest) == want, (x.tolist(), k, largest)


@PROPS
@given(n=st.sampled_from([2, 16, 17, 40, 64, 130, 300]), levels=st.integers(1, 5), seed=seeds, descending=st.booleans(),
       nans=st.booleans())
def test_sort_orders_ties_as_torch(n: int, levels: int, seed: int, descending: bool, nans: bool) -> None:
    """Rows of a few distinct values (and NaNs): without stable=True, the sort op's indices are torch's CPU kernel's
    (std::sort: stable up to 16 elements, not past them), through the op as the engines run it, rows along dim 1."""
    import numpy as np
    import torch

    from services.ops.sorting import Sort, SortArgs

    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, (3, n)).astype(np.float32)
    if nans:
        x[rng.random((3, n)) < 0.2] = np.nan
    want = torch.from_numpy(x).sort(dim=1, descending=descending).indices.numpy()
    got = Sort().forward([x], SortArgs(dim=1, descending=descending, part="indices"))
    assert (got == want).all(), (x.tolist(), descending)


@PROPS
@given(n=st.sampled_from([1, 3, 8, 17, 64, 130]), rows=st.integers(1, 6), seed=seeds, frac=st.floats(0, 1),
       largest=st.booleans(), dim=st.sampled_from([0, 1, -1]))
def test_topk_op_rows_with_and_without_ties_as_torch(n: int, rows: int, seed: int, frac: float, largest: bool, dim: int) -> None:
    """Through the op as the engines run it: rows of distinct floats (a partition, then a sort of the k) beside rows
    with ties or NaNs (a stable sort, then torch's CPU pick), along either dim; values and indices are torch's."""
    import numpy as np
    import torch

    from services.ops.sorting import Topk, TopkArgs

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n)).astype(np.float32)
    for r in range(0, rows, 2):  # every other row tied: a few levels, a NaN or two
        x[r] = rng.integers(0, 3, n)
        if r % 4 == 2:
            x[r, rng.random(n) < 0.2] = np.nan
    x = np.ascontiguousarray(x.T) if dim == 0 else x
    size = x.shape[dim]
    for k in {int(frac * size), max(1, size // 4), size}:
        want = torch.from_numpy(x).topk(k, dim=dim, largest=largest)
        got = Topk().forward([x], TopkArgs(k=k, dim=dim, largest=largest, part="indices"))
        assert (got == want.indices.numpy()).all(), (x.tolist(), k, dim, largest)
        values = Topk().forward([x], TopkArgs(k=k, dim=dim, largest=largest))
        np.testing.assert_array_equal(values, want.values.numpy())


def test_topk_of_an_empty_tensor_is_empty_as_torchs() -> None:
    """A dim of size 0 (found by the accepted-specs fuzz): empty indices, as torch gives, not a reshape error."""
    import numpy as np
    import torch

    from services.ops.sorting import Topk, TopkArgs

    for shape, dim, k in (((3, 0), 0, 1), ((0, 3), -1, 2), ((2, 0, 4), 1, 0)):
        x = np.ones(shape, np.float32)
        want = torch.from_numpy(x).topk(k, dim=dim).indices.numpy()
        got = Topk().forward([x], TopkArgs(k=k, dim=dim, part="indices"))
        assert got.shape == want.shape, (shape, dim, k)


@PROPS
@given(n=st.integers(0, 12), bags=st.integers(1, 5), rows=st.integers(1, 6), mode=st.sampled_from(["sum", "mean", "max"]),
       two_d=st.booleans(), padding=st.sampled_from([None, 0, -1]), weighted=st.booleans(), last=st.booleans(),
       levels=st.integers(1, 3), seed=seeds, dtype=dtypes)
def test_embedding_bag_as_torch(n: int, bags: int, rows: int, mode: str, two_d: bool, padding: int | None, weighted: bool,
                                last: bool, levels: int, seed: int, dtype: str) -> None:
    """Random bags (empty ones, repeated and padding rows, a weight of few distinct values: ties for max): values,
    the weight's and the per-sample weights' grads of torch, the reference and finite differences agree."""
    import numpy as np

    rng = np.random.default_rng(seed)
    weight = {"value": (rng.integers(0, levels, (rows, 2)) + rng.normal(0, 1e-3, (rows, 2)) * (levels > 2)).tolist()}
    if two_d:
        idx = rng.integers(0, rows, (bags, n % 4 + 1))
        inputs: dict[str, Any] = {"i": {"value": idx.tolist(), "dtype": "int64"}, "w": weight}
        refs: list[Any] = ["i", "w"]
    else:
        idx = rng.integers(0, rows, n)
        cuts = np.sort(rng.integers(0, n + 1, bags - 1))
        offsets = [0, *cuts.tolist(), n] if last else [0, *cuts.tolist()]
        inputs = {"i": {"value": idx.tolist(), "dtype": "int64"}, "w": weight, "o": {"value": offsets, "dtype": "int64"}}
        refs = ["i", "w", "o"]
    if weighted and mode == "sum":
        inputs["p"] = {"value": rng.normal(0, 1, idx.shape).tolist()}
        refs += [0.0, "p"] if two_d else ["p"]
    args = {"mode": mode, "padding_idx": padding, "include_last_offset": last and not two_d}
    kw = {"engines": ["torch", "reference"]} if mode == "max" else {}  # (max's ties: finite differences see another slope)
    check(inputs, [N("y", "embedding_bag", *refs, **args)], dtype, **kw)
