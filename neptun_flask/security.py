"""Response headers every response carries (nosniff, no referrer, HSTS over secure cookies,
no-store on authenticated JSON)."""
from __future__ import annotations

from flask import Flask, current_app, g, request

#: One year; sent only when the session cookie is Secure (the service is served over TLS).
HSTS = "max-age=31536000"


def _authenticated() -> bool:
    """The request carried credentials, or the response hands some out."""
    return bool(g.get("user_id") is not None or request.authorization is not None
                or current_app.config["SESSION_COOKIE_NAME"] in request.cookies)


def security_headers(response):
    """after_request hook: the headers; a response's own Cache-Control (a stream's no-cache)
    is kept."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if current_app.config["SESSION_COOKIE_SECURE"]:
        headers.setdefault("Strict-Transport-Security", HSTS)
    if ("Cache-Control" not in headers and response.mimetype == "application/json"
            and ("Set-Cookie" in headers or _authenticated())):
        headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Register the hooks."""
    app.after_request(security_headers)
