"""The view bodies every chat route calls: the POST that starts (or repeats) a turn, the GET
that resumes the chat's running generation, and the POST that stops it."""
from __future__ import annotations

import hashlib
from functools import partial

import orjson
from flask import current_app, g, request

from .. import fairuse

from ..auth.sessions import session_token
from ..catalog import CatalogEntry, current_catalog
from ..errors import ApiError
from ..generations.store import Outcome, Turn
from ..providers import get_adapter
from ..providers.base import RequestTooLarge
from ..schemas import MAX_ID, ChatArgs, ChatRequestSchema, ResumeArgs
from ..streaming.parts import finish_part, start_part
from ..streaming.protocol import encode, new_encoder
from ..streaming.reader import RunReader
from ..streaming.retry import Candidate, RetryPolicy, open_first, with_fallbacks
from ..streaming.upstream import Timeouts
from ..validation import load_args, load_body
from .admission import admit, admit_chat
from .settings import provider_settings

RETIRED_MESSAGE = "Service not available anymore."
CONFLICT_MESSAGE = "This request's key was already used for a different request."
_MISSING_CHAT = {"chat_id": ["Missing data for required field."]}
_KEY_HEADER = "Idempotency-Key"
_args_schema = ChatArgs()
_body_schema = ChatRequestSchema()
_resume_schema = ResumeArgs()


def generations():
    """The app's generations (generations/manager.py)."""
    return current_app.extensions["neptun_generations"]


def chat_response(entry: CatalogEntry | None, invalid_message: str):
    """Stream ``entry``'s reply to the posted messages. The checks answer in the documented
    order: session, query args, model, body, chat, provider settings, prompt size; the
    session and the chat are checked (and the turn stored) in one database step."""
    token = session_token()
    try:
        args, body = _checked(entry, invalid_message)
    except Exception:
        admit(token)  # no session is the first answer
        raise
    chat_id = args["chat_id"] if args["chat_id"] != -1 and not args["is_playground"] else None
    adapter = get_adapter(entry.spec.provider)
    messages = body["messages"]
    try:
        upstream_request = _build(entry, adapter, messages)
    except Exception:
        admit(token, chat_id)  # then an unknown chat
        raise
    protocol = args["stream_protocol"] or _protocol_of(body)
    outcome = admit(token, chat_id, _turn(entry, body, protocol))
    try:
        slot = fairuse.admit_user(g.user_id, stream=outcome.kind == "new")
    except ApiError:
        if outcome.kind == "new":
            generations().discard(outcome.generation_id)
        raise
    encoder = new_encoder(protocol)
    if outcome.kind == "new":
        # AI SDK 5+ clients can resume (resumeStream()), so their disconnect is not a stop.
        try:
            first = _candidate(entry, adapter, upstream_request)
            candidates = with_fallbacks(first, current_catalog().fallbacks_of(entry),
                                        partial(_fallback, messages=messages))
            return _stream(candidates, encoder, outcome.generation_id,
                           args["resumable"] or protocol == "ui", chat_id, protocol, slot)
        except BaseException:
            slot.release()   # no run took it (a started run gives it back when it ends)
            raise
    if outcome.kind == "attach":
        return _respond(generations().follow(outcome.generation_id, encoder, request.environ),
                        encoder)
    if outcome.kind == "replay":
        return _respond(_replay(outcome, encoder), encoder)
    raise ApiError(409, CONFLICT_MESSAGE)


def _checked(entry: CatalogEntry | None, invalid_message: str) -> tuple[dict, dict]:
    """The query args (with the chat id) and body, once the model and the body pass (no side
    effects)."""
    args = load_args(_args_schema)
    if args["chat_id"] is None:
        args["chat_id"] = _body_chat_id()
    _known(entry, invalid_message)
    return args, load_body(_body_schema)


def _body_chat_id() -> int:
    """The chat id from the body's ``id`` (the AI SDK sends the chat id there) when the query
    has none; 400 as a missing ``chat_id`` when the body has no integer id either."""
    body = request.get_json(silent=True) if request.is_json else None
    value = body.get("id") if isinstance(body, dict) else None
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) < 12:
        value = int(value)
    if type(value) is not int or not -1 <= value <= MAX_ID:
        raise ApiError(400, "Validation failed", data=_MISSING_CHAT)
    return value


def _protocol_of(body: dict) -> str:
    """An AI SDK 5+ body (``trigger``, or messages of ``parts`` only) is answered in its UI
    message stream protocol; any other in the data stream protocol."""
    if "trigger" in body or any(message["from_parts"] for message in body["messages"]):
        return "ui"
    return "data"


