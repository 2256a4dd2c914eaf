"""Hostile JSON bodies on every JSON route: nesting deep enough to exhaust the decoder's
recursion is a 400 in the error contract, never a 500 with a logged traceback."""
from __future__ import annotations

import logging

import pytest

from neptun_flask.validation import MAX_JSON_DEPTH
from tests.api.helpers import MODEL, assert_error, create_chat
from tests.conftest import sign_up

DEPTH = 1000  # about 2 KB of brackets: past Python's recursion limit
TOO_DEEP = "JSON body nested too deeply"


def nested_list(depth: int) -> str:
    """``[[[...]]]`` nested ``depth`` levels."""
    return "[" * depth + "]" * depth


def nested_object(depth: int, leaf: str = "1") -> str:
    """``{"a":{"a":...}}`` nested ``depth`` levels around ``leaf``."""
    return '{"a":' * depth + leaf + "}" * depth


BODIES = {
    "list": nested_list(DEPTH),
    "object": nested_object(DEPTH),
    "in-a-field": '{"email":"a@example.com","password":' + nested_object(DEPTH) + "}",
    "in-messages": '{"messages":' + nested_list(DEPTH) + "}",
}


def json_routes(user_id: int, chat_id: int) -> list[tuple[str, str]]:
    """Every route that reads a JSON body, as (method, path)."""
    chats = f"/api/users/{user_id}/chats"
    return [
        ("post", "/api/auth/login"),
        ("post", "/api/auth/sign-up"),
        ("post", chats),
        ("patch", f"{chats}/{chat_id}"),
        ("delete", chats),
        ("post", f"/api/ai/{MODEL}/chat?chat_id={chat_id}"),
    ]


ROUTE_NAMES = ["login", "sign-up", "create", "rename", "bulk-delete", "chat"]


@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
@pytest.mark.parametrize("route", range(len(ROUTE_NAMES)), ids=ROUTE_NAMES)
def test_deeply_nested_body_is_400(app, client, caplog, route, body):
    """A body nested 1,000 levels deep is a 400 on every JSON route, with nothing logged
    at error level (no traceback)."""
    user_id = sign_up(client)
    chat_id = create_chat(client, user_id)["id"]
    method, path = json_routes(user_id, chat_id)[route]
    with caplog.at_level(logging.WARNING):
        response = getattr(client, method)(path, data=body, content_type="application/json")
    body_out = assert_error(response, 400, TOO_DEEP)
    assert "data" not in body_out
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert client.get(f"/api/users/{user_id}/chats/{chat_id}").status_code == 200


def test_nesting_up_to_the_limit_is_accepted(client):
    """A body exactly MAX_JSON_DEPTH levels deep (an ignored extra field) passes."""
    user_id = sign_up(client)
    inner = nested_object(MAX_JSON_DEPTH - 1)  # one level is the body object itself
    body = '{"model":"%s","name":"deep extras","extra":%s}' % (MODEL, inner)
    response = client.post(f"/api/users/{user_id}/chats", data=body,
                           content_type="application/json")
    assert response.status_code == 201, response.get_json()
    deeper = '{"model":"%s","name":"deep extras","extra":%s}' % (MODEL, nested_object(
        MAX_JSON_DEPTH))
    assert_error(client.post(f"/api/users/{user_id}/chats", data=deeper,
                             content_type="application/json"), 400, TOO_DEEP)


def test_brackets_inside_strings_do_not_count(client):
    """Brackets and quotes inside JSON strings are text, not nesting: a name made of them is
    stored as sent."""
    user_id = sign_up(client)
    name = '\\"[{' * 80 + "}]"
    body = '{"model":"%s","name":"%s","extra":"%s"}' % (MODEL, name, "[" * 2000)
    response = client.post(f"/api/users/{user_id}/chats", data=body,
                           content_type="application/json")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["chat"]["name"] == '"[{' * 80 + "}]"


def test_deep_body_in_utf16_is_400(client):
    """The depth is counted on the decoded text, so a UTF-16 body (which the JSON decoder
    accepts) cannot hide its brackets."""
    body = nested_object(DEPTH).encode("utf-16-le")
    assert_error(client.post("/api/auth/sign-up", data=body, content_type="application/json"),
                 400, TOO_DEEP)
