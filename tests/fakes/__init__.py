"""Test doubles; ``upstream`` is a local fake of the LLM providers the app streams from."""
