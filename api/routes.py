"""The HTTP routes: thin wrappers around the compiler, the job store, the graph renderer and Celery."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Literal

from celery import Celery
from flask import Response, current_app, g, request, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from services import listing, quota
from services.compiler import Limits, compile_spec
from services.errors import SpecError
from services.graph import GraphvizMissing, render
from services.jobs import check_budget, check_keep
from services.store import (
    IdempotencyConflict,
    JobNotFound,
    JobNotReady,
    JobRecord,
    JobStore,
    ManifestTooLarge,
    TensorNotFound,
    TensorNotKept,
)
from shared.codec import encode, to_npy
from shared.job import (
    ErrorBody,
    Health,
    JobCreated,
    JobDeleted,
    JobLinks,
    JobList,
    JobView,
    NodeTensor,
    Readiness,
)
from shared.result import GraphView, NodePage
from shared.settings import Settings
from shared.spec import TraceSpec
from worker.queue import RUN_JOB, count_workers

RETRY_AFTER_S = 5
"""What a 429 (a token at its limit of unfinished jobs) tells the client to wait before trying again."""


@dataclass
class Service:
    """What the routes use, made once by create_app."""

    settings: Settings
    store: JobStore
    celery: Celery
    waiters: threading.BoundedSemaphore
    """Slots for long polls: two of each process's threads never wait, so other requests always get through."""


def svc() -> Service:
    """The app's Service."""
    return current_app.extensions["gradtrace"]


