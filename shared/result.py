"""Trace results: per-node values and grads from each engine, edges, parameters and the verdict."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Summary(BaseModel):
    """Statistics of a tensor too large to inline."""

    min: float | None
    max: float | None
    mean: float | None
    norm: float | None


class TensorData(BaseModel):
    """A tensor: inline `data` when small, otherwise a `summary` (the full array is stored apart)."""

    shape: list[int]
    dtype: str
    data: Any | None = Field(None, description="Number or nested list; absent when summarised.")
    summary: Summary | None = None


class NextFunction(BaseModel):
    """One entry of torch's `grad_fn.next_functions`, mapped back to the node it leads to."""

    grad_fn: str | None = Field(description="Name as torch prints it, e.g. AccumulateGrad; null for a constant.")
    node: str | None = Field(description="Graph node reached through it (through torch-internal functions).")


class EngineTensors(BaseModel):
    """A node's value and grad as one engine computed them."""

    value: TensorData | None = None
    grad: TensorData | None = None


class ErrorStat(BaseModel):
    """Max absolute and relative difference of one tensor between two engines, and its judgement."""

    max_abs: float
    max_rel: float
    ok: bool


class NodeResult(BaseModel):
    """Everything known about one node of the graph."""

    op: str
    expr: str
    inputs: list[str | float]
    shape: list[int]
    dtype: str
    is_leaf: bool
    requires_grad: bool
    value: TensorData | None = Field(None, description="Primary engine's value (torch when it ran).")
    grad: TensorData | None = None
    grad_fn: str | None = None
    next_functions: list[NextFunction] = Field(default_factory=list)
    reference: EngineTensors | None = None
    numeric: EngineTensors | None = None
    error: dict[str, ErrorStat] = Field(
        default_factory=dict, description="Keyed like 'value:torch~reference' or 'grad:torch~numeric'."
    )


class EdgeResult(BaseModel):
    """Gradient that flowed from `dst` back into its input `src`, per engine."""

    src: str
    dst: str
    grad: TensorData | None = None
    reference: TensorData | None = None
    error: ErrorStat | None = None


class ParameterResult(BaseModel):
    """A model parameter (a leaf named like nn.Sequential's state_dict) and how it was initialised."""

    shape: list[int]
    init: str
    value: TensorData
    grad: TensorData | None = None


class PairComparison(BaseModel):
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


class Comparison(BaseModel):
    """The cross-check of all engines that ran, and one verdict."""

    verdict: Literal["agree", "disagree", "single-engine"]
    pairs: list[PairComparison] = Field(default_factory=list)


class TraceResult(BaseModel):
    """What a trace returns; JSON-serialisable, large tensors summarised."""

    output: str
    dtype: str
    device: str
    engines: list[str]
    nodes: dict[str, NodeResult]
    edges: list[EdgeResult] = Field(default_factory=list)
    parameters: dict[str, ParameterResult] = Field(default_factory=dict)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    comparison: Comparison
