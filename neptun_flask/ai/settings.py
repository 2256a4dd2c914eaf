"""Provider credentials and base URLs from the app config."""
from __future__ import annotations

from ..errors import ApiError
from ..providers.base import ProviderSettings


def provider_settings(provider: str, config) -> ProviderSettings:
    """The settings of ``provider``; 503 when its credentials are missing."""
    if provider == "huggingface":
        settings = ProviderSettings(config["HUGGINGFACE_BASE_URL"], config["HUGGINGFACE_API_KEY"])
        ready = bool(settings.api_key)
    elif provider == "cloudflare":
        settings = ProviderSettings(config["CLOUDFLARE_BASE_URL"], config["CLOUDFLARE_API_TOKEN"],
                                    config["CLOUDFLARE_ACCOUNT_ID"])
        ready = bool(settings.api_key and settings.account_id)
    elif provider == "openrouter":
        settings = ProviderSettings(config["OPENROUTER_BASE_URL"], config["OPENROUTER_API_KEY"],
                                    app_url=config["OPENROUTER_APP_URL"])
        ready = bool(settings.api_key)
    else:  # ollama: a local server needs no key, only a base URL
        settings = ProviderSettings(config["OLLAMA_BASE_URL"], config["OLLAMA_API_KEY"])
        ready = bool(settings.base_url)
    if not ready or not settings.base_url:
        raise ApiError(503, f"Provider {provider} is not configured")
    return settings
