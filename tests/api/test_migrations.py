"""The real Alembic migrations run up, down and up again on a fresh database of the run's kind."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from neptun_flask import create_app
from neptun_flask.extensions import db
from tests.conftest import POSTGRES_URL, make_test_config

MIGRATIONS = str(Path(__file__).resolve().parents[2] / "migrations")
# Migrations are checked on both databases in every run: PostgreSQL runs on every machine.
PG_SERVER_URL = POSTGRES_URL or "postgresql://postgres@127.0.0.1:5432/test"
TABLES = {"users", "sessions", "chats", "chat_messages"}


def _admin_engine():
    """An autocommit engine on the PostgreSQL server, for CREATE/DROP DATABASE."""
    url = PG_SERVER_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    return create_engine(url, isolation_level="AUTOCOMMIT")


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request, tmp_path):
    """An empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    name = f"neptun_migrate_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def table_names() -> set[str]:
    """Tables in the app's database right now."""
    db.engine.dispose()  # forget cached reflection state between migration steps
    return set(inspect(db.engine).get_table_names())


def schema_drift() -> list:
    """Differences between the migrated schema and the models."""
    with db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), db.metadata)


def test_migrations_up_down_up(fresh_database_url):
    """Upgrade creates every table matching the models; downgrade to base removes them all."""
    app = create_app(make_test_config(fresh_database_url))
    with app.app_context():
        try:
            assert table_names() == set()
            upgrade(directory=MIGRATIONS)
            assert table_names() == TABLES | {"alembic_version"}
            assert schema_drift() == []
            downgrade(directory=MIGRATIONS, revision="base")
            assert table_names() <= {"alembic_version"}
            upgrade(directory=MIGRATIONS)
            assert table_names() == TABLES | {"alembic_version"}
            assert schema_drift() == []
        finally:
            db.engine.dispose()
