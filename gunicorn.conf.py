"""gunicorn reads this file from the working directory: bind address, processes and threads come from
gradtrace's Settings (GRADTRACE_BIND, GRADTRACE_API_WORKERS, GRADTRACE_API_THREADS); command-line flags win.

Threaded workers let a long poll (GET /v1/jobs/{id}?wait=S) hold a thread, not a whole process.
Keep-alive is off: with it, gunicorn 27's gthread worker now and then dropped a reused connection
without an answer (seen in about one of four full test runs); a connection per request costs little here."""

from shared.settings import get_settings

_settings = get_settings()
bind = _settings.bind
workers = _settings.api_workers
worker_class = "gthread"
threads = _settings.api_threads
keepalive = 0
