"""gunicorn reads this file from the working directory: bind address, processes and threads come from
gradtrace's Settings (GRADTRACE_BIND, GRADTRACE_API_WORKERS, GRADTRACE_API_THREADS); command-line flags win.

Threaded workers let a long poll (GET /v1/jobs/{id}?wait=S) hold a thread, not a whole process.
Keep-alive lasts 75 s (nginx's default), longer than clients keep an idle connection (httpx: 5 s): a client that
reuses a connection just as the server closes it gets a reset. Measured with 48 httpx clients reusing connections
after 1.97-2.03 s idle for 90 s: gunicorn's default of 2 s reset 20 of 2141 requests, 75 s none of 2162 (the drops
once seen in about one of four full test runs). An idle kept-alive connection holds no thread in gthread.
A request whose body may be left unread (a 413, a 401 before the body is looked at) would make gunicorn drop the
connection after answering, once the unread part is over the 64 KiB it drains: such requests (a body over 64 KiB,
or chunked) are answered with `Connection: close` instead."""

from shared.settings import get_settings

_settings = get_settings()
bind = _settings.bind
workers = _settings.api_workers
worker_class = "gthread"
threads = _settings.api_threads
keepalive = 75

DRAIN_BYTES = 64 * 1024  # what gunicorn 27 reads of an unread body before it gives up on the connection


def pre_request(worker: object, req: object) -> None:
    """Close the connection after a request whose unread body gunicorn would not drain (see the module's doc)."""
    headers = dict(req.headers)  # type: ignore[attr-defined]
    length = headers.get("CONTENT-LENGTH", "0")
    if "chunked" in headers.get("TRANSFER-ENCODING", "").lower() or not length.isdigit() or int(length) > DRAIN_BYTES:
        req.must_close = True  # type: ignore[attr-defined]


def post_worker_init(worker: object) -> None:
    """Move the objects alive after start-up (Flask, pydantic's schemas, our modules) out of the cyclic GC's reach:
    the GC stays on, but its full collections during a large POST no longer walk them (json.loads of a 10k-node
    spec measured 18-100 ms with start-up objects in the heap, 17-19 ms with them frozen)."""
    import gc

    gc.collect()
    gc.freeze()
