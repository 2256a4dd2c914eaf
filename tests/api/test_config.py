"""Configuration: SECRET_KEY is required outside debug/testing; database URLs are normalised."""
from __future__ import annotations

import pytest

from neptun_flask import create_app
from neptun_flask.config import load_config, normalize_database_url

MEMORY_DB = "sqlite://"


@pytest.fixture
def bare_env(monkeypatch):
    """An environment without SECRET_KEY, FLASK_DEBUG or DATABASE_URL."""
    for name in ("SECRET_KEY", "FLASK_DEBUG", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_missing_secret_key_refuses_to_start(bare_env):
    """Without SECRET_KEY, debug or testing, create_app raises RuntimeError."""
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"TESTING": False, "SQLALCHEMY_DATABASE_URI": MEMORY_DB})


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_debug_off_still_requires_secret_key(bare_env, value):
    """FLASK_DEBUG set to a false value does not waive the secret."""
    bare_env.setenv("FLASK_DEBUG", value)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"TESTING": False, "SQLALCHEMY_DATABASE_URI": MEMORY_DB})


def test_debug_mode_allows_missing_secret_key(bare_env):
    """FLASK_DEBUG=1 starts without SECRET_KEY, with some development secret."""
    bare_env.setenv("FLASK_DEBUG", "1")
    app = create_app({"TESTING": False, "SQLALCHEMY_DATABASE_URI": MEMORY_DB})
    assert app.config["SECRET_KEY"]


def test_testing_allows_missing_secret_key(bare_env):
    """TESTING starts without SECRET_KEY."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": MEMORY_DB})
    assert app.config["SECRET_KEY"]


def test_secret_key_from_environment(bare_env):
    """SECRET_KEY from the environment is used as given."""
    bare_env.setenv("SECRET_KEY", "from-env")
    app = create_app({"TESTING": False, "SQLALCHEMY_DATABASE_URI": MEMORY_DB})
    assert app.config["SECRET_KEY"] == "from-env"


@pytest.mark.parametrize(("url", "expected"), [
    ("postgres://u:p@db.example.com:5432/neptun",
     "postgresql+psycopg://u:p@db.example.com:5432/neptun"),
    ("postgresql://u@localhost/neptun", "postgresql+psycopg://u@localhost/neptun"),
    ("postgresql+psycopg://u@localhost/neptun", "postgresql+psycopg://u@localhost/neptun"),
    ("sqlite:///instance/neptun.sqlite3", "sqlite:///instance/neptun.sqlite3"),
], ids=["heroku-postgres", "postgresql", "already-psycopg", "sqlite"])
def test_normalize_database_url(url, expected):
    """postgres:// and postgresql:// URLs are rewritten to the psycopg 3 driver; others kept."""
    assert normalize_database_url(url) == expected


def test_database_url_from_environment_is_normalised():
    """DATABASE_URL is read through normalize_database_url."""
    config = load_config({"DATABASE_URL": "postgres://u:p@host/db"})
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@host/db"


def test_session_defaults():
    """Sessions default to secure cookies lasting seven days, named neptun-session."""
    config = load_config({})
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["SESSION_COOKIE_PATH"] == "/"
    assert config["SESSION_COOKIE_NAME"] == "neptun-session"
    assert config["SESSION_LIFETIME_DAYS"] == 7


@pytest.mark.parametrize(("env", "key", "expected"), [
    ({"SESSION_COOKIE_SECURE": "false"}, "SESSION_COOKIE_SECURE", False),
    ({"SESSION_COOKIE_SECURE": "0"}, "SESSION_COOKIE_SECURE", False),
    ({"SESSION_LIFETIME_DAYS": "30"}, "SESSION_LIFETIME_DAYS", 30),
    ({"LOGIN_RATE_LIMIT": "3/minute"}, "LOGIN_RATE_LIMIT", "3/minute"),
    ({"MAX_CONTENT_LENGTH": "2048"}, "MAX_CONTENT_LENGTH", 2048),
], ids=["secure-false", "secure-0", "lifetime", "rate-limit", "max-content-length"])
def test_environment_overrides(env, key, expected):
    """Environment variables override the defaults."""
    assert load_config(env)[key] == expected


def test_bad_integer_setting_is_clear_error():
    """A non-integer SESSION_LIFETIME_DAYS stops startup with a message naming it."""
    with pytest.raises(RuntimeError, match="SESSION_LIFETIME_DAYS"):
        load_config({"SESSION_LIFETIME_DAYS": "a week"})
