"""Chat and chat-message routes: CRUD, ordering, ownership (403/404) and cascading deletes."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import delete, func, select

from neptun_flask.chats.store import insert_rows, message_row
from neptun_flask.extensions import db
from neptun_flask.models import Chat, ChatMessage, Session, User
from tests.api.helpers import (MODEL, ROUTE_IDS, assert_error, create_chat, session_token,
                               user_routes)
from tests.conftest import sign_up


def add_message(chat_id: int, actor: str, text: str, **reply) -> None:
    """Store a message row (inside an app context)."""
    with db.engine.begin() as connection:
        insert_rows(connection, [message_row(chat_id, actor, text, **reply)])

CHAT_KEYS = {"id", "name", "model", "neptun_user_id", "created_at", "updated_at"}
MESSAGE_KEYS = {"id", "message", "actor", "created_at", "model", "finish_reason", "usage",
                "status"}


def count(app, model, *where) -> int:
    """Rows of ``model`` matching ``where``."""
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def other(app):
    """A second signed-up user: (client, user id)."""
    client = app.test_client()
    return client, sign_up(client, "other@example.com")


def test_create_chat(client, user_id):
    """Creating a chat answers 201 with the full chat document."""
    response = client.post(f"/api/users/{user_id}/chats", json={"model": MODEL, "name": "abc"})
    assert response.status_code == 201
    chat = response.get_json()["chat"]
    assert set(chat) == CHAT_KEYS
    assert isinstance(chat["id"], int)
    assert (chat["name"], chat["model"], chat["neptun_user_id"]) == ("abc", MODEL, user_id)
    for key in ("created_at", "updated_at"):
        assert datetime.fromisoformat(chat[key]).tzinfo is not None


@pytest.mark.parametrize(("body", "field"), [
    ({"model": MODEL, "name": "ab"}, "name"),
    ({"model": MODEL, "name": ""}, "name"),
    ({"model": MODEL}, "name"),
    ({"name": "valid name"}, "model"),
    ({"model": "nope/not-a-model", "name": "valid name"}, "model"),
    ({"model": "Qwen2.5-72B-Instruct", "name": "valid name"}, "model"),
    ({"model": 5, "name": "valid name"}, "model"),
    ({"model": MODEL, "name": ["x" * 5]}, "name"),
], ids=["short-name", "empty-name", "no-name", "no-model", "unknown-model", "bare-name-model",
        "model-not-string", "name-not-string"])
def test_create_chat_invalid_is_400(app, client, user_id, body, field):
    """Invalid chat bodies get 400 with field messages and create nothing."""
    error = assert_error(client.post(f"/api/users/{user_id}/chats", json=body), 400)
    assert error["data"][field]
    assert count(app, Chat) == 0


def test_list_chats_ordering(client, user_id):
    """Chats list by updated_at desc by default; order_by and order are honoured."""
    first = create_chat(client, user_id, "first")
    second = create_chat(client, user_id, "second")
    third = create_chat(client, user_id, "third")
    client.patch(f"/api/users/{user_id}/chats/{first['id']}", json={"name": "first again"})

    def names(query: str = "") -> list[str]:
        """Chat names in the order the API lists them."""
        response = client.get(f"/api/users/{user_id}/chats{query}")
        assert response.status_code == 200
        chats = response.get_json()["chats"]
        assert all(set(chat) == CHAT_KEYS for chat in chats)
        return [chat["name"] for chat in chats]

    assert names() == ["first again", "third", "second"]
    assert names("?order_by=updated_at&order=desc") == names()
    assert names("?order_by=updated_at&order=asc") == ["second", "third", "first again"]
    assert names("?order_by=created_at") == ["third", "second", "first again"]
    assert names("?order_by=created_at&order=asc") == ["first again", "second", "third"]
    assert names("?order=asc") == ["second", "third", "first again"]
    assert {second["id"], third["id"]} <= {chat["id"] for chat in
                                          client.get(f"/api/users/{user_id}/chats")
                                          .get_json()["chats"]}


@pytest.mark.parametrize("query", ["?order_by=name", "?order=up", "?order_by=id&order=asc"])
def test_list_chats_bad_query_is_400(client, user_id, query):
    """Unknown order_by/order values are a 400 with field messages."""
    error = assert_error(client.get(f"/api/users/{user_id}/chats{query}"), 400)
    assert error["data"]


def test_list_chats_only_own(client, user_id, other):
    """A user never sees another user's chats; a new user has none."""
    other_client, other_id = other
    create_chat(other_client, other_id, "theirs")
    assert client.get(f"/api/users/{user_id}/chats").get_json() == {"chats": []}


