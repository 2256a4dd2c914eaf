"""The real Alembic migrations run up, down and up again on a fresh database of the run's kind."""
from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from neptun_flask import create_app
from neptun_flask.extensions import db
from tests.conftest import POSTGRES_URL, make_test_config, postgres_database

MIGRATIONS = str(Path(__file__).resolve().parents[2] / "neptun_flask" / "migrations")
# Migrations are checked on both databases in every run: PostgreSQL runs on every machine.
PG_SERVER_URL = POSTGRES_URL or "postgresql://postgres@127.0.0.1:5432/test"
TABLES = {"users", "sessions", "chats", "chat_messages", "generations", "generation_events",
          "api_keys"}


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request, tmp_path):
    """An empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    with postgres_database(PG_SERVER_URL, prefix="neptun_migrate") as url:
        yield url


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
