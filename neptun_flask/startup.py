"""Refusing to start, in one line: a startup error is printed as its message alone, never a
traceback, by gunicorn and by the ``flask`` command; and a server does not start on a database
its migrations have not reached."""
from __future__ import annotations

import logging
import os

from click import ClickException, get_current_context
from gunicorn.errors import AppImportError

log = logging.getLogger(__name__)

UPGRADE_COMMAND = "flask --app neptun_flask db upgrade"


class StartupError(ClickException, AppImportError, RuntimeError):
    """A setting or the database is unfit to start with. gunicorn prints an AppImportError's
    message alone and stops ("App failed to load", exit 4); the ``flask`` command prints a
    ClickException as ``Error: <message>`` (exit 1); elsewhere it is a RuntimeError."""

    def __str__(self) -> str:
        return self.message


def is_serving() -> bool:
    """This process is about to serve requests: under gunicorn (which sets SERVER_SOFTWARE in
    its master, inherited by the workers) or ``flask run``; not a ``flask db`` command, a
    script or the tests."""
    if os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
        return True
    context = get_current_context(silent=True)
    return context is not None and context.command.name == "run"


def check_schema(engine, directory: str) -> None:
    """Refuse to serve a database behind the migrations (or ahead of them: an older release
    on a newer schema); an unreachable database is only logged (/health reports it), so that
    a database restart never stops a restarting worker for good."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import SQLAlchemyError

    heads = set(ScriptDirectory(directory).get_heads())
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as error:
        log.warning("database unreachable at startup (%s): schema not checked",
                    type(error).__name__)
        return
    finally:
        engine.dispose()   # no connection made before a fork is shared with the workers
    if current != heads:
        at = ", ".join(sorted(current)) or "no migration"
        raise StartupError(f"The database is not migrated (at {at}, this release needs "
                           f"{', '.join(sorted(heads))}): run `{UPGRADE_COMMAND}` first")
