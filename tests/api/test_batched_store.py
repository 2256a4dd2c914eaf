"""Chat admissions (session, chat, turn) of concurrent requests, batched: each caller gets its
own answer, and only what passed both checks is stored: the user message and an empty reply
with its running generation."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from flask import g
from sqlalchemy import select

from neptun_flask.ai.admission import admit
from neptun_flask.errors import ApiError
from neptun_flask.extensions import db
from neptun_flask.generations.store import Turn
from neptun_flask.models import ChatMessage, Generation
from tests.api.helpers import MODEL, create_chat, session_token, set_session_times
from tests.conftest import sign_up


def test_concurrent_admissions_each_get_their_own_answer(app):
    owner, other, lapsed = app.test_client(), app.test_client(), app.test_client()
    owner_id = sign_up(owner, "owner@example.com")
    other_id = sign_up(other, "other@example.com")
    sign_up(lapsed, "lapsed@example.com")
    chats = [create_chat(owner, owner_id, f"chat {i}")["id"] for i in range(5)]
    foreign = create_chat(other, other_id, "not yours")["id"]
    now = datetime.now(UTC)
    set_session_times(app, session_token(lapsed), last_seen_at=now - timedelta(days=30),
                      expires_at=now - timedelta(days=1))
    mine, theirs, expired = (session_token(c) for c in (owner, other, lapsed))
    calls = [(mine, chat_id, f"message {n}") for n in range(6) for chat_id in chats]
    calls += [(mine, foreign, "intruder"), (mine, 10**12, "no such chat"),
              (theirs, chats[0], "not their chat"), ("not-a-token", chats[0], "no session"),
              (expired, chats[0], "expired"), (mine, None, "playground"),
              (theirs, foreign, "their own")]
    outcomes: dict = {}
    start = threading.Barrier(len(calls))

    def run(token: str, chat_id: int | None, text: str) -> None:
        with app.app_context():
            start.wait(10)
            try:
                outcome = admit(token, chat_id, Turn(text, MODEL))
                assert outcome.kind == "new"
                assert (outcome.generation_id is None) == (chat_id is None)
                outcomes[text, chat_id] = ("admitted", g.user_id)
            except ApiError as error:
                outcomes[text, chat_id] = error.status

    threads = [threading.Thread(target=run, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert outcomes.pop(("intruder", foreign)) == 404
    assert outcomes.pop(("no such chat", 10**12)) == 404
    assert outcomes.pop(("not their chat", chats[0])) == 404
    assert outcomes.pop(("no session", chats[0])) == 401
    assert outcomes.pop(("expired", chats[0])) == 401
    assert outcomes.pop(("their own", foreign)) == ("admitted", other_id)
    assert outcomes.pop(("playground", None)) == ("admitted", owner_id)
    assert set(outcomes.values()) == {("admitted", owner_id)} and len(outcomes) == 30
    with app.app_context():
        # Only this test's chats: a server of an earlier test may still write its own.
        ours = ChatMessage.chat_id.in_(chats + [foreign])
        stored = set(db.session.execute(select(ChatMessage.chat_id, ChatMessage.message)
                                        .where(ChatMessage.actor == "user", ours)))
        replies = db.session.execute(select(ChatMessage.chat_id, ChatMessage.message,
                                            Generation.status)
                                     .join(Generation, Generation.id == ChatMessage.id)
                                     .where(ours)).all()
    assert stored == {(chat_id, text) for _, chat_id, text in calls[:30]} | {
        (foreign, "their own")}
    assert sorted(replies) == sorted([(chat_id, "", "running") for chat_id in chats] * 6
                                     + [(foreign, "", "running")])
