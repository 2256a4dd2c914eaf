"""The one view body every chat route calls: validate, check, open the upstream, stream."""
from __future__ import annotations

from flask import current_app, g, request

from ..catalog import CatalogEntry
from ..chats.store import admit_to_chat, message_inserter
from ..errors import ApiError
from ..providers import get_adapter
from ..providers.base import RequestTooLarge
from ..schemas import ChatArgs, ChatRequestSchema
from ..streaming.protocol import ENCODERS
from ..streaming.relay import ReplyStream, ReplyTarget
from ..streaming.upstream import Timeouts, open_upstream
from ..validation import load_args, load_body
from .settings import provider_settings

RETIRED_MESSAGE = "Service not available anymore."
_args_schema = ChatArgs()
_body_schema = ChatRequestSchema()


def chat_response(entry: CatalogEntry | None, invalid_message: str):
    """Stream ``entry``'s reply to the posted messages (the checks run in the documented order)."""
    args = load_args(_args_schema)
    if entry is None:
        raise ApiError(400, invalid_message)
    if entry.retired:
        raise ApiError(400, RETIRED_MESSAGE)
    messages = load_body(_body_schema)["messages"]
    chat_id = args["chat_id"] if args["chat_id"] != -1 and not args["is_playground"] else None
    adapter = get_adapter(entry.spec.provider)
    upstream_request = _prepare(entry, adapter, messages, chat_id)
    return _stream(entry, adapter, upstream_request, ENCODERS[args["stream_protocol"]], chat_id)


def _prepare(entry: CatalogEntry, adapter, messages: list[dict], chat_id: int | None):
    """Check the chat and the provider, build the upstream request, store the user message.

    The chat check and the insert are one step, batched with those of concurrent requests
    (see batching.py); no database connection is held while the upstream is called."""
    config = current_app.config
    spec = entry.spec
    try:
        settings = provider_settings(spec.provider, config)
        upstream_request = adapter.build_request(spec, messages, settings,
                                                 config["NEPTUN_SYSTEM_PROMPT"])
    except (ApiError, RequestTooLarge) as error:
        if chat_id is not None:
            admit_to_chat(chat_id, g.user_id, None)  # an unknown chat is the first answer
        if isinstance(error, RequestTooLarge):
            raise ApiError(400, "The last message is too long for this model.") from None
        raise
    if chat_id is not None:
        last = messages[-1]
        admit_to_chat(chat_id, g.user_id, last["content"] if last["role"] == "user" else None)
    return upstream_request


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
