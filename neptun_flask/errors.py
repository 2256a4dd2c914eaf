"""The one error contract: every error is JSON ``{statusCode, statusMessage, data?}``; under
``/v1`` (the OpenAI-compatible API) it is OpenAI's ``{"error": {message, type, param, code}}``,
which its client libraries read."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, has_request_context, jsonify, request
from sqlalchemy import exc
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


#: OpenAI's error types by status.
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                 403: "permission_error", 404: "not_found_error", 409: "conflict_error",
                 413: "invalid_request_error", 415: "invalid_request_error",
                 429: "rate_limit_error"}
OPENAI_PREFIX = "/v1/"


def error_response(status: int, message: str, data: Any = None,
                   headers: dict[str, str] | None = None):
    """Build the JSON error response; the only place the error shape is written."""
    if has_request_context() and request.path.startswith(OPENAI_PREFIX):
        body: dict[str, Any] = openai_error(status, message, data)
    else:
        body = {"statusCode": status, "statusMessage": message}
        if data is not None:
            body["data"] = data
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def openai_error(status: int, message: str, data: Any = None) -> dict:
    """OpenAI's error object; validation details name the first field as ``param``."""
    param = code = None
    if isinstance(data, dict) and data:
        code = data.get("code") if isinstance(data.get("code"), str) else None
        fields = [key for key in data if key != "code"]
        if fields:
            param = str(fields[0])
            message = f"{message}: {param}: {_first_message(data[param])}"
    return {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "api_error"),
                      "param": param, "code": code}}


def _first_message(detail: Any) -> str:
    """The first message of marshmallow's nested error messages."""
    while isinstance(detail, (dict, list)) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return str(detail)


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


#: The database is away, not the request wrong: a refused, reset or silent connection, the pool
#: exhausted past its timeout (and a batched step that did not finish in time, below).
DATABASE_AWAY = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError,
                 exc.TimeoutError)


def _handle_database_away(error: Exception):
    """503 "Database unavailable"; the log names the error's type only."""
    log.warning("database unavailable: %s", type(error).__name__)
    return error_response(503, "Database unavailable")


def register_error_handlers(app: Flask) -> None:
    """Register the JSON handlers on the app (blueprint handlers never see unmatched URLs)."""
    app.register_error_handler(ApiError, _handle_api_error)
    from .batching import BatchTimeout   # batching uses the metrics, which use this module
    for kind in (*DATABASE_AWAY, BatchTimeout):
        app.register_error_handler(kind, _handle_database_away)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
