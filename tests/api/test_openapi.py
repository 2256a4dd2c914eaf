"""The generated OpenAPI document: valid OpenAPI 3.1, every route in it, and the docs page."""
from __future__ import annotations

import re

from openapi_spec_validator import validate

from neptun_flask.openapi import build_document

_FLASK_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
#: Rules that are not API operations: Flask's static files and the docs page's assets.
_NOT_OPERATIONS = ("static", "docs.")


def undocumented(app, document) -> list[str]:
    """``METHOD rule`` of every route (other than static files and the docs page) missing
    from ``document``; Flask's automatic HEAD and OPTIONS are not operations of their own."""
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(_NOT_OPERATIONS):
            continue
        path_item = document["paths"].get(_FLASK_ARG.sub(r"{\1}", rule.rule), {})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method.lower() not in path_item:
                missing.append(f"{method} {rule.rule}")
    return missing


def test_document_is_valid_openapi_3_1(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_is_documented(app, client):
    document = client.get("/api/openapi.json").get_json()
    assert undocumented(app, document) == []
    assert "head" in document["paths"]["/api/auth/check"]


def test_an_undocumented_route_is_found(app):
    @app.get("/api/undocumented")
    def undocumented_view():
        return {}

    missing = undocumented(app, build_document(app))
    assert missing == ["GET /api/undocumented"]


def test_every_operation_lists_its_errors_with_the_error_schema(client):
    document = client.get("/api/openapi.json").get_json()
    assert set(document["components"]["schemas"]["Error"]["required"]) == {
        "statusCode", "statusMessage"}
    assert document["components"]["schemas"]["OpenAIError"]["required"] == ["error"]
    for path, path_item in document["paths"].items():
        openai = path.startswith("/v1/")   # OpenAI's error shape, and API keys
        error_ref = {"$ref": f"#/components/schemas/{'OpenAIError' if openai else 'Error'}"}
        for method, operation in path_item.items():
            if method == "parameters":
                continue
            errors = {int(status): response for status, response in operation["responses"].items()
                      if int(status) >= 400}
            assert 500 in errors, (method, path)
            if method != "head":
                assert all(response["content"]["application/json"]["schema"] == error_ref
                           for response in errors.values()), (method, path)
            if operation["security"]:
                assert operation["security"] == [{"cookieAuth": []}] + (
                    [{"bearerAuth": []}] if openai else [])
                assert 401 in errors, (method, path)


def test_session_cookie_security_scheme(client):
    document = client.get("/api/openapi.json").get_json()
    assert document["components"]["securitySchemes"]["cookieAuth"] == {
        "type": "apiKey", "in": "cookie", "name": "neptun-session",
        "description": "The session cookie set by sign-up and login."}
    public = {path for path, item in document["paths"].items()
              if all(not op["security"] for m, op in item.items() if m != "parameters")}
    assert public == {"/api/auth/sign-up", "/api/auth/login", "/api/auth/logout",
                      "/api/models", "/models", "/health", "/api/openapi.json", "/",
                      "/assets/{filename}"}


def test_chat_routes_document_each_protocol_and_the_resume_and_stop_answers(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for prefix in ("/api/ai/{publisher}/{name}/chat", "/api/ai/huggingface/{publisher}/{name}/chat",
                   "/api/ai/huggingface/{name}/chat", "/api/ai/cloudflare/{name}/chat",
                   "/api/ai/openrouter/{name}/chat", "/api/ai/ollama/{name}/chat"):
        post = paths[prefix]["post"]
        query = {parameter["name"]: parameter["schema"] for parameter in post["parameters"]}
        assert query["stream_protocol"]["enum"] == ["data", "ui", "text"]
        assert set(query) == {"chat_id", "is_playground", "resumable", "stream_protocol"}
        assert list(post["responses"]["200"]["content"]) == ["text/event-stream"]
        assert "`text/event-stream` today" in post["responses"]["200"]["description"]
        assert {"409", "429", "502", "503", "504"} <= set(post["responses"])
        assert {"200", "204"} <= set(paths[prefix]["get"]["responses"])
        assert {"200", "204"} <= set(paths[prefix + "/{chat_id}/stream"]["get"]["responses"])
        assert "204" in paths[prefix + "/{chat_id}/stop"]["post"]["responses"]
        names = [parameter["name"] for parameter in paths[prefix + "/{chat_id}/stop"]["parameters"]]
        assert names == re.findall(r"{(\w+)}", prefix + "/{chat_id}")


def test_docs_page_serves_swagger_ui_from_the_package(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "/api/openapi.json" in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(asset.startswith("/api/docs/") for asset in assets), assets
    assert "//" not in "".join(asset[1:] for asset in assets)
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        served = client.get(f"/api/docs/{asset}")
        assert served.status_code == 200 and len(served.data) > 10_000, asset
    assert client.get("/api/docs").status_code == 308
