"""Chat persistence shared by the chat routes and the streaming relay."""
from __future__ import annotations

from sqlalchemy import select, update

from ..errors import ApiError
from ..extensions import db
from ..models import Chat, ChatMessage, utcnow
from ..schemas import MAX_ID


def owned_chat(chat_id: int, user_id: int) -> Chat:
    """The user's chat, or 404 (another user's chat looks exactly like a missing one)."""
    # An id no row can have is missing too (querying it would fail: integer out of range).
    chat = None if not 0 < chat_id <= MAX_ID else db.session.scalar(
        select(Chat).where(Chat.id == chat_id, Chat.user_id == user_id))
    if chat is None:
        raise ApiError(404, "Chat not found")
    return chat


def add_message(chat_id: int, actor: str, text: str, **reply) -> None:
    """Append a message to a chat and move the chat's ``updated_at``; commits."""
    now = utcnow()
    db.session.add(ChatMessage(chat_id=chat_id, actor=actor, message=text,
                               created_at=now, updated_at=now, **reply))
    db.session.execute(update(Chat).where(Chat.id == chat_id).values(updated_at=now))
    db.session.commit()
