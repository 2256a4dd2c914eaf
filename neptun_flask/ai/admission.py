"""A chat request's one database step before its upstream call: the session, the chat, and the
turn (the user's message and the generation that answers it), checked and stored together with
those of concurrent requests (batching.py).

One step instead of a session lookup and then a chat step: a request waits for the database
once, and a burst of requests moves through in one wave instead of two.
"""
from __future__ import annotations

from sqlalchemy import and_, bindparam
from sqlalchemy.exc import IntegrityError

from ..auth.sessions import accept_session, cookie_hash, is_live, sessions_by_hash
from ..batching import app_batcher
from ..chats.store import CHAT_NOT_FOUND
from ..errors import ApiError
from ..generations.store import (HEAD_COLUMNS, Outcome, Turn, start_turns,
                                 with_newest_message)
from ..models import Chat, Session, utcnow
from ..schemas import storable_id

_UNSTORED = Outcome("new")
_sessions, _chats = Session.__table__, Chat.__table__
# The batch's sessions, each with those of its user's chats that were asked for and their
# newest messages: the session, the owner and the repeated-turn checks in one query.
_ASKED = sessions_by_hash(
    _chats.c.id.label("chat_id"), *HEAD_COLUMNS,
    joined=with_newest_message(_sessions.outerjoin(_chats, and_(
        _chats.c.user_id == _sessions.c.user_id,
        _chats.c.id.in_(bindparam("chat_ids", expanding=True))))))


def admit(token: str | None, chat_id: int | None = None,
          turn: Turn | None = None) -> Outcome | None:
    """401 unless the cookie's session is live (then ``g.user_id`` is set); 404 unless the
    chat, if any, is the user's (the same answer for a missing chat). With a ``turn``, what
    became of it (committed when this returns); a turn without a chat stores nothing."""
    return _admit(token, chat_id, turn)[0]


def admit_chat(token: str | None, chat_id: int) -> int | None:
    """The checks of ``admit`` for a request about a chat; returns the id of the chat's newest
    message (None when it has none): a running generation's, if one runs."""
    return _admit(token, chat_id, None)[1]


def _admit(token: str | None, chat_id: int | None,
           turn: Turn | None) -> tuple[Outcome | None, int | None]:
    """``admit``'s outcome and the chat's newest message id."""
    hashed = cookie_hash(token)
    if hashed is None:
        accept_session(None)  # raises the 401
    try:
        session, owned, outcome, newest = app_batcher("chat_requests")((hashed, chat_id, turn))
    except IntegrityError:
        if turn is None or turn.key is None:
            raise ApiError(404, CHAT_NOT_FOUND) from None  # the chat was deleted meanwhile
        # The same key raced in from another request: now it is found.
        session, owned, outcome, newest = app_batcher("chat_requests")((hashed, chat_id, turn))
    accept_session(session)
    if chat_id is None:
        return (_UNSTORED if turn is not None else None), None
    if not owned:
        raise ApiError(404, CHAT_NOT_FOUND)
    return outcome, newest


def admit_chat_requests(engine, items: list[tuple]) -> list[tuple]:
    """The batched step of ``admit``: for (token hash, chat id or None, turn or None) items,
    each one's live session row (None if missing or expired), whether its chat is that user's,
    its turn's outcome and its chat's newest message id before the turn; the turns of admitted
    items are stored in the same transaction."""
    with engine.begin() as connection:
        found, heads = _asked(connection, items)
        now = utcnow()
        sessions = [row if is_live(row, now) else None
                    for row in (found.get(hashed) for hashed, _, _ in items)]
        asked = [index for index, ((_, chat_id, _), session) in enumerate(zip(items, sessions))
                 if session is not None and chat_id is not None]
        owned = {index: items[index][1] in heads
                 and heads[items[index][1]][0] == sessions[index].user_id for index in asked}
        # In chat order: two batches lock the chats they touch in the same order (no deadlock).
        turning = sorted((index for index in asked if owned[index] and items[index][2] is not None),
                         key=lambda index: items[index][1])
        outcomes = dict(zip(turning, start_turns(
            connection, [(items[index][1], items[index][2]) for index in turning], heads)))
    return [(session, owned.get(index, False), outcomes.get(index),
             _newest(heads.get(chat_id)) if owned.get(index) else None)
            for index, (session, (_, chat_id, _)) in enumerate(zip(sessions, items))]


def _asked(connection, items: list[tuple]) -> tuple[dict, dict]:
    """The items' session rows by token hash, and the heads of the asked chats that belong to
    those sessions' users: chat id -> (owner's user id, newest message as (id, actor, text) or
    None). An id no row can have is asked for no chat."""
    chat_ids = {chat_id for _, chat_id, _ in items if chat_id is not None and storable_id(chat_id)}
    found, heads = {}, {}
    for row in connection.execute(_ASKED, {"hashes": sorted({hashed for hashed, _, _ in items}),
                                           "chat_ids": sorted(chat_ids)}):
        found[row.token_hash] = row
        if row.chat_id is not None:
            newest = row.head_id
            heads[row.chat_id] = (row.user_id, None if newest is None
                                  else (newest, row.head_actor, row.head_text))
    return found, heads


def _newest(head: tuple | None) -> int | None:
    """The newest message id of a chat head (see ``_asked``)."""
    return head[1][0] if head is not None and head[1] is not None else None
