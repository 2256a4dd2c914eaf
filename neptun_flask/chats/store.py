"""Chat persistence shared by the chat routes and the streaming relay."""
from __future__ import annotations

from sqlalchemy import insert, select, update

from ..errors import ApiError
from ..extensions import db
from ..models import Chat, ChatMessage, utcnow
from ..schemas import MAX_ID

_messages = ChatMessage.__table__
_chats = Chat.__table__


def _ownership(chat_id: int, user_id: int):
    """The rule: the chat exists and is the user's. 404 otherwise, the same for both cases."""
    # An id no row can have is missing too (querying it would fail: integer out of range).
    if not 0 < chat_id <= MAX_ID:
        raise ApiError(404, "Chat not found")
    return (Chat.id == chat_id, Chat.user_id == user_id)


def owned_chat(chat_id: int, user_id: int) -> Chat:
    """The user's chat as an ORM object, or 404."""
    chat = db.session.scalar(select(Chat).where(*_ownership(chat_id, user_id)))
    if chat is None:
        raise ApiError(404, "Chat not found")
    return chat


def check_owned_chat(chat_id: int, user_id: int) -> None:
    """404 unless the user owns the chat (one cheap query: the chat path runs it per request)."""
    if db.session.scalar(select(_chats.c.id).where(*_ownership(chat_id, user_id))) is None:
        raise ApiError(404, "Chat not found")


def _insert_message(connection, chat_id: int, actor: str, text: str, **reply) -> None:
    """Append a message to a chat and move the chat's ``updated_at`` (no commit)."""
    now = utcnow()
    connection.execute(insert(_messages).values(chat_id=chat_id, actor=actor, message=text,
                                                created_at=now, updated_at=now, **reply))
    connection.execute(update(_chats).where(_chats.c.id == chat_id).values(updated_at=now))


def add_message(chat_id: int, actor: str, text: str, **reply) -> None:
    """Append a message in the request's database session and commit."""
    _insert_message(db.session, chat_id, actor, text, **reply)
    db.session.commit()


def record_message(engine, chat_id: int, actor: str, text: str, **reply) -> None:
    """Append a message in a short transaction of its own (no app context needed): the relay
    stores a reply after its request context is gone."""
    with engine.begin() as connection:
        _insert_message(connection, chat_id, actor, text, **reply)
