"""A chat request's one database step before its upstream call: the session, the chat and the
user's message, checked and stored together with those of concurrent requests (batching.py).

One step instead of a session lookup and then a chat step: a request waits for the database
once, and a burst of requests moves through in one wave instead of two.
"""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from ..auth.sessions import accept_session, cookie_hash, is_live, lookup_sessions
from ..batching import app_batcher
from ..chats.store import CHAT_NOT_FOUND, insert_rows, message_row, owned_pairs
from ..errors import ApiError
from ..models import utcnow

def admit(token: str | None, chat_id: int | None = None, text: str | None = None) -> None:
    """401 unless the cookie's session is live (then ``g.user_id`` is set); 404 unless the
    chat, if any, is the user's (the same answer for a missing chat); the user's message
    ``text``, if any, is committed when this returns."""
    hashed = cookie_hash(token)
    if hashed is None:
        accept_session(None)  # raises the 401
    row = None if chat_id is None or text is None else message_row(chat_id, "user", text)
    try:
        session, owned = app_batcher("chat_requests")((hashed, chat_id, row))
    except IntegrityError:  # the chat was deleted between the check and the insert
        raise ApiError(404, CHAT_NOT_FOUND) from None
    accept_session(session)
    if chat_id is not None and not owned:
        raise ApiError(404, CHAT_NOT_FOUND)


def admit_chat_requests(engine, items: list[tuple]) -> list[tuple]:
    """The batched step of ``admit``: for (token hash, chat id or None, message row or None)
    items, each one's live session row (None if missing or expired) and whether its chat is
    that user's; in the same transaction, the message rows of the admitted items are stored."""
    with engine.begin() as connection:
        found = lookup_sessions(connection, [hashed for hashed, _, _ in items])
        now = utcnow()
        sessions = [row if is_live(row, now) else None
                    for row in (found.get(hashed) for hashed, _, _ in items)]
        asked = [index for index, ((_, chat_id, _), session) in enumerate(zip(items, sessions))
                 if session is not None and chat_id is not None]
        owned = dict(zip(asked, owned_pairs(
            connection, [(items[index][1], sessions[index].user_id) for index in asked])))
        insert_rows(connection, [items[index][2] for index in asked
                                 if owned[index] and items[index][2] is not None])
    return [(session, owned.get(index, False)) for index, session in enumerate(sessions)]
