"""`gradtrace submit|status|fetch`: the CLI as a client of the gradtrace HTTP API."""

from __future__ import annotations

import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from cli.render import print_result, torch_text, verdict_line
from services.graph import as_array
from shared.result import TensorData, TraceResult

EXIT_AGREE, EXIT_DISAGREE, EXIT_BAD_SPEC, EXIT_FAILED = 0, 1, 2, 3
TERMINAL = ("succeeded", "failed", "cancelled")
err = Console(stderr=True, highlight=False)


class EngineName(StrEnum):
    """Engines whose tensors the API serves."""

    torch = "torch"
    reference = "reference"
    numeric = "numeric"


class FieldName(StrEnum):
    """Which tensor of a node."""

    value = "value"
    grad = "grad"


UrlOpt = Annotated[str | None, typer.Option("--url", help="API base URL (default: $GRADTRACE_API_URL, else http://127.0.0.1:8000).")]


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print `message` on stderr and exit with `code`."""
    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def api_client(url: str | None, timeout: float) -> httpx.Client:
    """An HTTP client for the API at `url`, sending GRADTRACE_API_TOKEN as a bearer token when it is set."""
    token = os.environ.get("GRADTRACE_API_TOKEN", "").strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url(url), timeout=timeout, headers=headers)


def base_url(url: str | None) -> str:
    """The API URL: --url, else Settings().api_url (GRADTRACE_API_URL)."""
    if url:
        return url.rstrip("/")
    from shared.settings import Settings

    try:
        return Settings().api_url.rstrip("/")
    except ValidationError as e:
        fail(f"bad GRADTRACE_* settings in the environment: {e.errors()[0]['msg']}")


def format_detail(detail: Any) -> str:
    """An ErrorBody's detail (a message or a list of problems) as 'where: what' lines."""
    if not isinstance(detail, list):
        return str(detail)
    lines = []
    for item in detail:
        if not isinstance(item, dict):
            lines.append(str(item))
            continue
        where = [".".join(str(p) for p in item.get("loc") or [])] if item.get("loc") else []
        if item.get("node"):
            where.append(f"node '{item['node']}'")
        if item.get("line") is not None:
            where.append(f"line {item['line']}" + (f", col {item['col']}" if item.get("col") is not None else ""))
        msg = item.get("msg", "")
        lines.append(f"{', '.join(where)}: {msg}" if where else msg)
    return "\n".join(lines)


