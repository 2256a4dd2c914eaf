"""Logs never carry what users sent: with LOG_LEVEL=DEBUG and a failing database, neither
SQLAlchemy's statement log nor the logged traceback holds statement parameters (a chat
message, an email, a password hash)."""
from __future__ import annotations

import logging

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from neptun_flask import create_app
from neptun_flask.extensions import db
from tests.api.helpers import assert_error, create_chat
from tests.conftest import POSTGRES_URL, make_test_config, postgres_database, sign_up

EMAIL = "leaky.address@example.com"
SECRET = "my very private chat message 7f3a"
CLOSED = "http://127.0.0.1:9"   # nothing listens: the upstream is never reached anyway


@pytest.fixture
def own_app(tmp_path):
    """An app at LOG_LEVEL=DEBUG on a migrated database of this test's own (a SQLite file, or a
    new PostgreSQL database), which the test may break."""
    def build(url: str):
        app = create_app(make_test_config(url, LOG_LEVEL="DEBUG", OLLAMA_BASE_URL=CLOSED))
        with app.app_context():
            upgrade()
        return app

    if POSTGRES_URL:
        with postgres_database(POSTGRES_URL, prefix="neptun_logs") as url:
            app = build(url)
            yield app
            with app.app_context():
                db.engine.dispose()
    else:
        app = build(f"sqlite:///{tmp_path / 'logs.sqlite3'}")
        yield app
        with app.app_context():
            db.engine.dispose()


def drop_table(app, table: str) -> None:
    """Break the database under the app: drop ``table`` (and, on PostgreSQL, what references
    it)."""
    with app.app_context():
        cascade = " CASCADE" if db.engine.dialect.name == "postgresql" else ""
        db.session.execute(text(f"DROP TABLE {table}{cascade}"))
        db.session.commit()


def refuse_inserts(app, table: str) -> None:
    """Break the database under the app: every insert into ``table`` fails (a trigger), while
    reading it still works."""
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql "
                                    "AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$"))
            db.session.execute(text(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                                    "FOR EACH ROW EXECUTE FUNCTION refuse()"))
        else:
            # (RAISE() would be a constraint error, which the chat route answers as 404.)
            db.session.execute(text(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                                    "BEGIN INSERT INTO no_such_table VALUES (1); END"))
        db.session.commit()


@pytest.fixture
def debug_logs(caplog):
    """Capture every log record at DEBUG, SQLAlchemy's statement log included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    return caplog


def assert_failed(response, caplog) -> None:
    """The request failed as a 500 whose traceback was logged, or (SQLite reports a missing
    table as an operational error) as 503 "Database unavailable"; and SQLAlchemy logged its
    statements: the logs checked below are the ones that used to carry the parameters."""
    if response.status_code == 503:
        assert_error(response, 503, "Database unavailable")
        assert "database unavailable: OperationalError" in caplog.text
    else:
        assert_error(response, 500, "Internal Server Error")
        assert "unhandled error" in caplog.text and "Traceback" in caplog.text
    assert [r for r in caplog.records if r.name.startswith("sqlalchemy.engine")]


def test_failed_sign_up_logs_neither_email_nor_hash(own_app, debug_logs):
    """A sign-up whose insert fails is a 500; the logs hold neither the email nor the
    argon2 hash that were the statement's parameters."""
    drop_table(own_app, "users")
    response = own_app.test_client().post(
        "/api/auth/sign-up", json={"email": EMAIL, "password": "correct horse"})
    assert_failed(response, debug_logs)
    assert "INSERT INTO users" in debug_logs.text
    for leak in (EMAIL, "leaky.address", "$argon2"):
        assert leak not in debug_logs.text


def test_failed_message_insert_logs_no_message_text(own_app, debug_logs):
    """A chat request whose user message cannot be stored is a 500; the logs hold neither
    the message text nor the email of the user."""
    client = own_app.test_client()
    user_id = sign_up(client, EMAIL)
    chat_id = create_chat(client, user_id)["id"]
    refuse_inserts(own_app, "chat_messages")
    debug_logs.clear()
    response = client.post(f"/api/ai/ollama/rwkv-6-world/chat?chat_id={chat_id}",
                           json={"messages": [{"role": "user", "content": SECRET}]})
    assert_failed(response, debug_logs)
    assert "INSERT INTO chat_messages" in debug_logs.text
    for leak in (SECRET, "very private", EMAIL):
        assert leak not in debug_logs.text
