"""Jobs of the tracing service: their record, the API's response bodies and the stored-tensor manifest."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.result import JsonModel, ResultSummary, TraceResult

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobProgress(JsonModel):
    """The step a running job is in ('queued', 'torch', 'reference', 'numeric', 'compare', 'done') and how far."""

    step: str
    fraction: float = Field(ge=0.0, le=1.0)


ErrorCode = Literal[
    "spec_error",          # the spec cannot run as written (a shape, a value out of range): fix the spec
    "engine_error",        # an engine raised: the message starts with the exception ("IndexError: ...")
    "time_limit",          # the soft or hard time limit of a job ran out
    "out_of_memory",       # the worker ran out of memory on this job
    "result_too_large",    # the result exceeds GRADTRACE_MAX_RESULT_BYTES
    "worker_lost",         # the worker running the job died (or lost Redis) on every attempt
    "attempts_exhausted",  # the job was delivered more than GRADTRACE_MAX_ATTEMPTS times
    "enqueue_failed",      # the broker was unavailable when the job was submitted
]
"""The documented, stable codes of a failed job (README: Errors). New failure kinds get a new code here."""


class JobError(JsonModel):
    """Why a job failed: a stable code (see ErrorCode) and a message for people, no traceback."""

    type: ErrorCode
    message: str


class StoredTensor(JsonModel):
    """One tensor kept in full in the store."""

    dtype: str
    shape: list[int]
    nbytes: int
    offset: int | None = Field(
        None, description="Byte offset in the job's packed blob of small tensors; null: the tensor has its own key."
    )


class Manifest(JsonModel):
    """Which tensors of a job are stored in full (by 'engine/field/name') and which were not, with the reason."""

    stored: dict[str, StoredTensor] = Field(default_factory=dict)
    not_kept: dict[str, str] = Field(default_factory=dict)
    nbytes: int = 0


class JobLinks(JsonModel):
    """Where to find a job and its parts."""

    self: str
    graph: str
    nodes: str = Field(description="Prefix of the per-node tensor URLs: append the URL-encoded node name.")
    node_list: str = Field(description="The paginated, filterable node listing (any graph size).")


class JobCreated(JsonModel):
    """Answer to a submitted spec."""

    id: str
    status: JobStatus
    links: JobLinks


class JobState(JsonModel):
    """What every view of a job shows: its status, attempts, times, progress and error."""

    id: str
    status: JobStatus
    attempts: int = 0
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: JobProgress | None = None
    error: JobError | None = None


class JobView(JobState):
    """A job as GET /v1/jobs/{id} shows it."""

    summary: ResultSummary | None = Field(
        None, description="Once succeeded: the verdict, engines, counts, anomalies, gradient health and timings."
    )
    result: TraceResult | None = Field(
        None,
        description="Once succeeded, for graphs of at most GRADTRACE_RESULT_FULL_NODES nodes: every node, edge and "
        "parameter (large tensors summarised). Larger graphs: page through links.node_list.",
    )
    manifest: Manifest | None = Field(None, description="Tensors stored in full, once succeeded.")
    links: JobLinks


class JobListItem(JobState):
    """A job as the job list shows it: status, progress, attempts, times, verdict and size."""

    verdict: Literal["agree", "disagree", "single-engine"] | None = Field(None, description="Once succeeded.")
    nodes: int = Field(0, description="Nodes in the job's graph (leaves and ops).")


class JobList(JsonModel):
    """The newest jobs first."""

    items: list[JobListItem]


class NodeTensor(JsonModel):
    """One node's (or parameter's) full tensor from one engine, as JSON."""

    name: str
    engine: str
    field: Literal["value", "grad"]
    shape: list[int]
    dtype: str
    data: Any = Field(description="Number or nested list; non-finite numbers as 'Infinity', '-Infinity', 'NaN'.")


class ErrorItem(JsonModel):
    """One problem with a request: what, and where (field path, node, source line)."""

    type: str
    msg: str
    loc: list[str | int] = Field(default_factory=list)
    node: str | None = None
    line: int | None = None
    col: int | None = None


class ErrorBody(JsonModel):
    """Every error response: a list of problems (validation) or one message."""

    detail: list[ErrorItem] | str


class JobDeleted(JsonModel):
    """Answer to DELETE of a queued or running job: it was cancelled and its data removed."""

    id: str
    status: Literal["cancelled"] = "cancelled"


class Health(JsonModel):
    """Liveness: the API process answers."""

    status: Literal["ok"] = "ok"


class Readiness(JsonModel):
    """Readiness: the store answers and workers listen; `missing` says what is not there."""

    status: Literal["ready", "unready"]
    redis: bool
    workers: int
    missing: list[str] = Field(default_factory=list)
