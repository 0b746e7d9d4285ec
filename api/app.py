"""The Flask (flask-openapi3) application factory: OpenAPI 3.1 at /openapi.json, a CDN-free page at /docs."""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any

from flask import Response, request
from flask_openapi3 import Info, OpenAPI
from pydantic import ValidationError
from redis.exceptions import ClusterError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemory
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from api import auth
from api.routes import OTHER_MEDIA, Service, error, health, jobs
from api.web import web
from services.store import JobStore
from shared.job import ErrorBody
from shared.settings import Settings, get_settings
from worker.queue import make_celery

DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>gradtrace API</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}code,pre{background:#f4f4f4}
h3{margin-bottom:.2em}pre{padding:.5em;overflow:auto;font-size:12px}</style></head>
<body><h1>gradtrace API</h1><p>The machine-readable spec is <a href="openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
<div id="ops">loading...</div>
<script>
fetch("openapi.json").then(r => r.json()).then(spec => {
  const out = [];
  for (const [path, item] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(item)) {
    const params = (op.parameters || []).map(p => `${p.name} (${p.in})`).join(", ");
    const body = op.requestBody ? Object.values(op.requestBody.content)[0].schema.$ref : "";
    const codes = Object.keys(op.responses || {}).join(", ");
    out.push(`<h3><code>${method.toUpperCase()} ${path}</code></h3><p>${op.summary || ""}</p>` +
      (params ? `<p>parameters: ${params}</p>` : "") + (body ? `<p>body: ${body}</p>` : "") + `<p>responses: ${codes}</p>`);
  }
  out.push("<h2>Schemas</h2><pre>" + JSON.stringify(spec.components.schemas, null, 1)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;") + "</pre>");
  document.getElementById("ops").innerHTML = out.join("");
});
</script></body></html>
"""


def validation_error(e: ValidationError) -> Response:
    """422 naming each invalid field by path; the input itself is never echoed back."""
    detail = [
        {"type": err["type"], "msg": err["msg"], "loc": list(err["loc"])}
        for err in e.errors(include_url=False, include_input=False, include_context=False)
    ]
    return error(422, detail)


def openapi_document(app: OpenAPI) -> dict[str, Any]:
    """flask-openapi3's document, made valid (it writes `securitySchemes: null` when there are none) and complete:
    the 200s that also answer in other media types (SVG, DOT, .npy) say so."""
    doc = copy.deepcopy(app.api_doc)
    doc["components"] = {k: v for k, v in doc.get("components", {}).items() if v is not None}
    for path, media in OTHER_MEDIA.items():
        for op in doc["paths"].get(path, {}).values():
            content = op.get("responses", {}).get("200", {}).setdefault("content", {})
            content.update({m: {"schema": {"type": "string", "format": "binary"}} for m in media})
    return doc


def create_app(settings: Settings | None = None) -> OpenAPI:
    """The API app for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    app = OpenAPI(
        __name__,
        info=Info(title="gradtrace", version="0.1.0", description="Trace every forward value and gradient."),
        doc_ui=False,
        validation_error_status=422,
        validation_error_model=ErrorBody,
        validation_error_callback=validation_error,
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    waiters = threading.BoundedSemaphore(max(0, settings.api_threads - 2))
    store = JobStore.from_settings(settings, settings.api_redis_timeout_s)
    app.extensions["gradtrace"] = Service(settings, store, make_celery(settings), waiters)
    auth.install(app, settings.tokens)  # before the routes' own hooks: a request without a token goes no further
    app.register_api(jobs)
    app.register_api(health)
    app.register_blueprint(web)  # the web pages (/, /jobs/<id>) and their assets (/assets/...)
    app.add_url_rule("/openapi.json", "openapi_json", lambda: app.json.response(openapi_document(app)))
    app.add_url_rule("/docs", "docs", lambda: Response(DOCS_HTML, mimetype="text/html"))

    @app.before_request
    def _limit_body() -> Response | None:
        if request.content_length is not None and request.content_length > settings.max_body_bytes:
            return error(413, f"request body over {settings.max_body_bytes} bytes")
        if request.content_length is None and request.method in ("POST", "PUT", "PATCH"):
            # chunked: werkzeug truncates the stream at MAX_CONTENT_LENGTH; more bytes left means too large
            data = request.get_data(cache=True)
            if len(data) >= settings.max_body_bytes and request.environ["wsgi.input"].read(1):
                return error(413, f"request body over {settings.max_body_bytes} bytes")
        return None

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(e: RequestEntityTooLarge) -> Response:
        return error(413, f"request body over {settings.max_body_bytes} bytes")

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> Response:
        if e.response is not None:  # flask-openapi3's validation errors arrive as ready responses
            return e.response  # type: ignore[return-value]
        out = error(e.code or 500, e.description or e.name)
        for name, value in e.get_headers():  # 405's Allow, 413's and others' own headers
            if name.lower() != "content-type":
                out.headers[name] = value
        return out

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    @app.errorhandler(ClusterError)  # a Redis Cluster with a slot unserved, or down
    @app.errorhandler(RedisClusterException)  # ... or none of its nodes reachable
    def _store_down(e: Exception) -> Response:
        app.logger.error("result store unavailable: %s", e)
        return error(503, f"the result store (Redis) is unavailable: {type(e).__name__}")

    @app.errorhandler(RedisOutOfMemory)
    def _store_full(e: RedisOutOfMemory) -> Response:
        # maxmemory with noeviction: writes are refused, reads and deletes still work
        app.logger.error("result store full: %s", e)
        return error(503, "the result store (Redis) is full: delete finished jobs (DELETE /v1/jobs/{id}) or raise "
                          "its maxmemory")

    @app.errorhandler(RecursionError)
    def _too_deep(e: RecursionError) -> Response:
        return error(400, "the request body is nested too deeply")

    @app.errorhandler(Exception)
    def _internal(e: Exception) -> Response:
        """A bug: logged with a reference (and the job id in the path, if any) that the answer repeats."""
        ref = uuid.uuid4().hex[:12]
        job = (request.view_args or {}).get("job_id")
        app.logger.exception("internal error %s on %s %s%s", ref, request.method, request.path,
                             f" (job {job})" if job else "")
        return error(500, f"internal error (reference {ref}): a bug in gradtrace, not in the request; the server's "
                          "log has the details under this reference")

    return app
