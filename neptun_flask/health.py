"""Public routes: ``/health`` and the model catalog."""
from __future__ import annotations

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
_STARTED = time.monotonic()


@bp.get("/health")
@operation("Liveness and a database round trip", tag="public", public=True,
           responses={200: HealthSchema}, errors=(503,),
           description="503 (the report in `data`) when the database is unreachable.")
def health():
    """Liveness plus a database round trip; 503 when the database is unreachable."""
    report = {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat(),
              "uptime": round(time.monotonic() - _STARTED, 3)}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any driver error means "unreachable" here
        current_app.logger.warning("health check: database unreachable", exc_info=True)
        db.session.rollback()
        return error_response(503, "Database unreachable", data={**report, "status": "error"})
    return jsonify(report)


@bp.get("/api/models")
@bp.get("/models")
@operation("The model catalog", tag="public", public=True, responses={200: ModelsPayloadSchema})
def models():
    """The model catalog, serialised once at startup."""
    return current_app.response_class(current_catalog().payload_json,
                                      mimetype="application/json")
