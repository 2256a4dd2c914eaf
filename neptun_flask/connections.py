"""The request's one database connection for the plain queries of a request (the session
guard, the chat check): checked out of the pool on first use, returned at the end of the
request, or earlier by ``release_connection`` (a chat request returns it before calling the
upstream, which may take minutes)."""
from __future__ import annotations

from flask import g
from sqlalchemy.engine import Connection

from .extensions import db


def request_connection() -> Connection:
    """The request's connection, checked out on first use."""
    connection = g.get("_neptun_connection")
    if connection is None:
        connection = g._neptun_connection = db.engine.connect()
    return connection


def release_connection(_error: BaseException | None = None) -> None:
    """Return the request's connection to the pool, if it took one (also the teardown hook)."""
    connection = g.pop("_neptun_connection", None)
    if connection is not None:
        connection.close()