def _turn(entry: CatalogEntry, body: dict, protocol: str) -> Turn:
    """The turn a request asks for: its user message, its retry key (the Idempotency-Key
    header, else the last user message's id) and a fingerprint of what it asks."""
    messages = body["messages"]
    last = messages[-1]
    regenerate = body.get("trigger", "").startswith("regenerate")
    # A regenerate resends the turn's own message id: it asks for a new reply, not a replay.
    by_message = last.get("id") if last["role"] == "user" and not regenerate else None
    key = request.headers.get(_KEY_HEADER) or by_message
    if key is not None and not 0 < len(key) <= 255:
        raise ApiError(400, "Validation failed", data={_KEY_HEADER: ["Length must be 1-255."]})
    fingerprint = orjson.dumps([entry.model_id, [(m["role"], m["content"]) for m in messages]])
    return Turn(text=last["content"] if last["role"] == "user" else None,
                model_id=entry.model_id, key=key,
                request_hash=hashlib.sha256(fingerprint).hexdigest() if key else None,
                regenerate=regenerate, protocol=protocol)


def _build(entry: CatalogEntry, adapter, messages: list[dict]):
    """The upstream request: the provider must be configured and the prompt fit the model."""
    config = current_app.config
    try:
        return adapter.build_request(entry.spec, messages,
                                     provider_settings(entry.spec.provider, config),
                                     config["NEPTUN_SYSTEM_PROMPT"])
    except RequestTooLarge:
        raise ApiError(400, "The last message is too long for this model.") from None


def _candidate(entry: CatalogEntry, adapter, upstream_request) -> Candidate:
    """A model to ask, with its built upstream request."""
    return Candidate(entry.model_id, adapter, upstream_request,
                     entry.spec.parameters["max_new_tokens"])


def _fallback(entry: CatalogEntry, messages: list[dict]) -> Candidate:
    """A fallback model, with the messages built for its own adapter and prompt."""
    adapter = get_adapter(entry.spec.provider)
    return _candidate(entry, adapter, _build(entry, adapter, messages))


def _stream(candidates, encoder, generation_id: int | None, resumable: bool,
            chat_id: int | None, protocol: str, slot: fairuse.Slot = fairuse.NO_SLOT):
    """Open the upstream of the first candidate that answers (retries and fallbacks:
    streaming/retry.py), read to its first content (so failures get a real status), then
    hand the run to its own greenlet; the response is the run's first reader. The run gives
    the user's stream ``slot`` back when it ends, and stores the model that answered."""
    runs = generations()
    config = current_app.config
    timeouts = Timeouts.from_config(config)
    try:
        chosen, response = open_first(candidates, timeouts, RetryPolicy.from_config(config))
    except ApiError:
        runs.discard(generation_id)
        raise
    run = runs.new_run(generation_id, resumable, chat_id=chat_id, protocol=protocol,
                       response=response,
                       on_end=fairuse.end_hook(slot, g.user_id),
                       adapter=chosen.adapter, request=chosen.request, timeouts=timeouts,
                       model_id=chosen.model_id, max_tokens=chosen.max_tokens)
    reader = RunReader(run, encoder, request.environ)  # a disconnect while priming counts
    failure = run.prime()
    if failure is not None:
        reader.close()
        runs.discard(generation_id)
        raise ApiError(502, failure)
    runs.add(run)
    return _respond(reader, encoder)


def _replay(outcome: Outcome, encoder) -> list[bytes]:
    """A finished turn, sent again from its stored reply."""
    reply = outcome.reply
    parts = [start_part(generations().message_id(outcome.generation_id)), reply["message"],
             finish_part(reply["finish_reason"], reply["prompt_tokens"] or 0,
                         reply["completion_tokens"] or 0)]
    return [encode(encoder, parts)]


def _respond(body, encoder):
    """A streamed 200 in the encoder's protocol; the body yields bytes already, and the WSGI
    server calls its ``close()``."""
    return current_app.response_class(body, status=200, content_type=encoder.content_type,
                                      headers=encoder.headers, direct_passthrough=True)


def resume_response(entry: CatalogEntry | None, invalid_message: str,
                    chat_id: int | None = None):
    """The chat's running generation from its first part, then live; 204 when none runs.
    Same checks as the POST: session, query args, model, chat."""
    token = session_token()
    try:
        args = load_args(_resume_schema)
        chat_id = chat_id or args.get("chat_id") or args.get("chatId")
        if chat_id is None:
            raise ApiError(400, "Validation failed", data=_MISSING_CHAT)
        _known(entry, invalid_message)
    except Exception:
        admit(token)
        raise
    runs = generations()
    found = runs.running(chat_id, newest=admit_chat(token, chat_id))
    if found is None:
        return current_app.response_class(status=204)
    generation_id, started_in = found
    encoder = new_encoder(args["stream_protocol"] or started_in)
    return _respond(runs.follow(generation_id, encoder, request.environ), encoder)


def stop_response(entry: CatalogEntry | None, invalid_message: str, chat_id: int):
    """Stop the chat's running generation wherever it runs; 204 either way."""
    token = session_token()
    try:
        _known(entry, invalid_message)
    except Exception:
        admit(token)
        raise
    admit(token, chat_id)
    generations().stop_chat(chat_id)
    return current_app.response_class(status=204)


def _known(entry: CatalogEntry | None, invalid_message: str) -> None:
    """400 unless the route names an active model."""
    if entry is None:
        raise ApiError(400, invalid_message)
    if entry.retired:
        raise ApiError(400, RETIRED_MESSAGE)