def detail_of(r: httpx.Response) -> str:
    """The error detail of a response, or its status line."""
    try:
        return format_detail(r.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {r.status_code} {r.reason_phrase}"


def request(client: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
    """One API call; an unreachable API, a refused token, a 429 or a 5xx exits 3 with a clear message."""
    try:
        r = client.request(method, path, **kw)
    except httpx.TimeoutException:
        fail(f"the gradtrace API at {client.base_url} did not answer in time")
    except httpx.TransportError as e:
        fail(f"cannot reach the gradtrace API at {client.base_url} ({type(e).__name__}: {e or 'no answer'})")
    return refuse(r)


def refuse(r: httpx.Response) -> httpx.Response:
    """Exit 3 with a clear message for a refused token, a 429 or a 5xx; else the response."""
    if r.status_code >= 500:
        fail(f"the API answered {r.status_code}: {detail_of(r)}")
    if r.status_code == 401:
        fail(f"{detail_of(r)} (the CLI sends GRADTRACE_API_TOKEN)")
    if r.status_code == 429:
        fail(f"{detail_of(r)} (retry after {r.headers.get('Retry-After', 'a few')} s)")
    return r


def get_job(client: httpx.Client, job_id: str, wait: float = 0) -> dict[str, Any]:
    """GET /v1/jobs/{id}, waiting up to `wait` seconds for it to finish (a long poll); exits 3 when unknown."""
    params = {"wait": f"{wait:g}"} if wait > 0 else None
    r = request(client, "GET", f"/v1/jobs/{quote(job_id, safe='')}", params=params)
    if r.status_code != 200:
        fail(detail_of(r))
    return r.json()


def spec_body(path: Path) -> dict[str, Any]:
    """The request body for a spec file: a .json TraceSpec as is, a .py program as {'program': text}."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return {"program": text}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"{path}: not valid JSON ({e})", EXIT_BAD_SPEC)
    return data


TRANSIENT = (502, 503, 504)
"""Answers that say the service is briefly unavailable (its store or broker away, a proxy between): a wait goes on."""


class Unavailable(Exception):
    """The API could not answer this poll (unreachable, timed out, or a 502/503/504): `detail` says how."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail, self.retry_after = detail, retry_after


def poll_job(client: httpx.Client, job_id: str, wait: float) -> dict[str, Any]:
    """One long poll of the job (see get_job); raises Unavailable instead of exiting when the outage may pass."""
    try:
        r = client.get(f"/v1/jobs/{quote(job_id, safe='')}", params={"wait": f"{wait:g}"} if wait > 0 else None)
    except httpx.TimeoutException:
        raise Unavailable("the API did not answer in time") from None
    except httpx.TransportError as e:
        raise Unavailable(f"cannot reach the API ({type(e).__name__})") from None
    if r.status_code in TRANSIENT:
        after = r.headers.get("Retry-After", "")
        raise Unavailable(f"the API answered {r.status_code}: {detail_of(r)}", float(after) if after.isdigit() else None)
    if refuse(r).status_code != 200:
        fail(detail_of(r))
    return r.json()


def wait_for_job(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    """Long-poll the job until it is finished, with a progress bar on stderr; exits 3 after `timeout` seconds.

    The job runs on whatever happens to this client's connection: while the API is unreachable or answers
    502/503/504 (its Redis restarting, say), the wait goes on, polling again after a growing pause (at most 5 s),
    and says so on stderr once per outage."""
    deadline = time.monotonic() + timeout
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    outage: Unavailable | None = None
    pause = 0.25
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"job {job_id[:8]}: queued", total=1.0)  # ids are hex: no markup in them
        while True:
            # each GET answers when the job finishes, or after a second to update the bar
            wait, asked = max(0.0, min(1.0, deadline - time.monotonic())), time.monotonic()
            try:
                job = poll_job(client, job_id, wait)
            except Unavailable as e:
                if outage is None:
                    bar.console.print(f"{escape(e.detail)}; still waiting for job {job_id} (until --timeout)", soft_wrap=True)
                outage = e
                if time.monotonic() + pause > deadline:
                    fail(f"job {job_id}: gave up after {timeout:g} s; the API was unavailable ({e.detail}); "
                         f"follow the job with `gradtrace status {job_id}`")
                time.sleep(e.retry_after if e.retry_after is not None else pause)
                pause = min(5.0, pause * 2)
                continue
            if outage is not None:
                bar.console.print(f"the API answers again; following job {job_id}", soft_wrap=True)
                outage, pause = None, 0.25
            p = job.get("progress") or {}
            bar.update(task, completed=p.get("fraction", 0.0),
                       description=f"job {job_id[:8]}: {job['status']} {p.get('step', '')}".rstrip())
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                fail(f"job {job_id} still {job['status']} after {timeout:g} s; follow it with `gradtrace status {job_id}`")
            time.sleep(max(0.0, asked + wait - time.monotonic()))  # an API that did not wait (busy): not at once again


def result_of(job: dict[str, Any]) -> TraceResult:
    """The job's TraceResult; exits 3 when the API's result does not validate."""
    try:
        return TraceResult.model_validate(job["result"])
    except ValidationError as e:
        fail(f"the API returned a result this client cannot read ({e.error_count()} problems, first: {e.errors()[0]['msg']})")


def submit(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .json TraceSpec or a .py program.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job and print its table.")] = False,
    url: UrlOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="With --wait: seconds to wait for the job.")] = 600.0,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Same key and spec: same job.")] = None,
) -> None:
    """Submit a spec to the API. Prints the job id, or with --wait the result (exit 0 agree, 1 disagree, 2 bad spec, 3 failed)."""
    body = spec_body(spec)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with api_client(url, 30.0) as client:
        r = request(client, "POST", "/v1/jobs", json=body, headers=headers)
        if r.status_code in (413, 422):
            err.print(f"[red]bad spec:[/] {escape(detail_of(r))}", soft_wrap=True)
            raise typer.Exit(EXIT_BAD_SPEC)
        if r.status_code != 202:
            fail(f"the API answered {r.status_code}: {detail_of(r)}")
        job_id = r.json()["id"]
        if not wait:
            sys.stdout.write(job_id + "\n")
            raise typer.Exit(0)
        err.print(f"submitted job {escape(job_id)}")
        try:
            job = wait_for_job(client, job_id, timeout)
        except KeyboardInterrupt:
            fail(f"stopped waiting; job {job_id} goes on (`gradtrace status {job_id}`)", 130)
    if job["status"] != "succeeded":
        e = job.get("error") or {}
        fail(f"job {job_id} {job['status']}" + (f": {e.get('type')}: {e.get('message')}" if e else ""))
    result = result_of(job)
    print_result(result)
    raise typer.Exit(EXIT_AGREE if result.comparison.verdict != "disagree" else EXIT_DISAGREE)


