"""Bounds on waiting for PostgreSQL, so a database that stops answering fails requests (503)
instead of hanging them.

A refused or reset connection fails by itself; one that goes silent on an open connection (a
network black hole) does not, and a server-side ``statement_timeout`` never reaches a server
that does not get the statement. So under gevent every statement, and the ping that checks a
pooled connection before use, is watched by a timer of the event loop: when it fires, the
connection's socket is shut down, the driver raises its ``OperationalError``, SQLAlchemy
invalidates the connection and the request answers 503 (errors.py). Outside gevent (``flask
run``) the driver's own timeouts apply.
"""
from __future__ import annotations

import os
import socket

from sqlalchemy import event, exc

try:
    from gevent import get_hub, monkey
except ImportError:  # pragma: no cover - gevent is a dependency
    get_hub = monkey = None

_TIMER = "neptun_statement_timer"


def guard(engine, seconds: float) -> None:
    """Watch ``engine``'s statements and pre-pings (PostgreSQL under gevent only)."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "before_cursor_execute")
    def _arm(connection, cursor, statement, parameters, context, executemany):
        _start(connection.info, connection.connection.dbapi_connection, seconds)

    @event.listens_for(engine, "after_cursor_execute")
    def _disarm(connection, cursor, statement, parameters, context, executemany):
        _stop(connection.info)

    @event.listens_for(engine, "handle_error")
    def _failed(context):
        if context.connection is not None:
            _stop(context.connection.info)

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, proxy):
        """The pooled connection answers within the bound, or the pool takes another one."""
        info = record.info
        _start(info, dbapi_connection, seconds)
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as error:  # noqa: BLE001 - any failure: a dead connection
            raise exc.DisconnectionError() from error
        finally:
            _stop(info)


def _active() -> bool:
    """Whether this process runs under gevent's patched sockets."""
    return monkey is not None and monkey.is_module_patched("socket")


def _start(info: dict, dbapi_connection, seconds: float) -> None:
    """Arm a timer that cuts the connection after ``seconds``."""
    if not _active():
        return
    timer = get_hub().loop.timer(seconds)
    timer.start(_cut, dbapi_connection)
    info[_TIMER] = timer


def _stop(info: dict) -> None:
    """Disarm the connection's timer, if any."""
    timer = info.pop(_TIMER, None)
    if timer is not None:
        timer.stop()
        timer.close()


def _cut(dbapi_connection) -> None:
    """Shut the silent connection's socket down: its waiting reader wakes with an error."""
    try:
        fd = dbapi_connection.pgconn.socket
        duplicate = socket.socket(fileno=os.dup(fd))
    except Exception:  # noqa: BLE001 - already closed
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        duplicate.close()
