"""Chat blueprints: one per provider under ``/api/ai/<provider>/...`` plus the router."""
from __future__ import annotations

from flask import Blueprint

from ..catalog import CHAT_PROVIDERS, PROVIDERS, current_catalog
from .view import chat_response

HF_INVALID = "Invalid model name or publisher"
CHAT_INVALID = "Invalid model name"
ROUTER_INVALID = "Invalid model publisher or model name"


def _chat_blueprint(name: str, prefix: str) -> Blueprint:
    """A blueprint of chat routes. Every route answers with ``chat_response``, which checks
    the session itself, in the same database step as the chat (so no before-request guard)."""
    return Blueprint(name, __name__, url_prefix=prefix)


huggingface = _chat_blueprint("ai_huggingface", "/api/ai/huggingface")


@huggingface.post("/<publisher>/<name>/chat")
def huggingface_chat(publisher: str, name: str):
    """A Hugging Face-hosted model by publisher and name."""
    entry = current_catalog().get(f"{publisher}/{name}")
    if entry is not None and entry.spec.provider != "huggingface":
        entry = None
    return chat_response(entry, HF_INVALID)


@huggingface.post("/<name>/chat")
def huggingface_short_chat(name: str):
    """A Hugging Face-hosted model by name alone (the paths ``/api/models`` advertises)."""
    return chat_response(current_catalog().find("huggingface", name), HF_INVALID)


def _chat_provider_blueprint(provider: str) -> Blueprint:
    """``/api/ai/<provider>/<name>/chat`` for a provider whose publisher is itself."""
    bp = _chat_blueprint(f"ai_{provider}", f"/api/ai/{provider}")

    @bp.post("/<name>/chat")
    def chat(name: str):
        """A model of this provider by name."""
        return chat_response(current_catalog().find(provider, name), CHAT_INVALID)

    return bp


router = _chat_blueprint("ai_router", "/api/ai")


@router.post("/<publisher>/<name>/chat")
def router_chat(publisher: str, name: str):
    """Any catalog model by publisher and name; a provider name as publisher means its model."""
    catalog = current_catalog()
    if publisher in PROVIDERS:
        entry = catalog.find(publisher, name)
    else:
        entry = catalog.get(f"{publisher}/{name}")
    return chat_response(entry, ROUTER_INVALID)


BLUEPRINTS = [huggingface, *(_chat_provider_blueprint(p) for p in CHAT_PROVIDERS), router]
