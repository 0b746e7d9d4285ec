"""Trace results: per-node values and grads from each engine, edges, parameters and the verdict."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NONFINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}
"""How JSON carries non-finite numbers (JSON has none): as these strings, which JavaScript's Number() and
Python's float() read back."""


class JsonModel(BaseModel):
    """Base of every model that travels as JSON: inf, -inf and NaN are written as 'Infinity', '-Infinity', 'NaN'."""

    model_config = ConfigDict(ser_json_inf_nan="strings")


def decode_nonfinite(data: Any) -> Any:
    """Tensor data as read from JSON, with the non-finite strings back as floats."""
    if isinstance(data, str):
        return NONFINITE.get(data, data)
    if isinstance(data, list):
        return [decode_nonfinite(x) for x in data]
    return data


class Summary(JsonModel):
    """Statistics of a tensor too large to inline (null only for an empty tensor)."""

    min: float | None
    max: float | None
    mean: float | None
    norm: float | None


class TensorData(JsonModel):
    """A tensor: inline `data` when small, otherwise a `summary` (the full array is stored apart)."""

    shape: list[int]
    dtype: str
    data: Any | None = Field(
        None,
        description="Number or nested list (row-major, as torch.tensor takes it); absent when summarised. Non-finite "
        "numbers are the strings 'Infinity', '-Infinity' and 'NaN'; null marks an element not computed (a finite-"
        "difference gradient element that was not sampled).",
    )
    summary: Summary | None = None
    checked: int | None = Field(None, description="Finite differences: how many elements were evaluated.")

    @field_validator("data", mode="before")
    @classmethod
    def _decode(cls, v: Any) -> Any:
        return decode_nonfinite(v)


class NextFunction(JsonModel):
    """One entry of torch's `grad_fn.next_functions`, mapped back to the node it leads to."""

    grad_fn: str | None = Field(description="Name as torch prints it, e.g. AccumulateGrad; null for a constant.")
    node: str | None = Field(description="Graph node reached through it (through torch-internal functions).")


class EngineTensors(JsonModel):
    """A node's value and grad as one engine computed them."""

    value: TensorData | None = None
    grad: TensorData | None = None


class ErrorStat(JsonModel):
    """Max absolute and relative difference of one tensor between two engines, and its judgement."""

    max_abs: float
    max_rel: float
    ok: bool


class PairError(JsonModel):
    """How one pair of engines differs on a node: its value and its grad (null where not both computed it)."""

    value: ErrorStat | None = None
    grad: ErrorStat | None = None


class NodeResult(JsonModel):
    """Everything known about one node of the graph."""

    op: str
    expr: str
    inputs: list[str | float]
    shape: list[int]
    dtype: str
    is_leaf: bool
    requires_grad: bool
    value: TensorData | None = Field(None, description="The primary engine's value (torch's when it ran).")
    grad: TensorData | None = Field(None, description="The primary engine's grad (null: none, as torch's .grad).")
    grad_fn: str | None = None
    next_functions: list[NextFunction] = Field(default_factory=list)
    engines: dict[str, EngineTensors] = Field(
        default_factory=dict, description="Every engine that ran: its value and grad (finite differences: grad only)."
    )
    error: dict[str, PairError] = Field(default_factory=dict, description="Keyed by engine pair, e.g. 'torch~reference'.")
    nonfinite: bool = Field(False, description="The primary engine's value or grad has an inf or NaN element.")


class NodeItem(NodeResult):
    """A node in a listing page: its name and everything else."""

    name: str


class EdgeResult(JsonModel):
    """Gradient that flowed from `dst` back into its input `src`, per engine."""

    src: str
    dst: str
    grad: TensorData | None = Field(None, description="The primary engine's.")
    engines: dict[str, TensorData] = Field(default_factory=dict, description="Every engine that computes edges.")
    error: dict[str, ErrorStat] = Field(default_factory=dict, description="Keyed by engine pair.")


class ParameterResult(JsonModel):
    """A model parameter (a leaf named like nn.Sequential's state_dict) and how it was initialised."""

    shape: list[int]
    init: str
    value: TensorData
    grad: TensorData | None = None


