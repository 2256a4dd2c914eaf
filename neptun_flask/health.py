"""Public routes: ``/health`` and the model catalog."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .catalog import current_catalog
from .errors import error_response
from .extensions import db
from .openapi import operation
from .schemas import HealthSchema, ModelsPayloadSchema

bp = Blueprint("public", __name__)
log = logging.getLogger(__name__)
#: Seconds /health waits for the database before answering 503.
HEALTH_SECONDS = 4.0
_PING = text("SELECT 1")
_STARTED = time.monotonic()


@bp.get("/health")
@operation("Liveness and a database round trip", tag="public", public=True,
           responses={200: HealthSchema}, errors=(503,),
           description="503 (the report in `data`) when the database is unreachable.")
def health():
    """Liveness plus a database round trip; 503 when the database is unreachable."""
    report = {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat(),
              "uptime": round(time.monotonic() - _STARTED, 3)}
    if not _database_answers(db.engine):
        return error_response(503, "Database unreachable", data={**report, "status": "error"})
    return jsonify(report)


def _database_answers(engine) -> bool:
    """A round trip within HEALTH_SECONDS, in a thread (a greenlet under gevent) of its own:
    a database that went silent must not hang the health check for the statement bound."""
    answered = []

    def ping():
        try:
            with engine.connect() as connection:
                connection.execute(_PING)
            answered.append(True)
        except Exception as error:  # noqa: BLE001 - any driver error means "unreachable"
            log.warning("health check: database unreachable (%s)", type(error).__name__)

    checker = threading.Thread(target=ping, name="health", daemon=True)
    checker.start()
    checker.join(HEALTH_SECONDS)
    return bool(answered)


@bp.get("/api/models")
@bp.get("/models")
@operation("The model catalog", tag="public", public=True, responses={200: ModelsPayloadSchema})
def models():
    """The model catalog, serialised once at startup."""
    return current_app.response_class(current_catalog().payload_json,
                                      mimetype="application/json")
