"""The OpenAI-compatible API: ``GET /v1/models`` and ``POST /v1/chat/completions``.

The same catalog, adapters, prompts and relay as the chat routes; nothing is stored in chats,
and the tokens of each reply are added to the API key that asked for it. Errors are OpenAI's
shape (errors.py), which the OpenAI SDKs turn into their own exceptions.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from functools import partial

from flask import Blueprint, current_app, g, jsonify, request

from .. import fairuse
from ..ai.settings import provider_settings
from ..ai.view import generations
from ..auth.sessions import current_session
from ..catalog import CatalogEntry, current_catalog
from ..errors import ApiError
from ..extensions import db
from ..providers import get_adapter
from ..providers.base import COMMON_OPTIONS, RequestTooLarge
from ..openapi import operation
from ..schemas import CompletionRequestSchema, CompletionSchema, ModelListSchema
from ..streaming.parts import REASONING
from ..streaming.protocol import OPENAI_FINISH, OpenAIChunkEncoder
from ..streaming.reader import RunReader
from ..streaming.retry import Candidate, RetryPolicy, open_first, with_fallbacks
from ..streaming.upstream import Timeouts
from ..validation import load_body
from .keys import key_user, record_usage

bp = Blueprint("openai", __name__, url_prefix="/v1")
_request_schema = CompletionRequestSchema()
#: ``created`` of every model (the catalog has no dates): the day this API was added.
MODELS_CREATED = 1_796_256_000
_BAD_KEY = {"code": "invalid_api_key"}


def authenticate() -> int | None:
    """The caller: an ``Authorization: Bearer`` API key (its id is returned), or else the
    session cookie (None); sets ``g.user_id``; 401 otherwise."""
    header = request.headers.get("Authorization")
    if header is None:
        current_session()
        return None
    scheme, _, key = header.partition(" ")
    found = key_user(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
    if found is None:
        raise ApiError(401, "Incorrect API key provided.", data=_BAD_KEY)
    g.user_id, key_id = found
    return key_id


#: A completion: JSON, or with ``stream`` OpenAI's server-sent ``chat.completion.chunk`` events.
COMPLETION = {"content": {
    "application/json": {"schema": CompletionSchema},
    "text/event-stream": {"schema": {
        "type": "object", "description": "One server-sent event: a `chat.completion.chunk`, "
        "an `error` object, or `[DONE]`",
        "properties": {"data": {"type": "string"}, "event": {"type": "string"},
                       "id": {"type": "string"}, "retry": {"type": "integer"}}}}}}


@bp.get("/models")
@operation("Every live catalog model (OpenAI's list)", tag="openai",
           responses={200: ModelListSchema})
def list_models():
    """Every live catalog model, as OpenAI lists models."""
    authenticate()
    catalog = current_catalog()
    data = [{"id": model_id, "object": "model", "created": MODELS_CREATED,
             "owned_by": model_id.split("/", 1)[0]} for model_id in catalog.active_ids()]
    return jsonify({"object": "list", "data": data})


@bp.post("/chat/completions")
@operation("A chat completion, streamed or whole (OpenAI's API)", tag="openai",
           body=CompletionRequestSchema, responses={200: COMPLETION},
           errors=(404, 429, 502, 503, 504),
           description="Errors are OpenAI's `{error: {message, type, param, code}}`; after "
                       "the first streamed byte a failure is a `data: {error}` event.")
def chat_completions():
    """A chat completion, streamed (``stream: true``) or whole."""
    key_id = authenticate()
    body = load_body(_request_schema)
    entry = current_catalog().get(body["model"])
    if entry is None or entry.retired:
        raise ApiError(404, f"The model `{body['model']}` does not exist.",
                       data={"code": "model_not_found"})
    db.session.close()   # the database is not needed again before the reply ends
    adapter = get_adapter(entry.spec.provider)
    _check_options(entry, adapter, body)
    slot = fairuse.admit_user(g.user_id, stream=True)
    try:
        run = _start(entry, adapter, body, key_id, slot)
    except BaseException:
        slot.release()   # no run took it (a started run gives it back when it ends)
        raise
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body["stream"]:
        encoder = OpenAIChunkEncoder(completion_id, run.model_id, created,
                                     body["include_usage"])
        reader = RunReader(run, encoder, request.environ)
        generations().add(run)
        return current_app.response_class(reader, status=200, content_type=encoder.content_type,
                                          headers=encoder.headers, direct_passthrough=True)
    run.drive()   # in this request: nobody reads along
    if run.reason == "error":
        raise ApiError(502, run.reply.error)
    return jsonify(_completion(run, completion_id, run.model_id, created))


def _start(entry: CatalogEntry, adapter, body: dict, key_id: int | None,
           slot: fairuse.Slot = fairuse.NO_SLOT):
    """Build the upstream request, open it (or, before the first token, a retry or a fallback
    of the model: streaming/retry.py) and read to the first content; the run is not stored in
    any chat, and its ``model_id`` names the model that answered."""
    config = current_app.config
    messages = [m for m in body["messages"] if m["role"] in ("user", "assistant")]
    if not messages:
        raise ApiError(400, "messages must hold a user message.", data={"messages": ["empty"]})
    first = _candidate(entry, adapter, body)
    fallbacks = current_catalog().fallbacks_of(entry)
    candidates = with_fallbacks(first, fallbacks, partial(_fallback, body=body))
    timeouts = Timeouts.from_config(config)
    chosen, response = open_first(candidates, timeouts, RetryPolicy.from_config(config))
    engine = db.engine
    on_end = None if key_id is None else partial(_count_tokens, engine, key_id)
    on_end = fairuse.end_hook(slot, g.user_id, after=on_end)
    run = generations().new_run(None, False, on_end=on_end, response=response,
                                adapter=chosen.adapter, request=chosen.request,
                                timeouts=timeouts, model_id=chosen.model_id,
                                max_tokens=chosen.max_tokens)
    failure = run.prime()
    if failure is not None:
        raise ApiError(502, failure)
    return run


def _fallback(entry: CatalogEntry, body: dict) -> Candidate:
    """A fallback model, asked as ``_candidate`` asks the requested one once its options are
    checked (ApiError when it does not support one)."""
    adapter = get_adapter(entry.spec.provider)
    _check_options(entry, adapter, body)
    return _candidate(entry, adapter, body)


def _candidate(entry: CatalogEntry, adapter, body: dict) -> Candidate:
    """The model asked with the request's options (checked: ``_check_options``) over the
    catalog's parameters, and its system messages instead of the default instruction; 400
    (ApiError) when the prompt is too long for the model."""
    config = current_app.config
    spec = entry.spec
    options = dict(body["options"])
    if "max_new_tokens" in options:   # capped by the catalog
        options["max_new_tokens"] = min(options["max_new_tokens"],
                                        spec.parameters["max_new_tokens"])
    spec = replace(spec, parameters={**spec.parameters, **options})
    system = [m["content"] for m in body["messages"] if m["role"] in ("system", "developer")]
    messages = [m for m in body["messages"] if m["role"] in ("user", "assistant")]
    try:
        upstream_request = adapter.build_request(
            spec, messages, provider_settings(spec.provider, config),
            "\n\n".join(system) if system else config["NEPTUN_SYSTEM_PROMPT"])
    except RequestTooLarge:
        raise ApiError(400, "The last message is too long for this model.") from None
    return Candidate(entry.model_id, adapter, upstream_request,
                     spec.parameters["max_new_tokens"])


def _check_options(entry: CatalogEntry, adapter, body: dict) -> None:
    """400 when the request sets an option the model's adapter does not support."""
    unsupported = sorted(set(body["options"]) - COMMON_OPTIONS - adapter.options)
    if unsupported:
        raise ApiError(400, f"{unsupported[0]} is not supported by {entry.model_id}.",
                       data={"code": "unsupported_parameter"})


def _count_tokens(engine, key_id: int, run, tail: list) -> None:
    """A reply ended: add its tokens to the key's totals."""
    _, _, prompt, completion = tail[-1]
    record_usage(engine, key_id, prompt, completion)


def _completion(run, completion_id: str, model: str, created: int) -> dict:
    """A ``chat.completion`` object of a finished run."""
    prompt, completion = run.reply.token_counts()
    message = {"role": "assistant", "content": run.reply.text}
    reasoning = "".join(part[1] for part in run.parts
                        if type(part) is not str and part[0] == REASONING)
    if reasoning:
        message["reasoning_content"] = reasoning
    return {"id": completion_id, "object": "chat.completion", "created": created,
            "model": model, "choices": [{"index": 0, "message": message,
                                         "finish_reason": OPENAI_FINISH.get(run.reason, "stop")}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}
