"""Request parsing: the one place that turns a body or query string into validated data."""
from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import UnsupportedMediaType

from .errors import ApiError


def load_body(schema: Schema) -> Any:
    """Parse the JSON body with ``schema``: 415 if not JSON, 400 if malformed or invalid."""
    if not request.is_json:
        raise UnsupportedMediaType()
    payload = request.get_json(silent=True)
    if payload is None:
        raise ApiError(400, "Malformed JSON body")
    return _load(schema, payload)


def load_args(schema: Schema) -> Any:
    """Validate the query string with ``schema`` (400 with field messages)."""
    return _load(schema, request.args.to_dict())


def _load(schema: Schema, payload: Any) -> Any:
    """Run the schema and map its errors to the JSON error contract."""
    try:
        return schema.load(payload)
    except ValidationError as error:
        raise ApiError(400, "Validation failed", data=error.messages) from None
