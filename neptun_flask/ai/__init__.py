"""Streaming chat routes."""
from .routes import BLUEPRINTS

__all__ = ["BLUEPRINTS"]
