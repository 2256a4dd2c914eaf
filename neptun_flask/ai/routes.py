"""Chat blueprints: one per provider under ``/api/ai/<provider>/...`` plus the router.

Every chat rule ``.../chat`` has the same siblings: ``POST`` streams a reply, ``GET`` (with
``?chat_id=``) and ``GET .../chat/<chat_id>/stream`` resume the chat's running generation,
``POST .../chat/<chat_id>/stop`` stops it. The views check the session themselves, in the same
database step as the chat (so no before-request guard).
"""
from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint

from ..catalog import CHAT_PROVIDERS, PROVIDERS, CatalogEntry, current_catalog
from ..openapi import operation
from ..schemas import ChatArgs, ChatRequestSchema, ResumeArgs
from .view import chat_response, resume_response, stop_response

HF_INVALID = "Invalid model name or publisher"
CHAT_INVALID = "Invalid model name"
ROUTER_INVALID = "Invalid model publisher or model name"

#: The streamed 200 of the chat and resume routes, in the protocol ``stream_protocol`` names.
STREAM = {
    "description": (
        "The reply, streamed. `stream_protocol=data` (the default, unless the body is an AI "
        "SDK 5+ one): the AI SDK data stream protocol, one `CODE:JSON` line per part, "
        "header `x-vercel-ai-data-stream: v1`. `ui` (the default for an AI SDK 5+ body): the "
        "AI SDK UI message stream protocol, server-sent events, header "
        "`x-vercel-ai-ui-message-stream: v1`. `text`: the bare reply text, also sent as "
        "`text/event-stream` today. A resume answers in the protocol its generation started "
        "in unless `stream_protocol` says otherwise."),
    "headers": {
        "x-vercel-ai-data-stream": {"description": "`v1` in the data protocol",
                                    "schema": {"type": "string"}},
        "x-vercel-ai-ui-message-stream": {"description": "`v1` in the UI message protocol",
                                          "schema": {"type": "string"}},
    },
    # OpenAPI 3.1 has no schema for a whole stream: ``schema`` of an event stream describes
    # one server-sent event (the ui protocol's; the data and text protocols' lines are not
    # SSE fields, so they carry no events).
    "content": {"text/event-stream": {"schema": {
        "type": "object", "description": "One server-sent event",
        "properties": {"data": {"type": "string"}, "event": {"type": "string"},
                       "id": {"type": "string"}, "retry": {"type": "integer"}}}}},
}
_NOTHING_RUNS = {"description": "No generation runs for the chat"}
CHAT_DOC = operation(
    "Stream a model's reply to the messages", tag="chat", query=ChatArgs,
    body=ChatRequestSchema, responses={200: STREAM}, errors=(404, 409, 429, 502, 503, 504),
    description="Without `chat_id` the body's `id` names the chat; `chat_id=-1` or "
                "`is_playground=true` store nothing. 400 for an unknown or retired model.")
RESUME_DOC = operation(
    "Resume the chat's running generation (ai@4's experimental_resume)", tag="chat",
    query=ResumeArgs, responses={200: STREAM, 204: _NOTHING_RUNS}, errors=(404,),
    description="`chat_id` (or `chatId`) is required.")
RESUME_PATH_DOC = operation(
    "Resume the chat's running generation", tag="chat",
    query=ResumeArgs(only=("stream_protocol",)),
    responses={200: STREAM, 204: _NOTHING_RUNS}, errors=(404,))
STOP_DOC = operation("Stop the chat's running generation, wherever it runs", tag="chat",
                     responses={204: None}, errors=(400, 404))


def _add_chat_rules(bp: Blueprint, rule: str, name: str, invalid: str,
                    entry_of: Callable[..., CatalogEntry | None]) -> None:
    """Register the chat rule and its resume and stop siblings; ``entry_of`` maps the rule's
    path values to the catalog entry (None when the route does not know the model)."""

    @CHAT_DOC
    def chat(**path):
        return chat_response(entry_of(**path), invalid)

    @RESUME_DOC
    def resume(**path):
        return resume_response(entry_of(**path), invalid)

    @RESUME_PATH_DOC
    def resume_path(chat_id: int, **path):
        return resume_response(entry_of(**path), invalid, chat_id)

    @STOP_DOC
    def stop(chat_id: int, **path):
        return stop_response(entry_of(**path), invalid, chat_id)

    bp.add_url_rule(rule, f"{name}_chat", chat, methods=["POST"])
    bp.add_url_rule(rule, f"{name}_resume", resume, methods=["GET"])
    bp.add_url_rule(f"{rule}/<int:chat_id>/stream", f"{name}_resume_path", resume_path,
                    methods=["GET"])
    bp.add_url_rule(f"{rule}/<int:chat_id>/stop", f"{name}_stop", stop, methods=["POST"])


def _huggingface_entry(publisher: str, name: str) -> CatalogEntry | None:
    """A Hugging Face-hosted model by publisher and name."""
    entry = current_catalog().get(f"{publisher}/{name}")
    return entry if entry is not None and entry.spec.provider == "huggingface" else None


def router_entry(publisher: str, name: str) -> CatalogEntry | None:
    """Any catalog model by publisher and name; a provider name as publisher means its model."""
    catalog = current_catalog()
    if publisher in PROVIDERS:
        return catalog.find(publisher, name)
    return catalog.get(f"{publisher}/{name}")


huggingface = Blueprint("ai_huggingface", __name__, url_prefix="/api/ai/huggingface")
_add_chat_rules(huggingface, "/<publisher>/<name>/chat", "huggingface", HF_INVALID,
                _huggingface_entry)
# By name alone: the paths ``/api/models`` advertises.
_add_chat_rules(huggingface, "/<name>/chat", "huggingface_short", HF_INVALID,
                lambda name: current_catalog().find("huggingface", name))


def _chat_provider_blueprint(provider: str) -> Blueprint:
    """``/api/ai/<provider>/<name>/chat`` for a provider whose publisher is itself."""
    bp = Blueprint(f"ai_{provider}", __name__, url_prefix=f"/api/ai/{provider}")
    _add_chat_rules(bp, "/<name>/chat", provider, CHAT_INVALID,
                    lambda name: current_catalog().find(provider, name))
    return bp


router = Blueprint("ai_router", __name__, url_prefix="/api/ai")
_add_chat_rules(router, "/<publisher>/<name>/chat", "router", ROUTER_INVALID, router_entry)

BLUEPRINTS = [huggingface, *(_chat_provider_blueprint(p) for p in CHAT_PROVIDERS), router]
