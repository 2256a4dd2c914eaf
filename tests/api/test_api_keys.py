"""API keys under /api/users/<id>/api-keys: create (shown once), list, revoke; the rules."""
from __future__ import annotations

from neptun_flask.schemas import MAX_ID
from tests.api.helpers import assert_error
from tests.conftest import sign_up


def test_create_list_revoke(client, user_id):
    """The key is returned once; the list has its prefix, never the key; revoke is 204 then
    404; the key no longer authenticates /v1."""
    url = f"/api/users/{user_id}/api-keys"
    created = client.post(url, json={"name": "ci"})
    assert created.status_code == 201
    key = created.get_json()["key"]
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listed = client.get(url).get_json()["apiKeys"]
    assert [(k["name"], k["prefix"]) for k in listed] == [("ci", key[:10])]
    assert key not in client.get(url).get_data(as_text=True)
    key_id = listed[0]["id"]
    assert client.delete(f"{url}/{key_id}").status_code == 204
    assert_error(client.delete(f"{url}/{key_id}"), 404, "API key not found")
    refused = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "invalid_api_key"


def test_ids_beyond_any_row_are_404_not_500(client, user_id):
    """A key id no row can have (past 32 bits) is a missing key."""
    for key_id in (MAX_ID + 1, 10**30):
        assert_error(client.delete(f"/api/users/{user_id}/api-keys/{key_id}"), 404,
                     "API key not found")


def test_another_users_keys_are_forbidden_and_no_session_is_401(app, client, user_id):
    """403 for another user's path; 401 without a session; a name is required."""
    other = app.test_client()
    sign_up(other, "other@example.com")
    assert_error(other.get(f"/api/users/{user_id}/api-keys"), 403, "Forbidden")
    assert app.test_client().get(f"/api/users/{user_id}/api-keys").status_code == 401
    assert client.post(f"/api/users/{user_id}/api-keys", json={}).status_code == 400
