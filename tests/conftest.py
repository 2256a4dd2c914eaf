"""Shared fixtures: a real database (SQLite file, or a fresh PostgreSQL database), the app, clients."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from neptun_flask import create_app
from neptun_flask.extensions import db, limiter

#: Set to a PostgreSQL server URL (e.g. postgresql://postgres@127.0.0.1:5432/test) to run the
#: suite on PostgreSQL: the suite creates its own database there and drops it at the end.
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")


@contextmanager
def postgres_database(server_url: str, prefix: str = "neptun_test"):
    """Create a uniquely named database on a PostgreSQL server; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url.replace("postgresql://", "postgresql+psycopg://", 1),
                           isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    """A database of this run's own, on SQLite or PostgreSQL."""
    if not POSTGRES_URL:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        return
    with postgres_database(POSTGRES_URL) as url:
        yield url


def make_test_config(database_url: str, **overrides) -> dict:
    """The config every test app starts from."""
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "PASSWORD_HASH_COST": "low",
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def migrated(database_url):
    """Run the real migrations once per session."""
    app = create_app(make_test_config(database_url))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return database_url


@pytest.fixture
def app_factory(migrated):
    """Build apps on the migrated database; tables are emptied after each test."""
    apps = []

    def factory(**overrides):
        app = create_app(make_test_config(migrated, **overrides))
        apps.append(app)
        return app

    yield factory
    if apps:
        with apps[0].app_context():
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(table.delete())
            db.session.commit()
    for app in apps:
        with app.app_context():
            limiter.reset()
            db.engine.dispose()


@pytest.fixture
def app(app_factory):
    """The app with the default test config."""
    return app_factory()


@pytest.fixture
def client(app):
    """A test client."""
    return app.test_client()


def sign_up(client, email="user@example.com", password="correct horse"):
    """Create an account through the API; the client keeps its cookie. Returns the user id."""
    response = client.post("/api/auth/sign-up", json={"email": email, "password": password})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["user"]["id"]


@pytest.fixture
def user_id(client):
    """A signed-up, logged-in user on ``client``."""
    return sign_up(client)