class PairComparison(JsonModel):
    """Agreement of two engines over every node, leaf and edge."""

    engines: str
    ok: bool
    checked: int
    max_abs: float
    max_rel: float
    worst: str | None = Field(None, description="The tensor with the largest relative error, as 'field:node'.")
    failures: list[str] = Field(default_factory=list)
    rtol: float
    atol: float


class Comparison(JsonModel):
    """The cross-check of all engines that ran, and one verdict."""

    verdict: Literal["agree", "disagree", "single-engine"]
    pairs: list[PairComparison] = Field(default_factory=list)


class Anomaly(JsonModel):
    """Where a non-finite value first appears: in the forward pass, a node whose value has a non-finite element
    while all its inputs are finite; in the backward pass, a node whose gradient turns non-finite while the
    gradients it was computed from are finite."""

    phase: Literal["forward", "backward"]
    node: str
    op: str = Field(description="The op that produced it (backward: the op whose backward did).")
    index: list[int] = Field(description="The first non-finite element.")
    value: float
    count: int = Field(description="Non-finite elements in the tensor.")
    via: str | None = Field(None, description="Backward: the node whose backward produced this gradient.")
    inputs: dict[str, float | None] = Field(
        default_factory=dict,
        description="The op's inputs at that element (forward: values where they line up elementwise; null where not).",
    )
    message: str


class GradHealth(JsonModel):
    """How a leaf's or parameter's gradient looks: the numbers people plot as 'gradient flow per layer'."""

    grad_norm: float
    max_abs: float
    ratio: float | None = Field(description="grad_norm / value_norm (null when the value is all zeros).")
    vanishing: bool = Field(description="Every |grad| is below 1e-7 of the value's scale (max |value|, or 1).")
    exploding: bool = Field(description="A grad element is non-finite or above 1e4 in magnitude.")


class Counts(JsonModel):
    """How big the traced graph is."""

    nodes: int = Field(description="Leaves and op nodes.")
    leaves: int
    parameters: int
    edges: int


class ResultSummary(JsonModel):
    """A trace without its per-node data: what every job view carries, whatever the graph's size."""

    output: str
    dtype: str
    device: str
    engines: list[str]
    counts: Counts
    timings_ms: dict[str, float] = Field(default_factory=dict)
    comparison: Comparison
    anomalies: list[Anomaly] = Field(default_factory=list, description="Non-finite origins, in the order they arise.")
    health: dict[str, GradHealth] = Field(default_factory=dict, description="Per leaf and parameter that has a grad.")
    notes: list[str] = Field(default_factory=list, description="Lines of the program accepted but not traced, and the like.")
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="A program's other names of its tensors, at its end, -> the node's name: `loss = total`, a loop's "
                    "last `p`, `model.encoder.weight` of a module also held as `enc` (enc.weight). The node "
                    "endpoints take either name.")


class TraceResult(ResultSummary):
    """A whole trace: the summary, every node, edge and parameter (large tensors summarised)."""

    nodes: dict[str, NodeResult]
    edges: list[EdgeResult] = Field(default_factory=list)
    parameters: dict[str, ParameterResult] = Field(default_factory=dict)


class NodePage(JsonModel):
    """One page of a job's nodes, in graph order, after the filter."""

    total: int = Field(description="Nodes that pass the filter.")
    offset: int
    limit: int
    items: list[NodeItem]


class GraphNode(JsonModel):
    """A node of the backward graph with the numbers on it."""

    name: str
    op: str
    expr: str
    inputs: list[str | float] = Field(default_factory=list)
    shape: list[int]
    grad_fn: str | None = None
    is_leaf: bool
    value: TensorData | None = None
    grad: TensorData | None = None
    ok: bool = Field(True, description="Every engine pair agrees on this node's value and grad.")
    nonfinite: bool = False
    hidden: int = Field(0, description="Neighbours (inputs and users) not in this view: expand the node to see them.")


class GraphEdge(JsonModel):
    """The gradient that flowed from `dst` back into `src`."""

    src: str
    dst: str
    grad: TensorData | None = None


class GraphView(JsonModel):
    """The backward graph (or the part of it around one node) as data, for programs that draw their own pictures."""

    output: str
    total: int = Field(description="Nodes in the whole graph.")
    nodes: list[GraphNode]
    edges: list[GraphEdge]
