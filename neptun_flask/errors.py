"""The one error contract: every error is JSON ``{statusCode, statusMessage, data?}``."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Headers of an HTTPException worth keeping on the JSON error (405's Allow, 429's Retry-After).
_KEPT_HEADERS = {"allow", "retry-after", "www-authenticate"}

_MESSAGES = {
    400: "Bad Request",
    413: "Request body too large",
    415: "Content-Type must be application/json",
}


class ApiError(Exception):
    """An error a route raises on purpose, with the status and message the client sees."""

    def __init__(self, status: int, message: str, data: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data
        self.headers = headers or {}


def error_response(status: int, message: str, data: Any = None,
                   headers: dict[str, str] | None = None):
    """Build the JSON error response; the only place the error shape is written."""
    body: dict[str, Any] = {"statusCode": status, "statusMessage": message}
    if data is not None:
        body["data"] = data
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _handle_api_error(error: ApiError):
    """Render an ApiError."""
    return error_response(error.status, error.message, error.data, error.headers)


def _handle_http_exception(error: HTTPException):
    """Render werkzeug's HTTP errors (404, 405, 413, 415, 429 ...) as JSON."""
    status = error.code or 500
    headers = {k: v for k, v in error.get_headers() if k.lower() in _KEPT_HEADERS}
    message = _MESSAGES.get(status, error.name)
    return error_response(status, message, headers=headers)


def _handle_unexpected(error: Exception):
    """Log an unexpected exception with its traceback; the client gets a bare 500."""
    log.exception("unhandled error")
    return error_response(500, "Internal Server Error")


def register_error_handlers(app: Flask) -> None:
    """Register the JSON handlers on the app (blueprint handlers never see unmatched URLs)."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
