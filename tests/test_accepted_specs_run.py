"""Every accepted spec runs: hypothesis draws node specs over the whole op registry (random input counts,
shapes, dtypes, values and arguments, most of them wrong) and asserts that whatever the compiler accepts
runs in every engine without an exception. A spec that would fail in an engine must be a SpecError at compile.

GRADTRACE_PROPERTY_EXAMPLES raises the number of examples for a longer hunt."""

from __future__ import annotations

import os
import typing
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.compiler import compile_spec
from services.errors import SpecError
from services.ops import REGISTRY
from services.trace import trace
from shared.spec import TraceSpec

EXAMPLES = int(os.environ.get("GRADTRACE_PROPERTY_EXAMPLES", "40"))
SHAPE = st.lists(st.integers(0, 3), min_size=0, max_size=3)
INT = st.integers(-3, 3)
FLOAT = st.sampled_from([-1.5, -0.5, 0.0, 0.5, 1.0, 2.0])


def _value_for(annotation: Any) -> st.SearchStrategy[Any]:
    """A random value roughly of this type (and sometimes of another: the schema must reject it)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return st.sampled_from(list(args))
    if origin in (list, tuple):
        return st.lists(INT, min_size=0, max_size=4)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return st.one_of([_value_for(a) for a in args])
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return INT
    if annotation is float:
        return FLOAT
    if annotation is type(None):
        return st.none()
    return st.one_of(INT, FLOAT, st.booleans(), st.none(), st.lists(INT, max_size=3))


@st.composite
def node_specs(draw: st.DrawFn, name: str | None = None) -> dict[str, Any]:
    """One op (`name`, or any) applied to random inputs with random arguments."""
    name = name or draw(st.sampled_from(sorted(REGISTRY)))
    op = REGISTRY[name]
    lo, hi = op.arity
    n = draw(st.integers(lo, hi if hi is not None else lo + 2))
    inputs: dict[str, Any] = {}
    refs: list[Any] = []
    for k in range(n):
        if op.scalars and draw(st.booleans()) and k > 0:
            refs.append(draw(FLOAT))
            continue
        shape = draw(SHAPE)
        dtype = draw(st.sampled_from(["float32", "float32", "float64", "int64", "bool"]))
        size = 1
        for d in shape:
            size *= d
        if dtype == "bool":
            values = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        elif dtype == "int64":
            values = draw(st.lists(st.integers(-1, 3), min_size=size, max_size=size))
        else:
            values = draw(st.lists(st.floats(-2, 2, allow_nan=False, width=32), min_size=size, max_size=size))
        nested: Any = values
        for d in reversed(shape[1:]):
            nested = [nested[i : i + d] for i in range(0, len(nested), d)] if d else []
        if not shape:
            nested = values[0] if values else 0
        inputs[f"x{k}"] = {"value": nested, "dtype": dtype} if size or not shape else {"shape": shape, "dtype": dtype}
        refs.append(f"x{k}")
    fields = op.Args.model_fields
    args = {f: draw(_value_for(info.annotation)) for f, info in fields.items() if draw(st.booleans())}
    return {"inputs": inputs, "nodes": [{"name": "y", "op": name, "inputs": refs, "args": args}],
            "grad_output": "ones", "engines": ["torch", "reference", "numeric"], "numeric": {"max_elements_per_leaf": 4}}


def runs_if_accepted(spec: dict[str, Any]) -> None:
    """Validate and compile; when accepted, trace with every engine (any exception fails the test). Only the API's
    own refusals count as rejections: a pydantic ValidationError (a 422 naming the field) or a SpecError from the
    compiler; any other exception in compile would be a 500, a bug."""
    try:
        ts = TraceSpec.model_validate(spec)
    except ValidationError:
        return
    try:
        compile_spec(ts)
    except SpecError:  # rejected at compile, with the node named: it never becomes a job
        return
    try:
        trace(ts)
    except torch.linalg.LinAlgError:  # a singular matrix: its values, not its shape, fail linalg.inv as in torch
        return


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=node_specs())
def test_whatever_compiles_runs_in_every_engine(spec: dict[str, Any]) -> None:
    runs_if_accepted(spec)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_op_runs_when_accepted(name: str) -> None:
    """Draws for each op, so every op is fuzzed on every run (not only those the big test happens to draw)."""

    @settings(max_examples=max(5, EXAMPLES // 4), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=node_specs(name))
    def run(spec: dict[str, Any]) -> None:
        runs_if_accepted(spec)

    run()
