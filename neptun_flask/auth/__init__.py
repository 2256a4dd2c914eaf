"""Accounts and sessions."""
from .routes import bp

__all__ = ["bp"]
