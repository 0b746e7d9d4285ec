"""The result table's JSON (orjson, or the stdlib's json when a number is not finite) and the JSON views."""

from __future__ import annotations

import json
import math
from dataclasses import fields

from services.assemble import ResultTable
from services.trace import trace
from shared.spec import TraceSpec


def _columns(t: ResultTable) -> dict[str, object]:
    return {f.name: getattr(t, f.name) for f in fields(t)}


def _refuse(token: str) -> None:
    raise ValueError(f"{token} in strict JSON")


def test_a_finite_table_round_trips() -> None:
    done = trace(TraceSpec.model_validate({"inputs": {"x": {"value": [0.5, -1.0, 2.0]}},
                                           "nodes": [{"name": "y", "op": "mul", "inputs": ["x", 1e-5]},
                                                     {"name": "s", "op": "sum", "inputs": ["y"]}]}))
    text = done.table.to_json()
    assert "NaN" not in text and "Infinity" not in text
    back = ResultTable.from_json(text)
    assert _columns(back) == json.loads(json.dumps(_columns(done.table)))  # what the stdlib's json gives back
    assert back.inputs[1] == ["x", 1e-5]


def test_inf_and_nan_survive_the_round_trip() -> None:
    # an infinite constant and non-finite values: orjson would write null (read back as 'not compared'), so the
    # table goes through the stdlib's json, and comes back with its inf and NaN
    done = trace(TraceSpec.model_validate({"inputs": {"x": {"value": [1.0, 0.0, -2.0]}},
                                           "nodes": [{"name": "y", "op": "mul", "inputs": ["x", math.inf]},
                                                     {"name": "s", "op": "sum", "inputs": ["y"]}]}))
    t = done.table
    assert not t._all_finite()
    back = ResultTable.from_json(t.to_json())
    assert back.inputs[1][1] == math.inf
    for pair, cols in t.errors.items():
        for fld in ("value", "grad"):
            mine, theirs = cols[fld]["max_abs"], back.errors[pair][fld]["max_abs"]
            assert [None if v is None else ("nan" if v != v else v) for v in mine] == \
                   [None if v is None else ("nan" if v != v else v) for v in theirs]


def test_views_carry_non_finite_numbers_as_strings() -> None:
    done = trace(TraceSpec.model_validate({"inputs": {"x": {"value": [1.0, 0.0, -2.0]}},
                                           "nodes": [{"name": "y", "op": "div", "inputs": ["x", 0.0]},
                                                     {"name": "s", "op": "sum", "inputs": ["y"]}]}))
    result = json.loads(done.result_json or "", parse_constant=_refuse)  # strict JSON: no bare NaN or Infinity
    assert result["nodes"]["y"]["value"]["data"] == ["Infinity", "NaN", "-Infinity"]
