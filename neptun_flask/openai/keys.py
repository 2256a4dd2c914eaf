"""API keys: ``/api/users/<id>/api-keys`` to create, list and revoke them, and the lookup
that turns a ``Bearer`` key into its user.

A key is ``nf_`` and 256 random bits (URL-safe base64); only its SHA-256 is stored (a random
key of that size needs no slow hash), with its first characters to tell keys apart. A revoked
key is deleted, so every worker refuses it on its next request.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import Blueprint, current_app, g, jsonify
from sqlalchemy import delete, select, update

from ..auth.sessions import require_session
from ..errors import ApiError
from ..extensions import db
from ..models import ApiKey, utcnow
from ..openapi import operation
from ..schemas import (ApiKeyCreatedSchema, ApiKeyCreateSchema, ApiKeyListSchema, ApiKeySchema,
                       storable_id)
from ..validation import load_body

KEY_PREFIX = "nf_"
#: Characters of a key kept in clear to show which key it is.
SHOWN = 10
#: A key's last use is written at most this often.
TOUCH_INTERVAL = timedelta(minutes=1)

bp = Blueprint("api_keys", __name__, url_prefix="/api/users/<int:user_id>/api-keys")
_create = ApiKeyCreateSchema()
_key = ApiKeySchema()
_keys = ApiKeySchema(many=True)


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_user(key: str) -> tuple[int, int] | None:
    """(user id, key id) of a live key, or None; notes the key's use (at most each minute)."""
    row = db.session.execute(select(ApiKey.id, ApiKey.user_id, ApiKey.last_used_at)
                             .where(ApiKey.key_hash == hash_key(key))).first()
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > TOUCH_INTERVAL:
        db.session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        db.session.commit()
    return row.user_id, row.id


def record_usage(engine, key_id: int, prompt_tokens: int, completion_tokens: int) -> None:
    """Add a reply's tokens to its key's totals."""
    with engine.begin() as connection:
        connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(
            prompt_tokens=ApiKey.prompt_tokens + prompt_tokens,
            completion_tokens=ApiKey.completion_tokens + completion_tokens))


@bp.url_value_preprocessor
def _take_user_id(endpoint, values):
    """Keep the path's user id for the guard below (views do not take it)."""
    g.path_user_id = values.pop("user_id")


@bp.before_request
def _guard():
    """401 without a valid session; 403 when the path names another user. Keys are managed
    with the session cookie only: a key cannot make more keys."""
    require_session()
    if g.path_user_id != g.user_id:
        raise ApiError(403, "Forbidden")


@bp.post("")
@operation("Create an API key (shown only in this answer)", tag="api-keys",
           body=ApiKeyCreateSchema, responses={201: ApiKeyCreatedSchema})
def create_key():
    """A new key; the only time it is shown."""
    data = load_body(_create)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(user_id=g.user_id, name=data["name"], prefix=key[:SHOWN],
                 key_hash=hash_key(key), created_at=utcnow(), prompt_tokens=0,
                 completion_tokens=0)
    db.session.add(row)
    db.session.commit()
    return jsonify({"apiKey": _key.dump(row), "key": key}), 201


@bp.get("")
@operation("The user's API keys (never the keys themselves)", tag="api-keys",
           responses={200: ApiKeyListSchema})
def list_keys():
    """The user's keys (never the keys themselves), newest first."""
    rows = db.session.scalars(select(ApiKey).where(ApiKey.user_id == g.user_id)
                              .order_by(ApiKey.id.desc())).all()
    return jsonify({"apiKeys": _keys.dump(rows)})


@bp.delete("/<int:key_id>")
@operation("Revoke an API key at once", tag="api-keys", responses={204: None}, errors=(404,))
def revoke_key(key_id: int):
    """Revoke a key at once; 404 if it is not one of the user's."""
    deleted = storable_id(key_id) and db.session.execute(
        delete(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == g.user_id)).rowcount
    db.session.commit()
    if not deleted:
        raise ApiError(404, "API key not found")
    return current_app.response_class(status=204)
