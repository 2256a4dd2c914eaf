"""Chat persistence shared by the chat routes and the streaming relay."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from ..batching import Batcher
from ..errors import ApiError
from ..extensions import db
from ..models import Chat, ChatMessage, utcnow
from ..schemas import MAX_ID

_messages = ChatMessage.__table__
_chats = Chat.__table__

# Built once: a statement built per call costs SQLAlchemy several times the query itself, and
# every chat request runs these.
_CHAT_OWNERS = select(_chats.c.id, _chats.c.user_id).where(
    _chats.c.id.in_(bindparam("chat_ids", expanding=True)))
_INSERT_MESSAGE = insert(_messages)
_NO_REPLY = {"model": None, "finish_reason": None, "prompt_tokens": None,
             "completion_tokens": None}


def _owned(connection, pairs: list[tuple[int, int]]) -> list[bool]:
    """The rule, for (chat_id, user_id) pairs: the chat exists and is the user's. An id no row
    can have is missing too (querying it would fail: integer out of range)."""
    ids = sorted({chat_id for chat_id, _ in pairs if 0 < chat_id <= MAX_ID})
    found = ({tuple(row) for row in connection.execute(_CHAT_OWNERS, {"chat_ids": ids})}
             if ids else set())
    return [pair in found for pair in pairs]


def check_owned_chat(chat_id: int, user_id: int) -> None:
    """404 unless the chat exists and is the user's (the same answer for both cases); checked
    together with the concurrent requests' chats."""
    if not _batchers()["owned_chats"]((chat_id, user_id)):
        raise ApiError(404, "Chat not found")


def owned_chat(chat_id: int, user_id: int) -> Chat:
    """The user's chat as an ORM object, or 404."""
    if not _owned(db.session, [(chat_id, user_id)])[0]:
        raise ApiError(404, "Chat not found")
    return db.session.get(Chat, chat_id)


def init_batchers(app) -> None:
    """Give the app its batched chat checks and message inserts (see batching.py)."""
    with app.app_context():
        engine = db.engine

    def owned(pairs: list[tuple[int, int]]) -> list[bool]:
        with engine.connect() as connection:
            return _owned(connection, pairs)

    def insert_messages(rows: list[dict]) -> list[None]:
        with engine.begin() as connection:
            connection.execute(_INSERT_MESSAGE, rows)
        return [None] * len(rows)

    app.extensions.setdefault("neptun_batchers", {}).update(
        owned_chats=Batcher(owned), chat_messages=Batcher(insert_messages))


def _batchers() -> dict[str, Batcher]:
    """The current app's batchers."""
    return current_app.extensions["neptun_batchers"]


def message_inserter() -> Batcher:
    """The current app's batched message insert; the relay keeps it past the request."""
    return _batchers()["chat_messages"]


def store_message(inserter: Batcher, chat_id: int, actor: str, text: str, **reply) -> None:
    """Append a message to a chat; it is committed when this returns, in one transaction with
    the concurrent requests' messages. The database moves the chat's ``updated_at`` (trigger
    of migration 0002). A chat deleted since it was checked is a 404."""
    now = utcnow()
    try:
        inserter({**_NO_REPLY, **reply, "chat_id": chat_id, "actor": actor, "message": text,
                  "created_at": now, "updated_at": now})
    except IntegrityError:
        raise ApiError(404, "Chat not found") from None
