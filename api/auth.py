"""Optional bearer tokens (GRADTRACE_API_TOKENS): every /v1 route needs one when they are set; health routes, the
page and its assets stay open (the page asks for a token and sends it in the `gradtrace_token` cookie)."""

from __future__ import annotations

import hmac

from flask import Flask, Response, g, request

from api.routes import error
from services.quota import owner_id

COOKIE = "gradtrace_token"


def presented_token() -> str | None:
    """The token of this request: `Authorization: Bearer <token>`, else the page's cookie."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def install(app: Flask, tokens: frozenset[str]) -> None:
    """Check the token of every /v1 request when `tokens` is not empty; `g.owner` names whose request it is."""

    @app.before_request
    def _authenticate() -> Response | None:
        g.owner = None
        if not tokens or not (request.path == "/v1" or request.path.startswith("/v1/")):
            return None
        token = presented_token()
        if token is None or not any(hmac.compare_digest(token.encode(), t.encode()) for t in tokens):
            out = error(401, "this API needs a token: send `Authorization: Bearer <token>` (one of GRADTRACE_API_TOKENS)"
                        if token is None else "the token is not one of this API's tokens")
            out.headers["WWW-Authenticate"] = 'Bearer realm="gradtrace"'
            return out
        g.owner = owner_id(token)
        return None
