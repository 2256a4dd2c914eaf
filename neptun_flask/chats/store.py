"""Chat persistence shared by the chat routes, admission and generations."""
from __future__ import annotations

from sqlalchemy import insert

from ..errors import ApiError
from ..extensions import db
from ..models import Chat, ChatMessage, utcnow
from ..schemas import storable_id

_messages = ChatMessage.__table__
_chats = Chat.__table__

# Built once: a statement built per call costs SQLAlchemy several times the query itself, and
# every chat request runs these.
_INSERT_MESSAGE = insert(_messages)
#: The one answer for a chat that is missing or not the user's.
CHAT_NOT_FOUND = "Chat not found"
_NO_REPLY = {"model": None, "finish_reason": None, "prompt_tokens": None,
             "completion_tokens": None}


def insert_rows(connection, rows: list[dict]) -> None:
    """Insert message rows (built by ``message_row``) in the connection's transaction."""
    if rows:
        connection.execute(_INSERT_MESSAGE, rows)


def owned_chat(chat_id: int, user_id: int) -> Chat:
    """The user's chat as an ORM object, or 404 (one query)."""
    chat = db.session.get(Chat, chat_id) if storable_id(chat_id) else None
    if chat is None or chat.user_id != user_id:
        raise ApiError(404, CHAT_NOT_FOUND)
    return chat


def message_row(chat_id: int, actor: str, text: str, **reply) -> dict:
    """A chat_messages row; inserting it moves the chat's ``updated_at`` (the trigger of
    migration 0002)."""
    now = utcnow()
    return {**_NO_REPLY, **reply, "chat_id": chat_id, "actor": actor, "message": text,
            "created_at": now, "updated_at": now}
