"""The model catalog: the seed's /api/models payload, retired models, replacement and bad files."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from neptun_flask.catalog import CatalogError
from neptun_flask.extensions import db
from neptun_flask.models import Chat
from tests.api.helpers import COOKIE, MODEL, assert_error, create_chat, session_token
from tests.conftest import sign_up

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests" / "data" / "seeds" / "models-endpoint.txt"
BUILT_IN = ROOT / "neptun_flask" / "catalog.json"
RETIRED = "qwen/Qwen2.5-Coder-32B-Instruct"
RETIRED_ENDPOINT = "/api/ai/huggingface/Qwen2.5-Coder-32B-Instruct/chat"
NEW_OLLAMA = {
    "publisher": "ollama",
    "name": "llama3.2",
    "description": "Llama 3.2 served by a local Ollama",
    "icon": "simple-icons:ollama",
    "type": "chat",
    "configuration": {
        "model": "llama3.2:3b",
        "parameters": {"max_new_tokens": 1024, "typical_p": -1, "repetition_penalty": -1,
                       "truncate": 8192, "return_full_text": False, "temperature": 0.7},
    },
}


def seed_payload() -> dict:
    """The example JSON of the seed doc: between "Example JSON Response" and "Code Examples"."""
    text = SEED.read_text(encoding="utf-8")
    example = text.split("Example JSON Response", 1)[1].split("Code Examples", 1)[0]
    return json.loads(example)


def built_in() -> dict:
    """A fresh copy of the built-in catalog document."""
    return json.loads(BUILT_IN.read_text(encoding="utf-8"))


def write_catalog(tmp_path: Path, document, name: str = "catalog.json") -> str:
    """Write a catalog file (a document, or raw text) and return its path."""
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document),
                    encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("path", ["/api/models", "/models"])
def test_models_payload_matches_seed(client, path):
    """GET /api/models and /models return exactly the seed's example payload, in order."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    expected, payload = seed_payload(), response.get_json()
    assert payload == expected
    assert payload["models"] == expected["models"]
    assert list(payload["endpoints"]) == list(expected["endpoints"])
    for provider, endpoints in expected["endpoints"].items():
        assert payload["endpoints"][provider] == endpoints


@pytest.fixture
def retired_catalog(tmp_path) -> str:
    """A catalog file: the built-in one with one model retired."""
    document = built_in()
    publisher, name = RETIRED.split("/")
    document[publisher][name]["retired"] = True
    return write_catalog(tmp_path, document)


def test_retired_model_hidden_but_configured(app_factory, retired_catalog):
    """A retired model leaves models and endpoints but keeps its configuration entry."""
    payload = app_factory(NEPTUN_MODELS_FILE=retired_catalog).test_client() \
        .get("/api/models").get_json()
    expected = seed_payload()
    assert RETIRED not in payload["models"]
    assert payload["models"] == [m for m in expected["models"] if m != RETIRED]
    assert RETIRED_ENDPOINT not in payload["endpoints"]["huggingface"]
    assert payload["endpoints"]["huggingface"] == [
        e for e in expected["endpoints"]["huggingface"] if e != RETIRED_ENDPOINT]
    publisher, name = RETIRED.split("/")
    assert payload["configurations"] == expected["configurations"]
    assert "retired" not in payload["configurations"][publisher][name]


def test_retired_model_chats_still_load(app, client, user_id, app_factory, retired_catalog):
    """Chats made before retirement (or stored directly) still load; new ones are refused."""
    before = create_chat(client, user_id, "made before", model=RETIRED)
    retired_app = app_factory(NEPTUN_MODELS_FILE=retired_catalog)
    with retired_app.app_context():
        stored = Chat(user_id=user_id, name="stored directly", model=RETIRED)
        db.session.add(stored)
        db.session.commit()
        stored_id = stored.id
    later = retired_app.test_client()
    later.set_cookie(COOKIE, session_token(client))
    base = f"/api/users/{user_id}/chats"
    for chat_id in (before["id"], stored_id):
        response = later.get(f"{base}/{chat_id}")
        assert response.status_code == 200
        assert response.get_json()["chat"]["model"] == RETIRED
        assert later.get(f"{base}/{chat_id}/messages").status_code == 200
    assert {chat["id"] for chat in later.get(base).get_json()["chats"]} == {before["id"], stored_id}
    refused = later.post(base, json={"model": RETIRED, "name": "new one"})
    assert assert_error(refused, 400)["data"]["model"]
    assert later.post(base, json={"model": MODEL, "name": "active one"}).status_code == 201


