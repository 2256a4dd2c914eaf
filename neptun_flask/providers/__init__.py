"""Provider adapters, keyed by provider name (the catalog's ``provider`` field)."""
from __future__ import annotations

from . import cloudflare, huggingface, ollama, openrouter
from .base import Adapter

ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (huggingface.adapter, cloudflare.adapter, openrouter.adapter, ollama.adapter)
}


def get_adapter(name: str) -> Adapter:
    """Return the adapter of a provider; raise KeyError for an unknown one."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}") from None
