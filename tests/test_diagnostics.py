"""Where the first NaN or inf came from (forward and backward), and the result's `nonfinite` column."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.compiler import compile_spec
from services.diagnostics import anomalies, node_flags
from services.engines.torch_engine import run_torch
from services.materialize import materialize
from services.trace import trace
from shared.spec import TraceSpec


def _spec(program: str) -> TraceSpec:
    return TraceSpec.model_validate({"program": program})


def _anomalies(program: str) -> list[dict[str, Any]]:
    return trace(_spec(program)).table.summary["anomalies"]


def test_a_finite_trace_has_no_anomaly_and_no_nonfinite_node() -> None:
    done = trace(_spec("x = torch.tensor(2.0, requires_grad=True)\nfx = x**2 + 3*x + 1\ngx = fx**3 + 4*fx + 2\n"))
    assert done.table.summary["anomalies"] == []
    assert done.table.nonfinite == [False] * len(done.table.names)


def test_the_forward_origin_is_the_first_node_that_makes_an_inf() -> None:
    """log(0) is -inf: y is the forward origin (z only inherits it); backward, log's derivative 1/x is inf at 0."""
    out = _anomalies("x = torch.tensor([1.0, 0.0], requires_grad=True)\ny = torch.log(x)\nz = (y * 2).sum()\n")
    assert [(a["phase"], a["node"], a["index"], a["op"]) for a in out] == [("forward", "y", [1], "log"),
                                                                           ("backward", "x", [1], "log")]
    assert out[0]["value"] == -np.inf and out[0]["inputs"] == {"x": 0.0} and out[0]["count"] == 1
    assert out[1]["value"] == np.inf and out[1]["via"] == "y"


def test_the_backward_origin_is_the_edge_whose_gradient_turns_inf() -> None:
    """sqrt is finite at 0, its derivative is not: the edge x -> y carries inf while y's own grad is finite."""
    done = trace(_spec("x = torch.tensor([4.0, 0.0], requires_grad=True)\ny = torch.sqrt(x)\nz = (y * 3).sum()\n"))
    out = done.table.summary["anomalies"]
    assert [(a["phase"], a["node"], a.get("via"), a["index"]) for a in out] == [("backward", "x", "y", [1])]
    assert out[0]["value"] == np.inf and "sqrt" in out[0]["message"]
    row = done.table.index
    assert done.table.nonfinite[row["x"]] and not done.table.nonfinite[row["y"]]


def test_flags_computed_once_give_what_anomalies_computes_alone() -> None:
    graph = compile_spec(_spec("x = torch.tensor([1.0, 0.0, -1.0], requires_grad=True)\ny = torch.log(x)\n"
                               "w = torch.sqrt(x + 1)\nz = (y + w).sum()\n"))
    materialize(graph)
    run = run_torch(graph)
    flags = node_flags(graph, run)
    names = graph.names()
    # log(0) = -inf, log(-1) = nan, and every node after them
    assert [n for n, bad in zip(names, flags[0], strict=True) if bad] == ["y", "z#1", "z"]
    assert anomalies(graph, run, flags) == anomalies(graph, run)
    assert {a["node"] for a in anomalies(graph, run)} >= {"y"}
