"""The one view body every chat route calls: authenticate, validate, check, open the upstream,
stream."""
from __future__ import annotations

from flask import current_app, request

from ..catalog import CatalogEntry
from ..auth.sessions import session_token
from ..chats.store import message_inserter
from ..errors import ApiError
from ..providers import get_adapter
from ..providers.base import RequestTooLarge
from ..schemas import ChatArgs, ChatRequestSchema
from ..streaming.protocol import ENCODERS
from ..streaming.relay import ReplyStream, ReplyTarget
from ..streaming.upstream import Timeouts, open_upstream
from ..validation import load_args, load_body
from .admission import admit
from .settings import provider_settings

RETIRED_MESSAGE = "Service not available anymore."
_args_schema = ChatArgs()
_body_schema = ChatRequestSchema()


def chat_response(entry: CatalogEntry | None, invalid_message: str):
    """Stream ``entry``'s reply to the posted messages. The checks answer in the documented
    order: session, query args, model, body, chat, provider settings, prompt size; the
    session and the chat are checked (and the user's message stored) in one database step."""
    token = session_token()
    try:
        args, messages = _checked(entry, invalid_message)
    except Exception:
        admit(token)  # no session is the first answer
        raise
    chat_id = args["chat_id"] if args["chat_id"] != -1 and not args["is_playground"] else None
    adapter = get_adapter(entry.spec.provider)
    try:
        upstream_request = _build(entry, adapter, messages)
    except Exception:
        admit(token, chat_id)  # then an unknown chat
        raise
    last = messages[-1]
    admit(token, chat_id, last["content"] if last["role"] == "user" else None)
    return _stream(entry, adapter, upstream_request, ENCODERS[args["stream_protocol"]], chat_id)


def _checked(entry: CatalogEntry | None, invalid_message: str) -> tuple[dict, list[dict]]:
    """The query args and messages, once the model and the body pass (no side effects)."""
    args = load_args(_args_schema)
    if entry is None:
        raise ApiError(400, invalid_message)
    if entry.retired:
        raise ApiError(400, RETIRED_MESSAGE)
    return args, load_body(_body_schema)["messages"]


def _build(entry: CatalogEntry, adapter, messages: list[dict]):
    """The upstream request: the provider must be configured and the prompt fit the model."""
    config = current_app.config
    try:
        return adapter.build_request(entry.spec, messages,
                                     provider_settings(entry.spec.provider, config),
                                     config["NEPTUN_SYSTEM_PROMPT"])
    except RequestTooLarge:
        raise ApiError(400, "The last message is too long for this model.") from None


def _stream(entry: CatalogEntry, adapter, upstream_request, encoder, chat_id: int | None):
    """Open the upstream, read to its first content (so failures get a real status), stream."""
    spec = entry.spec
    timeouts = Timeouts.from_config(current_app.config)
    response = open_upstream(upstream_request, adapter, spec.provider, timeouts)
    target = ReplyTarget(message_inserter(), chat_id) if chat_id else None
    stream = ReplyStream(response=response, adapter=adapter, request=upstream_request,
                         encoder=encoder, timeouts=timeouts, model_id=entry.model_id,
                         max_tokens=spec.parameters["max_new_tokens"], target=target,
                         environ=request.environ)
    failure = stream.prime()
    if failure is not None:
        raise ApiError(502, failure)
    # Passed through as is: the stream yields bytes already, and gunicorn calls its close().
    return current_app.response_class(stream, status=200, content_type=encoder.content_type,
                                      headers=encoder.headers, direct_passthrough=True)
