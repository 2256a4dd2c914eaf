"""Response headers every response carries (nosniff, no referrer, HSTS over secure cookies,
no-store on authenticated JSON); cross-origin front ends (``CORS_ORIGINS``, with
credentials) and the Origin check of cookie-authenticated writes (CSRF defence in depth)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, g, request

from .errors import error_response

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


#: Response headers a cross-origin client may read: the stream protocols' markers, the
#: rate-limit ones, the request id.
EXPOSED_HEADERS = ["x-vercel-ai-data-stream", "x-vercel-ai-ui-message-stream", "Retry-After",
                   "X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                   "X-RateLimit-Reset"]
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _preflight():
    """before_request hook (app-wide, so before any blueprint's session guard): answer a CORS
    preflight at once; flask-cors adds its headers for an allowed origin."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return current_app.make_default_options_response()
    return None


def _same_site_origin(origin: str) -> bool:
    """The Origin is the service's own: its host is the request's ``Host`` (or the proxy's
    ``X-Forwarded-Host``; neither can be set by a cross-site page without a preflight)."""
    host = urlsplit(origin).netloc.lower()
    if not host:
        return False
    forwarded = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip().lower()
    return host in (request.host.lower(), forwarded)


def _check_origin():
    """before_request hook: refuse a cookie-authenticated write sent from another origin than
    the service's own or an allowed one (403). Bearer-authenticated requests, and requests
    without an Origin (not from a browser), pass."""
    if request.method not in _UNSAFE:
        return None
    if current_app.config["SESSION_COOKIE_NAME"] not in request.cookies:
        return None
    if request.headers.get("Authorization", "")[:7].lower() == "bearer ":
        return None
    origin = request.headers.get("Origin")
    if (origin is None or origin in current_app.config["CORS_ORIGINS"]
            or _same_site_origin(origin)):
        return None
    return error_response(403, "Cross-origin request refused")


def init_app(app: Flask) -> None:
    """Register the hooks; CORS only with an allow-list."""
    app.after_request(security_headers)
    app.before_request(_check_origin)
    origins = app.config["CORS_ORIGINS"]
    if origins:
        from flask_cors import CORS
        app.before_request_funcs.setdefault(None, []).insert(0, _preflight)
        CORS(app, origins=origins, supports_credentials=True, expose_headers=EXPOSED_HEADERS,
             max_age=600, vary_header=True)