def test_get_and_rename_chat(client, user_id):
    """GET returns {chat}; PATCH renames, bumps updated_at and returns {chat}."""
    chat = create_chat(client, user_id, "before")
    got = client.get(f"/api/users/{user_id}/chats/{chat['id']}")
    assert got.status_code == 200
    assert got.get_json() == {"chat": chat}
    renamed = client.patch(f"/api/users/{user_id}/chats/{chat['id']}", json={"name": "after"})
    assert renamed.status_code == 200
    body = renamed.get_json()["chat"]
    assert set(body) == CHAT_KEYS
    assert body["name"] == "after"
    assert body["created_at"] == chat["created_at"]
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(chat["updated_at"])
    assert client.get(f"/api/users/{user_id}/chats/{chat['id']}").get_json() == {"chat": body}


@pytest.mark.parametrize("body", [{"name": "ab"}, {}, {"name": None}],
                         ids=["short", "missing", "null"])
def test_rename_chat_invalid_is_400(client, user_id, body):
    """A rename to a name under 3 characters (or none) is 400 and keeps the old name."""
    chat = create_chat(client, user_id, "keep me")
    error = assert_error(client.patch(f"/api/users/{user_id}/chats/{chat['id']}", json=body), 400)
    assert error["data"]["name"]
    assert client.get(f"/api/users/{user_id}/chats/{chat['id']}").get_json()["chat"]["name"] \
        == "keep me"


def test_delete_chat(app, client, user_id):
    """DELETE on one chat is 204, removes its messages, and the chat is then 404."""
    chat = create_chat(client, user_id)
    with app.app_context():
        add_message(chat["id"], "user", "hello")
    response = client.delete(f"/api/users/{user_id}/chats/{chat['id']}")
    assert response.status_code == 204
    assert response.get_data() == b""
    assert_error(client.get(f"/api/users/{user_id}/chats/{chat['id']}"), 404)
    assert count(app, ChatMessage) == 0


def test_bulk_delete_leaves_other_users_chats(app, client, user_id, other):
    """DELETE with chat_ids removes the user's listed chats only; other users' ids are ignored."""
    other_client, other_id = other
    mine = [create_chat(client, user_id, f"mine {i}") for i in range(3)]
    theirs = create_chat(other_client, other_id, "theirs")
    with app.app_context():
        add_message(mine[0]["id"], "user", "bye")
        add_message(theirs["id"], "user", "stay")
    response = client.delete(f"/api/users/{user_id}/chats",
                             json={"chat_ids": [mine[0]["id"], mine[1]["id"], theirs["id"]]})
    assert response.status_code == 204
    remaining = client.get(f"/api/users/{user_id}/chats").get_json()["chats"]
    assert [chat["id"] for chat in remaining] == [mine[2]["id"]]
    assert other_client.get(f"/api/users/{other_id}/chats/{theirs['id']}").status_code == 200
    assert count(app, ChatMessage, ChatMessage.chat_id == mine[0]["id"]) == 0
    assert count(app, ChatMessage, ChatMessage.chat_id == theirs["id"]) == 1


@pytest.mark.parametrize("body", [
    {}, {"chat_ids": []}, {"chat_ids": "1"}, {"chat_ids": ["1"]}, {"chat_ids": [1.5]},
    {"chat_ids": [0]}, {"chat_ids": [-1]}, {"chat_ids": [2**31]}, {"chat_ids": [10**20]},
], ids=["missing", "empty", "not-list", "not-ints", "float", "zero", "negative", "int32-overflow",
        "int64-overflow"])
def test_bulk_delete_invalid_is_400(client, user_id, body):
    """chat_ids must be a non-empty list of integers."""
    create_chat(client, user_id)
    error = assert_error(client.delete(f"/api/users/{user_id}/chats", json=body), 400)
    assert error["data"]["chat_ids"]
    assert len(client.get(f"/api/users/{user_id}/chats").get_json()["chats"]) == 1


def test_messages_oldest_first(app, client, user_id):
    """Messages list oldest first with usage as {promptTokens, completionTokens} or null."""
    chat = create_chat(client, user_id)
    with app.app_context():
        add_message(chat["id"], "user", "What is 2+2?")
        add_message(chat["id"], "assistant", "4", model=MODEL, finish_reason="stop",
                    prompt_tokens=12, completion_tokens=1)
        add_message(chat["id"], "user", "And 3+3?")
        add_message(chat["id"], "assistant", "6", model=MODEL, finish_reason="length")
    response = client.get(f"/api/users/{user_id}/chats/{chat['id']}/messages")
    assert response.status_code == 200
    messages = response.get_json()["chatMessages"]
    assert all(set(message) == MESSAGE_KEYS for message in messages)
    assert [(m["actor"], m["message"]) for m in messages] == [
        ("user", "What is 2+2?"), ("assistant", "4"), ("user", "And 3+3?"), ("assistant", "6")]
    assert [m["id"] for m in messages] == sorted(m["id"] for m in messages)
    assert messages[0]["usage"] is None and messages[0]["model"] is None
    assert messages[0]["finish_reason"] is None
    assert messages[1]["usage"] == {"promptTokens": 12, "completionTokens": 1,
                                    "estimated": False}
    assert (messages[1]["model"], messages[1]["finish_reason"]) == (MODEL, "stop")
    assert messages[3]["usage"] is None and messages[3]["finish_reason"] == "length"
    assert datetime.fromisoformat(messages[0]["created_at"]).tzinfo is not None


