"""The service's own chat page: the Vite build of ``web/`` (``web/dist``), served at ``/``.

``index.html`` is never cached and carries a strict Content-Security-Policy (scripts, styles,
images and requests from this origin only: the page uses no inline script or third-party
origin). Everything under ``assets/`` has a content hash in its name, so it is cached for a
year. Without a build, ``/`` is a 503 in the error shape saying how to build it; the API does
not depend on the page.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, send_from_directory

from .errors import error_response
from .openapi import operation

bp = Blueprint("web", __name__)

#: ``web/dist`` beside the package (a source checkout, as the README runs it).
DEFAULT_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
BUILD_COMMAND = "cd web && npm ci && npm run build"
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self'",
    "connect-src 'self'", "font-src 'self'", "object-src 'none'", "base-uri 'none'",
    "form-action 'self'", "frame-ancestors 'none'"))
ONE_YEAR = 365 * 24 * 3600


def _dist() -> Path:
    return Path(current_app.config.get("NEPTUN_WEB_DIST") or DEFAULT_DIST)


@bp.get("/")
@operation("The chat page (HTML)", tag="page", public=True, errors=(503,),
           responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
           description="503 with the command that builds it when the page is not built.")
def index():
    """The page; 503 when it has not been built."""
    dist = _dist()
    if not (dist / "index.html").is_file():
        return error_response(503, f"The web page is not built: run `{BUILD_COMMAND}` "
                                   "and restart the service. The API works without it.")
    response = send_from_directory(dist, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.get("/assets/<path:filename>")
@operation("A file of the chat page (hashed name, cached for a year)", tag="page",
           public=True, errors=(404,),
           responses={200: {"content": {"*/*": {"schema": {"type": "string"}}}}})
def asset(filename: str):
    """A hashed build file (404 in the error shape when there is none)."""
    response = send_from_directory(_dist() / "assets", filename, max_age=ONE_YEAR)
    response.headers["Cache-Control"] = f"public, max-age={ONE_YEAR}, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
