"""Chat persistence shared by the chat routes and the streaming relay."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import ApiError
from ..extensions import db
from ..models import Chat, ChatMessage, utcnow
from ..schemas import MAX_ID
from .writer import MessageWriter

_messages = ChatMessage.__table__
_chats = Chat.__table__

# Built once: a statement built per call costs SQLAlchemy several times the query itself, and
# every chat request runs these.
_OWNED_CHAT_ID = select(_chats.c.id).where(_chats.c.id == bindparam("chat_id"),
                                           _chats.c.user_id == bindparam("user_id"))
_INSERT_MESSAGE = insert(_messages)
_NO_REPLY = {"model": None, "finish_reason": None, "prompt_tokens": None,
             "completion_tokens": None}


def check_owned_chat(connection, chat_id: int, user_id: int) -> None:
    """The rule: the chat exists and is the user's; 404 otherwise, the same for both cases."""
    # An id no row can have is missing too (querying it would fail: integer out of range).
    if not 0 < chat_id <= MAX_ID or connection.execute(
            _OWNED_CHAT_ID, {"chat_id": chat_id, "user_id": user_id}).first() is None:
        raise ApiError(404, "Chat not found")


def owned_chat(chat_id: int, user_id: int) -> Chat:
    """The user's chat as an ORM object, or 404."""
    check_owned_chat(db.session, chat_id, user_id)
    return db.session.get(Chat, chat_id)


def init_message_writer(app) -> None:
    """Give the app its message writer (group commit of message inserts, see writer.py)."""
    with app.app_context():
        app.extensions["neptun_message_writer"] = MessageWriter(db.engine, _INSERT_MESSAGE)


def message_writer() -> MessageWriter:
    """The current app's message writer; the relay keeps it past the request context."""
    return current_app.extensions["neptun_message_writer"]


def store_message(writer: MessageWriter, chat_id: int, actor: str, text: str,
                  **reply) -> None:
    """Append a message to a chat; it is committed when this returns. The database moves the
    chat's ``updated_at`` (trigger of migration 0002). A chat deleted since it was checked is
    a 404."""
    now = utcnow()
    try:
        writer.insert({**_NO_REPLY, **reply, "chat_id": chat_id, "actor": actor,
                       "message": text, "created_at": now, "updated_at": now})
    except IntegrityError:
        raise ApiError(404, "Chat not found") from None