def status(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id `submit` printed.")],
    url: UrlOpt = None,
) -> None:
    """Show a job's status, progress, error and timestamps (and the verdict once succeeded)."""
    with api_client(url, 30.0) as client:
        job = get_job(client, job_id)
    out = Console(highlight=False, markup=False)
    out.print(f"job       {job['id']}")
    out.print(f"status    {job['status']}")
    if p := job.get("progress"):
        out.print(f"progress  {p['step']} {100 * p['fraction']:.0f}%")
    out.print(f"attempts  {job.get('attempts', 0)}")
    for key in ("created_at", "started_at", "finished_at"):
        if job.get(key):
            out.print(f"{key.removesuffix('_at'):<9} {job[key]}")
    if e := job.get("error"):
        out.print(f"error     {e['type']}: {e['message']}")
    if job["status"] == "succeeded" and job.get("result"):
        out.print(verdict_line(result_of(job)), markup=True)


def fetch(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    node: Annotated[str, typer.Argument(metavar="NODE", help="Node or parameter name.")],
    engine: Annotated[EngineName | None, typer.Option(help="Engine (default: the job's first).")] = None,
    field: Annotated[FieldName, typer.Option(help="Forward value or gradient.")] = FieldName.value,
    output: Annotated[Path | None, typer.Option("-o", "--output", dir_okay=False, help="Write .npy here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    url: UrlOpt = None,
) -> None:
    """Fetch one node's full value or grad: print it (as torch prints it), or write it as .npy with -o."""
    params = {"field": field.value, "format": "npy" if output else "json"}
    if engine is not None:
        params["engine"] = engine.value
    with api_client(url, 120.0) as client:
        r = request(client, "GET", f"/v1/jobs/{quote(job_id, safe='')}/nodes/{quote(node, safe='')}", params=params)
    if r.status_code != 200:
        fail(detail_of(r))
    if output:
        output.write_bytes(r.content)
        err.print(f"wrote {escape(str(output))} ({len(r.content)} bytes)")
        return
    t = r.json()
    if json_out:
        sys.stdout.write(json.dumps(t) + "\n")
        return
    a = as_array(TensorData(shape=t["shape"], dtype=t["dtype"], data=t["data"]))
    sys.stdout.write(f"{t['name']} {t['field']} ({t['engine']}, {t['dtype']}, shape {tuple(t['shape'])})\n{torch_text(a)}\n")


def cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    url: UrlOpt = None,
) -> None:
    """Cancel a queued or running job (its data is deleted); for a finished job, delete its results."""
    with api_client(url, 30.0) as client:
        r = request(client, "DELETE", f"/v1/jobs/{quote(job_id, safe='')}")
    if r.status_code == 202:
        err.print(f"job {escape(job_id)} cancelled")
    elif r.status_code == 204:
        err.print(f"job {escape(job_id)} had finished: its results are deleted")
    else:
        fail(detail_of(r))


class GraphFormat(StrEnum):
    """What `gradtrace graph` writes."""

    svg = "svg"
    dot = "dot"
    json = "json"


def graph(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    svg: Annotated[Path | None, typer.Option("--svg", dir_okay=False, help="Write the SVG picture here.")] = None,
    dot: Annotated[Path | None, typer.Option("--dot", dir_okay=False, help="Write the Graphviz DOT source here.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", dir_okay=False, help="Write the graph as JSON here.")] = None,
    url: UrlOpt = None,
) -> None:
    """Fetch a finished job's backward graph (values and grads on the nodes, edge gradients on the edges)."""
    wanted = [(GraphFormat.svg, svg), (GraphFormat.dot, dot), (GraphFormat.json, json_file)]
    if not any(path for _, path in wanted):
        fail("give --svg FILE, --dot FILE or --json FILE", EXIT_BAD_SPEC)
    with api_client(url, 120.0) as client:
        for fmt, path in wanted:
            if path is None:
                continue
            r = request(client, "GET", f"/v1/jobs/{quote(job_id, safe='')}/graph", params={"format": fmt.value})
            if r.status_code != 200:
                fail(detail_of(r))
            path.write_bytes(r.content)
            err.print(f"wrote {escape(str(path))} ({len(r.content)} bytes)")
