"""Logging: one line per request with its request id, and JSON lines (``LOG_FORMAT=json``).

A request's line names its method, route rule (``/api/users/<int:user_id>/chats``, never the
path with its ids), status, duration and request id; never a body, cookie, key, email or query
string. A streamed response is logged when it ends, with its whole duration. The request id
is the client's (or proxy's) ``X-Request-ID`` when it is short and plain, else a new one; it is
returned on every response.
"""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, request
from gunicorn.glogging import Logger as _GunicornLogger

from .config import log_format

log = logging.getLogger("neptun_flask.requests")

#: An acceptable X-Request-ID: a UUID, a proxy's trace id; nothing that could forge a log line.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:=+-]{1,128}")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def json_formatter() -> logging.Formatter:
    """A formatter writing each record as one JSON object (time, level, logger, message, the
    record's extra fields, and a traceback as one string)."""
    from pythonjsonlogger.json import JsonFormatter
    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level",
                                        "name": "logger"})


def configure_logging(level: str, fmt: str) -> None:
    """The root logger's level, and its handler's format (``text`` or ``json``)."""
    if fmt == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(json_formatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format=_TEXT_FORMAT)


class GunicornLogger(_GunicornLogger):
    """gunicorn's logger (``logger_class`` in neptun_flask.serving), in JSON lines when
    ``LOG_FORMAT=json``, so that gunicorn's own lines match the app's."""

    def setup(self, cfg) -> None:
        """gunicorn's setup, then the JSON formatter on its handlers."""
        super().setup(cfg)
        if log_format() == "json":
            formatter = json_formatter()
            for logger in (self.error_log, self.access_log):
                for handler in logger.handlers:
                    handler.setFormatter(formatter)


def request_id() -> str:
    """This request's id: the sent ``X-Request-ID`` if plain and short, else a new one."""
    rid = g.get("request_id")
    if rid is None:
        sent = request.headers.get("X-Request-ID", "")
        rid = g.request_id = sent if _SAFE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
    return rid


def _started() -> None:
    """before_request hook: the clock and the id."""
    g.request_started = time.perf_counter()
    request_id()


def _finished(response):
    """after_request hook: return the id; log the request now, or when its stream ends."""
    rid = request_id()
    response.headers["X-Request-ID"] = rid
    rule = request.url_rule
    fields = {"method": request.method[:16], "route": rule.rule if rule else "<unmatched>",
              "status": response.status_code, "request_id": rid}
    started = g.get("request_started") or time.perf_counter()
    if response.is_streamed:
        response.response = _ClosedThen(response.response, lambda: _log(fields, started))
    else:
        _log(fields, started)
    return response


class _ClosedThen:
    """A streamed body that runs a callback once the server has closed it. (A streamed
    response may be sent ``direct_passthrough``, when the server closes its body, never the
    response, so ``call_on_close`` would not run.) Iterating is the body's own iterator: no
    cost per chunk."""

    __slots__ = ("body", "then")

    def __init__(self, body, then) -> None:
        self.body, self.then = body, then

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        """Close the body, then run the callback (once)."""
        then, self.then = self.then, None
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            if then is not None:
                then()


def _log(fields: dict, started: float) -> None:
    """The request's one line."""
    fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    log.info("%s %s %s %.1fms request_id=%s", fields["method"], fields["route"],
             fields["status"], fields["duration_ms"], fields["request_id"], extra=fields)


def init_app(app: Flask) -> None:
    """Time, identify and log every request."""
    app.before_request(_started)
    app.after_request(_finished)
