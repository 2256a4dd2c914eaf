"""Smoke test of the fixtures."""
from tests.conftest import sign_up


def test_sign_up_and_create_chat(client):
    """A new user can create a chat."""
    uid = sign_up(client)
    response = client.post(f"/api/users/{uid}/chats",
                           json={"model": "qwen/Qwen2.5-72B-Instruct", "name": "first"})
    assert response.status_code == 201
    assert response.get_json()["chat"]["neptun_user_id"] == uid
