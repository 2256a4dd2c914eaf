"""The OpenAI-compatible API (``/v1``) and the API keys that authenticate it."""
from .keys import bp as keys_bp
from .routes import bp

__all__ = ["bp", "keys_bp"]
