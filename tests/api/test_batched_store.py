"""Chat admissions and message inserts of concurrent requests, batched: each caller gets its
own answer, and everything owned is stored."""
from __future__ import annotations

import threading

from sqlalchemy import select

from neptun_flask.chats.store import admit_to_chat
from neptun_flask.errors import ApiError
from neptun_flask.extensions import db
from neptun_flask.models import ChatMessage
from tests.api.helpers import create_chat
from tests.conftest import sign_up


def test_concurrent_admissions_each_get_their_own_answer(app):
    owner, other = app.test_client(), app.test_client()
    owner_id = sign_up(owner, "owner@example.com")
    other_id = sign_up(other, "other@example.com")
    chats = [create_chat(owner, owner_id, f"chat {i}")["id"] for i in range(5)]
    foreign = create_chat(other, other_id, "not yours")["id"]
    calls = [(chat_id, f"message {n}") for n in range(6) for chat_id in chats]
    calls.append((foreign, "intruder"))
    calls.append((10**12, "no such chat"))
    outcomes: dict = {}
    start = threading.Barrier(len(calls))

    def admit(chat_id: int, text: str) -> None:
        with app.app_context():
            start.wait(10)
            try:
                admit_to_chat(chat_id, owner_id, text)
                outcomes[text, chat_id] = "stored"
            except ApiError as error:
                outcomes[text, chat_id] = error.status

    threads = [threading.Thread(target=admit, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert outcomes.pop(("intruder", foreign)) == 404
    assert outcomes.pop(("no such chat", 10**12)) == 404
    assert set(outcomes.values()) == {"stored"} and len(outcomes) == 30
    with app.app_context():
        stored = set(db.session.execute(select(ChatMessage.chat_id, ChatMessage.message)))
    assert stored == {(chat_id, text) for chat_id, text in calls[:30]}