def test_models_file_replaces_catalog(app_factory, tmp_path):
    """NEPTUN_MODELS_FILE replaces the built-in catalog in /api/models and for chats."""
    qwen = built_in()["qwen"]["Qwen2.5-72B-Instruct"]
    document = {"qwen": {"Qwen2.5-72B-Instruct": qwen}, "ollama": {"llama3.2": NEW_OLLAMA}}
    app = app_factory(NEPTUN_MODELS_FILE=write_catalog(tmp_path, document))
    client = app.test_client()
    for path in ("/api/models", "/models"):
        assert client.get(path).get_json() == {
            "configurations": document,
            "models": ["qwen/Qwen2.5-72B-Instruct", "ollama/llama3.2"],
            "endpoints": {
                "huggingface": ["/api/ai/huggingface/Qwen2.5-72B-Instruct/chat"],
                "cloudflare": [],
                "openrouter": [],
                "ollama": ["/api/ai/ollama/llama3.2/chat"],
            },
        }
    user_id = sign_up(client)
    assert create_chat(client, user_id, model="ollama/llama3.2")["model"] == "ollama/llama3.2"
    gone = client.post(f"/api/users/{user_id}/chats",
                       json={"model": "google/gemma-2-27b-it", "name": "old model"})
    assert assert_error(gone, 400)["data"]["model"]


def _missing_field(document):
    """Drop a required field from one entry."""
    del document["google"]["gemma-2-27b-it"]["icon"]


def _missing_parameter(document):
    """Drop a required parameter from one entry."""
    del document["google"]["gemma-2-27b-it"]["configuration"]["parameters"]["truncate"]


def _wrong_type(document):
    """Give a parameter the wrong type."""
    document["google"]["gemma-2-27b-it"]["configuration"]["parameters"]["max_new_tokens"] = "500"


def _bad_model_type(document):
    """Use a model type outside instruct/chat."""
    document["google"]["gemma-2-27b-it"]["type"] = "completion"


def _publisher_mismatch(document):
    """File an entry under a publisher key its publisher field does not match."""
    document["google"]["gemma-2-27b-it"]["publisher"] = "qwen"


def _name_mismatch(document):
    """File an entry under a name key its name field does not match."""
    document["google"]["gemma-2-27b-it"]["name"] = "gemma-3"


def _unknown_field(document):
    """Add a field the schema does not know."""
    document["google"]["gemma-2-27b-it"]["colour"] = "blue"


@pytest.mark.parametrize(("mutate", "match"), [
    (_missing_field, r"google/gemma-2-27b-it.*icon"),
    (_missing_parameter, r"google/gemma-2-27b-it.*truncate"),
    (_wrong_type, r"google/gemma-2-27b-it.*max_new_tokens"),
    (_bad_model_type, r"google/gemma-2-27b-it.*type"),
    (_publisher_mismatch, r"google/gemma-2-27b-it.*publisher"),
    (_name_mismatch, r"google/gemma-2-27b-it.*name"),
    (_unknown_field, r"google/gemma-2-27b-it.*colour"),
], ids=["missing-field", "missing-parameter", "wrong-type", "bad-model-type",
        "publisher-mismatch", "name-mismatch", "unknown-field"])
def test_invalid_entry_stops_startup(app_factory, tmp_path, mutate, match):
    """An invalid catalog entry makes create_app raise CatalogError naming entry and field."""
    document = copy.deepcopy(built_in())
    mutate(document)
    with pytest.raises(CatalogError, match=match):
        app_factory(NEPTUN_MODELS_FILE=write_catalog(tmp_path, document))


@pytest.mark.parametrize(("content", "match"), [
    ('{"google": {', r"cannot read model catalog .*catalog\.json"),
    ("[]", r"non-empty object of publishers"),
    ("{}", r"non-empty object of publishers"),
    ('{"google": []}', r"google: expected a non-empty object of models"),
    ('{"google": {"gemma-2-27b-it": "text"}}', r"google/gemma-2-27b-it"),
], ids=["invalid-json", "list", "empty", "publisher-not-object", "entry-not-object"])
def test_malformed_file_stops_startup(app_factory, tmp_path, content, match):
    """A malformed catalog file makes create_app raise CatalogError naming the problem."""
    with pytest.raises(CatalogError, match=match):
        app_factory(NEPTUN_MODELS_FILE=write_catalog(tmp_path, content))


def test_missing_file_stops_startup(app_factory, tmp_path):
    """A NEPTUN_MODELS_FILE that does not exist is a CatalogError naming the path."""
    with pytest.raises(CatalogError, match="no-such-file.json"):
        app_factory(NEPTUN_MODELS_FILE=str(tmp_path / "no-such-file.json"))

