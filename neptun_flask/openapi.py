"""The OpenAPI 3.1 document (``GET /api/openapi.json``) and its page (``/api/docs``).

The document is generated, never written by hand: apispec walks the app's URL rules, and every
view says what it takes and answers with ``@operation(...)`` under its route decorator; request
bodies, query strings and JSON responses are the marshmallow schemas of schemas.py. A view
without ``@operation`` is missing from the document, which tests/api/test_openapi.py refuses.

Documenting a new route::

    @bp.post("/things")
    @operation("Create a thing", tag="things", body=ThingInSchema,
               responses={201: ThingSchema}, errors=(404, 409))
    def create_thing(): ...

The error responses every operation can give are added from what it declares: 401 unless
``public``, 400/413/415 with a ``body``, 400 with a ``query``, 403 under
``/api/users/<user_id>``, and 500 always.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, current_app, jsonify
from flask_swagger_ui import get_swaggerui_blueprint
from marshmallow import Schema

from .errors import OPENAI_PREFIX
from .schemas import MAX_ID, ErrorSchema, OpenAIErrorSchema

DOCUMENT_URL = "/api/openapi.json"
DOCS_URL = "/api/docs"
SECURITY_SCHEME = "cookieAuth"
BEARER_SCHEME = "bearerAuth"
_NOTES = "_openapi_operations"
#: Methods Flask adds to rules by itself; documented only where a view names them.
_IMPLICIT = {"HEAD", "OPTIONS"}
_CONVERTER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
_PATH_SCHEMAS = {
    "int": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    "path": {"type": "string", "minLength": 1},
    "default": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
}


@dataclass(frozen=True)
class Operation:
    """What one view method takes and answers (see ``operation``)."""

    summary: str
    tag: str
    responses: dict[int, Any]
    body: type[Schema] | Schema | None = None
    query: type[Schema] | Schema | None = None
    errors: tuple[int, ...] = ()
    public: bool = False
    description: str | None = None


def operation(summary: str, *, tag: str, responses: dict[int, Any],
              body: type[Schema] | Schema | None = None,
              query: type[Schema] | Schema | None = None,
              errors: tuple[int, ...] = (), public: bool = False,
              description: str | None = None, methods: tuple[str, ...] | None = None):
    """Document the view it decorates, on every rule the view serves.

    ``responses`` maps a status to a marshmallow schema (a JSON body), None (no body) or an
    OpenAPI response object; ``errors`` lists the operation's own error statuses (answered as
    ``{statusCode, statusMessage, data?}``); ``public`` operations need no session;
    ``methods`` limits the note to some of the rule's methods (default: all that Flask did not
    add by itself). Put it under the route decorator: it returns the view unchanged.
    """
    note = Operation(summary, tag, responses, body, query, tuple(errors), public, description)

    def decorate(view):
        notes = view.__dict__.setdefault(_NOTES, {})
        for method in methods or (None,):
            notes[method] = note
        return view

    return decorate


def _notes_for(rule, view) -> dict[str, Operation]:
    """The documented methods of one rule."""
    notes = getattr(view, _NOTES, None) or {}
    documented = {}
    for method in sorted(rule.methods or ()):
        note = notes.get(method) or (notes.get(None) if method not in _IMPLICIT else None)
        if note is not None:
            documented[method] = note
    return documented


class RulePlugin(FlaskPlugin):
    """apispec-webframeworks' Flask plugin, given a URL rule instead of a view (here one view
    serves several rules: ``/api/models`` and ``/models``, each provider's chat routes), and
    adding the rule's path parameters with their converters' types."""

    def path_helper(self, path=None, operations=None, parameters=None, *, rule=None, **kwargs):
        """The OpenAPI path of ``rule``; its path parameters go to ``parameters``."""
        if rule is None:
            return super().path_helper(path, operations, parameters, **kwargs)
        for converter, name in _CONVERTER.findall(rule.rule):
            parameters.append({"in": "path", "name": name, "required": True,
                               "schema": dict(_PATH_SCHEMAS[converter or "default"])})
        return self.flaskpath2openapi(rule.rule)


def _phrase(status: int) -> str:
    """The reason phrase of a status."""
    return HTTPStatus(status).phrase


def _error_response(status: int, schema) -> dict[str, Any]:
    """An error status answered with the error schema."""
    response: dict[str, Any] = {"description": _phrase(status),
                                "content": {"application/json": {"schema": schema}}}
    if status == 429:
        response["headers"] = {"Retry-After": {
            "description": "Seconds to wait", "schema": {"type": "string"}}}
    return response


def _response(status: int, spec: Any) -> dict[str, Any]:
    """A documented success response: a schema (JSON), None (no body) or a response object."""
    if spec is None:
        return {"description": _phrase(status)}
    if isinstance(spec, dict):
        return {"description": _phrase(status), **spec}
    return {"description": _phrase(status), "content": {"application/json": {"schema": spec}}}


def _operation_object(note: Operation, rule, method: str) -> dict[str, Any]:
    """The OpenAPI operation object of a note on a rule."""
    errors = set(note.errors) | {500}
    if not note.public:
        errors.add(401)
    if note.body is not None:
        errors |= {400, 413, 415}
    if note.query is not None:
        errors.add(400)
    if rule.rule.startswith("/api/users/<int:user_id>"):
        errors.add(403)
    responses = {status: _response(status, spec) for status, spec in note.responses.items()}
    # Under /v1 errors are OpenAI's, and an API key authenticates too (errors.py).
    openai = FlaskPlugin.flaskpath2openapi(rule.rule).startswith(OPENAI_PREFIX)
    error_schema = OpenAIErrorSchema if openai else ErrorSchema
    responses.update({status: _error_response(status, error_schema) for status in errors})
    if method == "HEAD":  # a HEAD response has the GET's headers, never a body
        responses = {status: {"description": response["description"]}
                     for status, response in responses.items()}
    slug = re.sub(r"[^A-Za-z0-9]+", "_", FlaskPlugin.flaskpath2openapi(rule.rule)).strip("_")
    result: dict[str, Any] = {
        "operationId": f"{method.lower()}_{slug}", "summary": note.summary, "tags": [note.tag],
        "responses": {str(status): responses[status] for status in sorted(responses)},
        "security": ([] if note.public else [{SECURITY_SCHEME: []}]
                     + ([{BEARER_SCHEME: []}] if openai and not note.public else [])),
    }
    if note.description:
        result["description"] = note.description
    if note.query is not None:
        result["parameters"] = [{"in": "query", "schema": note.query}]
    if note.body is not None:
        result["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": note.body}}}
    return result


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every documented rule of ``app``."""
    try:
        release = version("neptun-flask")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        release = "0"
    spec = APISpec(
        title="neptun-flask", version=release, openapi_version="3.1.0",
        plugins=[RulePlugin(), MarshmallowPlugin()],
        info={"description": "Streaming LLM chat API. Every error is JSON "
                             "`{statusCode, statusMessage, data?}`."})
    spec.components.security_scheme(SECURITY_SCHEME, {
        "type": "apiKey", "in": "cookie", "name": app.config["SESSION_COOKIE_NAME"],
        "description": "The session cookie set by sign-up and login."})
    spec.components.security_scheme(BEARER_SCHEME, {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`nf_...`) from `POST /api/users/{user_id}/api-keys`; "
                       "for `/v1` only."})
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.schema("OpenAIError", schema=OpenAIErrorSchema)
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: (rule.rule, rule.endpoint)):
        notes = _notes_for(rule, app.view_functions[rule.endpoint])
        if notes:
            spec.path(rule=rule, operations={
                method.lower(): _operation_object(note, rule, method)
                for method, note in notes.items()})
    result = spec.to_dict()
    for path_item in result["paths"].values():
        for method, operation_object in path_item.items():
            if method == "parameters":
                continue
            for parameter in operation_object.get("parameters", ()):
                if parameter["in"] == "query":
                    _not_null(parameter["schema"])
    return result


def _not_null(schema: dict[str, Any]) -> None:
    """A query string carries no null: a field that loads a missing arg as None is
    documented as optional, not as nullable."""
    if isinstance(schema.get("type"), list):
        types = [kind for kind in schema["type"] if kind != "null"]
        schema["type"] = types[0] if len(types) == 1 else types
    if "enum" in schema:
        schema["enum"] = [value for value in schema["enum"] if value is not None]
    if "default" in schema and schema["default"] is None:
        del schema["default"]


def document() -> dict[str, Any]:
    """The current app's document, built once."""
    extensions = current_app.extensions
    if "neptun_openapi" not in extensions:
        extensions["neptun_openapi"] = build_document(current_app)
    return extensions["neptun_openapi"]


bp = Blueprint("openapi", __name__)


@bp.get(DOCUMENT_URL)
@operation("This OpenAPI document", tag="docs", public=True,
           responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}})
def openapi_json():
    """The generated OpenAPI document."""
    return jsonify(document())


#: Swagger UI, its JavaScript and CSS served from the flask-swagger-ui package (no CDN).
docs_bp = get_swaggerui_blueprint(DOCS_URL, DOCUMENT_URL, blueprint_name="docs",
                                  config={"app_name": "neptun-flask API"})
