"""Chats and their messages."""
from .routes import bp

__all__ = ["bp"]
