"""gunicorn reads this file from the working directory: the API's bind address comes from
gradtrace's Settings (GRADTRACE_BIND), unless --bind is given on the command line."""

from shared.settings import get_settings

bind = get_settings().bind