def json_response(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A pydantic model as a JSON response (NaN/inf become null)."""
    return Response(model.model_dump_json(), status=status, headers=headers, mimetype="application/json")


def error(status: int, detail: str | list[dict[str, object]]) -> Response:
    """An ErrorBody response."""
    return json_response(ErrorBody.model_validate({"detail": detail}), status)


OTHER_MEDIA = {
    "/v1/jobs/{job_id}/graph": ["image/svg+xml", "text/vnd.graphviz"],
    "/v1/jobs/{job_id}/nodes/{name}": ["application/octet-stream"],
}
"""Media types some 200s answer in besides JSON (format=svg|dot, format=npy): added to the OpenAPI document."""

jobs = APIBlueprint("jobs", __name__, url_prefix="/v1", abp_tags=[Tag(name="jobs")], abp_responses={404: ErrorBody})
health = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


class JobPath(BaseModel):
    """A job in the path."""

    job_id: str = Field(description="The id POST /v1/jobs returned.")


class NodePath(BaseModel):
    """A job and a node or parameter name in the path."""

    job_id: str
    name: str = Field(description="Node or parameter name, URL-encoded ('#' as %23, '@' as %40).")


class RequestModel(BaseModel):
    """Base of the query and header models: flask-openapi3 (4.3) builds the model's JSON schema on every request
    to read the query or headers (half of a finished job's 5 ms GET, measured in-process): built once here."""

    @classmethod
    @cache
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """Cached per class and arguments (flask-openapi3 only reads it)."""
        return super().model_json_schema(*args, **kwargs)


class SubmitHeader(RequestModel):
    """Optional headers of a submission."""

    idempotency_key: str | None = Field(
        None, alias="Idempotency-Key", max_length=256, description="Same key and spec: the same job back."
    )


class JobQuery(RequestModel):
    """How long to wait for the job to finish before answering, and what to leave out."""

    wait: float = Field(
        0, ge=0, le=30,
        description="Long poll: answer as soon as the job has finished (or is gone), or after this many seconds.",
    )
    result: bool = Field(True, description="false: leave out the whole result (the summary stays).")
    manifest: bool | None = Field(
        None, description="The manifest of stored tensors (a line per tensor). Default: with the whole result (jobs of "
        "up to GRADTRACE_RESULT_FULL_NODES nodes), null for larger jobs; true: always; false: never.",
    )


class NodeQuery(RequestModel):
    """Which tensor of the node, and how to send it."""

    engine: Literal["torch", "reference", "numeric"] | None = Field(None, description="Default: the first engine.")
    field: Literal["value", "grad"] = "value"
    format: Literal["json", "npy"] | None = Field(None, description="Default json; npy also for Accept: application/octet-stream.")


class GraphQuery(RequestModel):
    """How to draw the graph, and which part of it."""

    format: Literal["svg", "dot", "json"] = "svg"
    around: str | None = Field(None, description="Only the nodes near this one (default: the whole graph if it fits).")
    depth: int = Field(2, ge=0, le=1_000_000, description="Hops from `around` (or from the output, for a graph over max_nodes).")
    max_nodes: int = Field(300, ge=1, le=5000, description="At most this many nodes, nearest first.")


class NodeListQuery(RequestModel):
    """Which page of the node listing."""

    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)
    filter: listing.Filter = Field("all", description="all, disagree (engines differ), nonfinite, leaves, params.")
    q: str | None = Field(None, max_length=200, description="Only nodes whose name contains this (case-insensitive).")
    name: str | None = Field(None, max_length=200, description="Only the node of exactly this name.")


def links(job_id: str) -> JobLinks:
    """The job's URLs."""
    nodes = url_for("jobs.get_node", job_id=job_id, name="_")[:-1]
    return JobLinks(self=url_for("jobs.get_job", job_id=job_id), graph=url_for("jobs.get_graph", job_id=job_id), nodes=nodes,
                    node_list=url_for("jobs.list_nodes", job_id=job_id))


@jobs.post("/jobs", responses={202: JobCreated, 409: ErrorBody, 413: ErrorBody, 422: ErrorBody, 429: ErrorBody,
                               503: ErrorBody})
def submit(body: TraceSpec, header: SubmitHeader) -> Response:
    """Submit a spec: validated and compiled now, traced by a worker; poll the Location it returns."""
    s = svc()
    try:
        graph = compile_spec(body, Limits.from_settings(s.settings))  # shapes only: nothing is drawn here
        check_keep(graph)
        check_budget(graph, s.settings)
    except SpecError as e:  # only the spec's own faults are 422; anything else is a bug: a 500 (api.app logs it)
        return error(422, [e.to_dict()])
    owner = g.get("owner")
    limit = s.settings.max_unfinished_per_token
    if owner and limit and quota.unfinished(s.store, owner) >= limit:
        out = error(429, f"this token has {limit} unfinished jobs, its limit (GRADTRACE_MAX_UNFINISHED_PER_TOKEN): "
                         "wait for some to finish, or cancel them")
        out.headers["Retry-After"] = str(RETRY_AFTER_S)
        return out
    try:
        job_id, created = s.store.create(body.model_dump_json(exclude_unset=True), header.idempotency_key,
                                         len(graph.leaves) + len(graph.nodes),
                                         canonical=body.model_dump_json() if header.idempotency_key else None)
    except IdempotencyConflict as e:
        return error(409, str(e))
    if created:
        try:
            s.celery.send_task(RUN_JOB, args=[job_id], task_id=job_id)  # Celery's log lines name the job
        except Exception as e:  # broker down: the job cannot run
            current_app.logger.error("enqueue of job %s failed: %s", job_id, e)
            s.store.fail(job_id, "enqueue_failed", "the job could not be queued (broker unavailable)")
            return error(503, "the job could not be queued: the broker is unavailable")
        if owner:
            quota.record(s.store, owner, job_id)
    out = JobCreated(id=job_id, status="queued" if created else s.store.get(job_id).status, links=links(job_id))  # type: ignore[arg-type]
    return json_response(out, 202, {"Location": out.links.self})


class ListQuery(RequestModel):
    """How many of the newest jobs."""

    limit: int = Field(50, ge=1, le=500)


@jobs.get("/jobs", responses={200: JobList})
def list_jobs(query: ListQuery) -> Response:
    """The newest jobs first: status, progress, attempts, times, verdict and node count (what a dashboard polls)."""
    return json_response(JobList.model_validate({"items": svc().store.recent(query.limit)}))


def view(rec: JobRecord) -> JobView:
    """A record as the API shows it, without its result and manifest (see view_json)."""
    return JobView(
        id=rec.id, status=rec.status, attempts=rec.attempts, created_at=rec.created_at,  # type: ignore[arg-type]
        started_at=rec.started_at, finished_at=rec.finished_at, progress=rec.progress, error=rec.error,
        links=links(rec.id),
    )


def view_json(rec: JobRecord) -> str:
    """The JobView as JSON, with the stored summary, result and manifest JSON spliced in as they are: they were
    written in the ResultSummary, TraceResult and Manifest schemas, and parsing and re-serialising them costs
    more than the request."""
    if rec.status != "succeeded" or rec.summary_json is None:
        return view(rec).model_dump_json()
    body = view(rec).model_dump_json(exclude={"summary", "result", "manifest"})
    return (f'{body[:-1]},"summary":{rec.summary_json},"result":{rec.result_json or "null"},'
            f'"manifest":{rec.manifest_json or "null"}}}')


@jobs.get("/jobs/<job_id>", responses={200: JobView, 413: ErrorBody, 422: ErrorBody})
def get_job(path: JobPath, query: JobQuery) -> Response:
    """A job's status, timestamps, attempts, progress, error and, once succeeded, its result.

    With `?wait=S` the answer waits (up to S seconds) for the job to finish: one request instead of polling.
    At most GRADTRACE_API_THREADS - 2 requests per process wait at once; beyond that the answer is immediate."""
    s = svc()
    bulk = ("summary", *(["result"] if query.result else []), *(["manifest"] if query.manifest is not False else []))
    try:
        rec = s.store.get(path.job_id, *bulk)
        if query.wait > 0 and rec.status in ("queued", "running") and s.waiters.acquire(blocking=False):
            try:  # no free slot: answer at once, the client asks again
                s.store.wait(path.job_id, query.wait)
            finally:
                s.waiters.release()
            rec = s.store.get(path.job_id, *bulk)
        if query.manifest:  # asked for: a large job's manifest is built from its tensor index
            rec.manifest_json = s.store.manifest_json(rec)
        return Response(view_json(rec), mimetype="application/json")
    except JobNotFound as e:
        return error(404, str(e))
    except ManifestTooLarge as e:
        return error(413, str(e))


@jobs.get("/jobs/<job_id>/nodes/<path:name>", responses={200: NodeTensor, 409: ErrorBody, 410: ErrorBody, 422: ErrorBody})
def get_node(path: NodePath, query: NodeQuery) -> Response:
    """One node's (or parameter's) full value or grad, as JSON or .npy bytes; by the node's name or another name the
    program gave it (the result's aliases: `loss = total`)."""
    try:
        try:
            engine, a = svc().store.tensor(path.job_id, query.engine, query.field, path.name)
        except TensorNotFound:
            other = svc().store.table(path.job_id).summary.get("aliases", {}).get(path.name)
            if other is None:
                raise
            engine, a = svc().store.tensor(path.job_id, query.engine, query.field, other)
    except (JobNotFound, TensorNotFound) as e:
        return error(404, str(e))
    except JobNotReady as e:
        return error(409, str(e))
    except TensorNotKept as e:
        return error(410, str(e))
    fmt = query.format or (
        "npy" if request.accept_mimetypes.best_match(["application/json", "application/octet-stream"])
        == "application/octet-stream" else "json"
    )
    if fmt == "npy":
        fname = re.sub(r"[^\w.-]", "_", f"{path.name}.{engine}.{query.field}") + ".npy"
        return Response(to_npy(a), mimetype="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{fname}"'})
    data = encode(a, inline_limit=a.size).data
    return json_response(NodeTensor(name=path.name, engine=engine, field=query.field, shape=list(a.shape),
                                    dtype=str(a.dtype), data=data))


@jobs.get("/jobs/<job_id>/nodes", responses={200: NodePage, 409: ErrorBody, 422: ErrorBody})
def list_nodes(path: JobPath, query: NodeListQuery) -> Response:
    """A page of the job's nodes in graph order, filtered, with their numbers (for graphs of any size)."""
    s = svc()
    try:
        table = s.store.table(path.job_id)
        rows = listing.select(table, query.filter, query.q, query.name)
        fetch = partial(s.store.tensors, path.job_id, s.store.get(path.job_id).data or "")
        return json_response(listing.page(table, rows, query.offset, query.limit, fetch))
    except JobNotFound as e:
        return error(404, str(e))
    except JobNotReady as e:
        return error(409, str(e))


@jobs.get("/jobs/<job_id>/graph", responses={200: GraphView, 409: ErrorBody, 413: ErrorBody, 422: ErrorBody, 503: ErrorBody})
def get_graph(path: JobPath, query: GraphQuery) -> Response:
    """The backward graph, each edge labelled with the gradient that flowed along it: JSON (GraphView), DOT
    or SVG. With `around`, only the nodes within `depth` hops of that node (each says how many neighbours it hides)."""
    s = svc()
    try:
        table = s.store.table(path.job_id)
        data = s.store.get(path.job_id).data or ""
    except JobNotFound as e:
        return error(404, str(e))
    except JobNotReady as e:
        return error(409, str(e))
    if query.around is not None and query.around not in table.index:
        return error(404, f"no node named '{query.around}'")
    whole = query.around is None and len(table.names) <= query.max_nodes
    rows = None if whole else listing.around(table, query.around, query.depth, query.max_nodes)
    view_ = listing.graph_view(table, rows, partial(s.store.tensors, path.job_id, data))
    if query.format == "json":
        return json_response(view_)
    if len(view_.nodes) > s.settings.graph_draw_nodes:
        return error(413, f"{len(view_.nodes)} nodes are too many to draw (at most {s.settings.graph_draw_nodes}): use "
                          "format=json, around=NODE with a small depth, or the web page")
    mimetype = "image/svg+xml" if query.format == "svg" else "text/vnd.graphviz"
    try:
        return Response(render(view_, query.format), mimetype=mimetype)
    except GraphvizMissing as e:
        return error(503, str(e))


@jobs.delete("/jobs/<job_id>", responses={202: JobDeleted, 204: None})
def delete_job(path: JobPath) -> Response:
    """Cancel a queued/running job (202) or delete a finished one (204); either way all its data goes."""
    try:
        status = svc().store.delete(path.job_id)
    except JobNotFound as e:
        return error(404, str(e))
    if status in ("queued", "running"):
        return json_response(JobDeleted(id=path.job_id), 202)
    return Response(status=204)


@health.get("/healthz", responses={200: Health})
def healthz() -> Response:
    """Liveness: always 200 while the process serves."""
    return json_response(Health())


@health.get("/readyz", responses={200: Readiness, 503: Readiness})
def readyz() -> Response:
    """Readiness within about a second and a half: Redis answers a ping, and a worker answers the broker's.
    Both checks run at once with deadlines, so a stalled dependency is reported, never waited on."""
    s = svc()
    checks: dict[str, Any] = {}

    def redis_check() -> None:
        try:
            checks["redis"] = s.store.ping()
        except Exception as e:  # reported, whatever it is
            checks["redis"], checks["redis_error"] = False, f"{type(e).__name__}: {e}"

    def worker_check() -> None:
        try:
            checks["workers"] = count_workers(s.celery, timeout=1.0)
        except Exception as e:  # reported, whatever it is
            checks["workers"], checks["workers_error"] = 0, f"broker unreachable ({type(e).__name__}: {e})"

    threads = [threading.Thread(target=f, daemon=True) for f in (redis_check, worker_check)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 1.3
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    missing: list[str] = []
    if "redis" not in checks:
        missing.append("redis: no answer within 1.3 s")
    elif "redis_error" in checks:
        missing.append(f"redis: {checks['redis_error']}")
    workers = checks.get("workers", 0)
    if "workers" not in checks:
        missing.append("workers: the broker did not answer within 1.3 s")
    elif "workers_error" in checks:
        missing.append(f"workers: {checks['workers_error']}")
    elif not workers:
        missing.append("workers: no Celery worker answered a ping within 1 s")
    redis_ok = bool(checks.get("redis"))
    ready = Readiness(status="unready" if missing else "ready", redis=redis_ok, workers=workers, missing=missing)
    return json_response(ready, 503 if missing else 200)
