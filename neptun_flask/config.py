"""Configuration: the only module that reads ``os.environ``."""
from __future__ import annotations

import os

from .startup import StartupError

DEFAULT_SYSTEM_PROMPT = (
    "You have to answer all my questions and provide all information using Markdown syntax. "
    "This includes formatting text, adding lists, inserting links, using code blocks, and any "
    "other Markdown features that are appropriate for your responses."
)


def _bool(value: str | None, default: bool) -> bool:
    """Parse a boolean environment value; unset means ``default``."""
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _number(env: dict, name: str, default, kind=int):
    """Parse a numeric environment value (``kind`` int or float) with a clear startup error."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise StartupError(f"{name} must be {noun}, got {raw!r}") from None


def _int(env: dict, name: str, default: int) -> int:
    """An integer setting."""
    return _number(env, name, default, int)


def _float(env: dict, name: str, default: float) -> float:
    """A number of seconds."""
    return _number(env, name, default, float)


def _at_least_zero(env: dict, name: str, default, kind=int):
    """A numeric setting that may not be negative."""
    value = _number(env, name, default, kind)
    if value < 0:
        raise StartupError(f"{name} must not be negative, got {env.get(name)!r}")
    return value


def normalize_database_url(url: str) -> str:
    """Accept Heroku-style ``postgres://`` URLs and pick the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def log_format(env: dict | None = None) -> str:
    """``LOG_FORMAT``: ``text`` (the default) or ``json``."""
    env = os.environ if env is None else env
    value = (env.get("LOG_FORMAT") or "text").strip().lower()
    if value not in ("text", "json"):
        raise StartupError(f"LOG_FORMAT must be text or json, got {env.get('LOG_FORMAT')!r}")
    return value


def load_config(env: dict | None = None) -> dict:
    """Build the Flask config mapping from environment variables."""
    env = os.environ if env is None else env
    debug = _bool(env.get("FLASK_DEBUG"), False)
    days = _int(env, "SESSION_LIFETIME_DAYS", 7)
    return {
        "SECRET_KEY": env.get("SECRET_KEY") or None,
        "DEBUG_MODE": debug,
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(env["DATABASE_URL"])
        if env.get("DATABASE_URL") else None,
        "DATABASE_POOL_SIZE": _int(env, "DATABASE_POOL_SIZE", 5),
        "DATABASE_TIMEOUT": _float(env, "DATABASE_TIMEOUT", 30.0),
        "SESSION_COOKIE_NAME": env.get("SESSION_COOKIE_NAME", "neptun-session"),
        "SESSION_COOKIE_SECURE": _bool(env.get("SESSION_COOKIE_SECURE"), True),
        "SESSION_COOKIE_SAMESITE": env.get("SESSION_COOKIE_SAMESITE", "Lax"),
        "SESSION_COOKIE_DOMAIN": env.get("SESSION_COOKIE_DOMAIN") or None,
        "SESSION_COOKIE_PATH": env.get("SESSION_COOKIE_PATH", "/"),
        "SESSION_COOKIE_HTTPONLY": _bool(env.get("SESSION_COOKIE_HTTPONLY"), True),
        "SESSION_LIFETIME_DAYS": days,
        "RATELIMIT_ENABLED": _bool(env.get("RATELIMIT_ENABLED"), True),
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "LOGIN_RATE_LIMIT": env.get("LOGIN_RATE_LIMIT", "10/minute"),
        "LOGIN_RATE_LIMIT_PER_ADDRESS": env.get("LOGIN_RATE_LIMIT_PER_ADDRESS", "30/minute"),
        "LOGIN_RATE_LIMIT_PER_ACCOUNT": env.get("LOGIN_RATE_LIMIT_PER_ACCOUNT", "20/hour"),
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0),
        "USER_RATE_LIMIT": env.get("USER_RATE_LIMIT", "60/minute"),
        "USER_MAX_STREAMS": _int(env, "USER_MAX_STREAMS", 8),
        "USER_DAILY_TOKENS": _int(env, "USER_DAILY_TOKENS", 0),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 1024 * 1024),
        "NEPTUN_MODELS_FILE": env.get("NEPTUN_MODELS_FILE") or None,
        "NEPTUN_SYSTEM_PROMPT": env.get("NEPTUN_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT),
        "PASSWORD_HASH_COST": env.get("PASSWORD_HASH_COST", "default"),
        "HUGGINGFACE_API_KEY": env.get("HUGGINGFACE_API_KEY") or None,
        "HUGGINGFACE_BASE_URL": env.get(
            "HUGGINGFACE_BASE_URL", "https://router.huggingface.co/hf-inference"),
        "CLOUDFLARE_ACCOUNT_ID": env.get("CLOUDFLARE_ACCOUNT_ID") or None,
        "CLOUDFLARE_API_TOKEN": env.get("CLOUDFLARE_API_TOKEN") or None,
        "CLOUDFLARE_BASE_URL": env.get(
            "CLOUDFLARE_BASE_URL", "https://api.cloudflare.com/client/v4"),
        "OPENROUTER_API_KEY": env.get("OPENROUTER_API_KEY") or None,
        "OPENROUTER_BASE_URL": env.get("OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"),
        "OPENROUTER_APP_URL": env.get("OPENROUTER_APP_URL") or None,
        "OLLAMA_BASE_URL": env.get("OLLAMA_BASE_URL", "http://localhost:11434"),
        "OLLAMA_API_KEY": env.get("OLLAMA_API_KEY") or None,
        "UPSTREAM_CONNECT_TIMEOUT": _float(env, "UPSTREAM_CONNECT_TIMEOUT", 10.0),
        "UPSTREAM_FIRST_TOKEN_TIMEOUT": _float(env, "UPSTREAM_FIRST_TOKEN_TIMEOUT", 60.0),
        "UPSTREAM_IDLE_TIMEOUT": _float(env, "UPSTREAM_IDLE_TIMEOUT", 60.0),
        "UPSTREAM_TOTAL_TIMEOUT": _float(env, "UPSTREAM_TOTAL_TIMEOUT", 600.0),
        "UPSTREAM_RETRIES": _at_least_zero(env, "UPSTREAM_RETRIES", 2),
        "UPSTREAM_RETRY_MAX_WAIT": _at_least_zero(env, "UPSTREAM_RETRY_MAX_WAIT", 5.0, float),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
        "LOG_FORMAT": log_format(env),
        "REDIS_URL": env.get("REDIS_URL") or None,
        "REDIS_KEY_PREFIX": env.get("REDIS_KEY_PREFIX", "neptun:"),
        "STREAM_DETACH_GRACE_SECONDS": _float(env, "STREAM_DETACH_GRACE_SECONDS", 20.0),
        "STREAM_REAP_SECONDS": _float(env, "STREAM_REAP_SECONDS", 60.0),
        "REPLY_RETRY_SECONDS": _float(env, "REPLY_RETRY_SECONDS", 120.0),
        "NEPTUN_WEB_DIST": env.get("NEPTUN_WEB_DIST") or None,
        "METRICS_ENABLED": _bool(env.get("METRICS_ENABLED"), False),
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        "CORS_ORIGINS": [origin.strip().rstrip("/") for origin in
                         env.get("CORS_ORIGINS", "").split(",") if origin.strip()],
    }