def test_messages_of_empty_chat(client, user_id):
    """A chat without messages lists an empty array."""
    chat = create_chat(client, user_id)
    response = client.get(f"/api/users/{user_id}/chats/{chat['id']}/messages")
    assert response.get_json() == {"chatMessages": []}


def test_new_message_moves_chat_to_top(app, client, user_id):
    """Adding a message bumps the chat's updated_at, so it lists first."""
    older = create_chat(client, user_id, "older")
    create_chat(client, user_id, "newer")
    with app.app_context():
        add_message(older["id"], "user", "ping")
    chats = client.get(f"/api/users/{user_id}/chats").get_json()["chats"]
    assert [chat["name"] for chat in chats] == ["older", "newer"]


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
def test_other_users_path_is_403(app, client, user_id, other, index):
    """Naming another user's id in the path is 403 and touches nothing of theirs."""
    other_client, other_id = other
    theirs = create_chat(other_client, other_id, "theirs")
    method, path, body = user_routes(other_id, theirs["id"])[index]
    assert_error(getattr(client, method)(path, json=body), 403)
    assert other_client.get(f"/api/users/{other_id}/chats").get_json()["chats"] == [theirs]


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("get", "", None), ("patch", "", {"name": "stolen"}), ("delete", "", None),
    ("get", "/messages", None),
], ids=["get", "rename", "delete", "messages"])
def test_other_users_chat_looks_missing(client, user_id, other, method, suffix, body):
    """Another user's chat answers exactly like a chat that does not exist."""
    other_client, other_id = other
    theirs = create_chat(other_client, other_id, "theirs")
    call = getattr(client, method)
    foreign = call(f"/api/users/{user_id}/chats/{theirs['id']}{suffix}", json=body)
    missing = call(f"/api/users/{user_id}/chats/{theirs['id'] + 10_000}{suffix}", json=body)
    assert_error(foreign, 404)
    assert foreign.status_code == missing.status_code
    assert foreign.get_data() == missing.get_data()
    assert other_client.get(f"/api/users/{other_id}/chats/{theirs['id']}").get_json() \
        == {"chat": theirs}


@pytest.mark.parametrize("chat_id", [0, 2**31, 2**63, 10**20],
                         ids=["zero", "int32-overflow", "int64-overflow", "huge"])
@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("get", "", None), ("patch", "", {"name": "renamed"}), ("delete", "", None),
    ("get", "/messages", None),
], ids=["get", "rename", "delete", "messages"])
def test_impossible_chat_id_looks_missing(client, user_id, chat_id, method, suffix, body):
    """A chat id no row can have is an ordinary 404, never a database error."""
    call = getattr(client, method)
    impossible = call(f"/api/users/{user_id}/chats/{chat_id}{suffix}", json=body)
    missing = call(f"/api/users/{user_id}/chats/999999{suffix}", json=body)
    assert_error(impossible, 404)
    assert impossible.get_data() == missing.get_data()


def test_deleting_user_cascades(app, client, user_id, other):
    """Deleting a user row removes their sessions, chats and messages, and nobody else's."""
    other_client, other_id = other
    mine = create_chat(client, user_id)
    theirs = create_chat(other_client, other_id)
    with app.app_context():
        add_message(mine["id"], "user", "mine")
        add_message(theirs["id"], "user", "theirs")
        db.session.execute(delete(User).where(User.id == user_id))
        db.session.commit()
    assert count(app, Session, Session.user_id == user_id) == 0
    assert count(app, Chat, Chat.user_id == user_id) == 0
    assert count(app, ChatMessage, ChatMessage.chat_id == mine["id"]) == 0
    assert count(app, Session, Session.user_id == other_id) == 1
    assert count(app, ChatMessage, ChatMessage.chat_id == theirs["id"]) == 1
    assert session_token(client)
    assert_error(client.get("/api/auth/check"), 401)


def test_deleting_chat_row_cascades(app, client, user_id):
    """Deleting a chat row with SQL removes its messages only."""
    doomed, kept = create_chat(client, user_id, "doomed"), create_chat(client, user_id, "kept")
    with app.app_context():
        add_message(doomed["id"], "user", "a")
        add_message(doomed["id"], "assistant", "b")
        add_message(kept["id"], "user", "c")
        db.session.execute(delete(Chat).where(Chat.id == doomed["id"]))
        db.session.commit()
    assert count(app, ChatMessage, ChatMessage.chat_id == doomed["id"]) == 0
    assert count(app, ChatMessage, ChatMessage.chat_id == kept["id"]) == 1
