"""Noticing a client that went away while the upstream is quiet (gunicorn + gevent only).

A WSGI server only learns of a disconnect when a write fails, so a stalled upstream would keep
its connection open for as long as the idle timeout. Under gunicorn's gevent worker a greenlet
peeks at the client socket and fires a callback on EOF, which closes the upstream at once.
"""
from __future__ import annotations

import socket
from typing import Callable

try:
    import gevent
    from gevent import monkey
except ImportError:  # pragma: no cover - gevent is a dependency, but keep flask run working
    gevent = None
    monkey = None


def watch_disconnect(environ: dict, on_disconnect: Callable[[], None]) -> Callable[[], None]:
    """Start watching the client socket; returns a function that stops watching."""
    sock = environ.get("gunicorn.socket")
    if sock is None or gevent is None or not monkey.is_module_patched("socket"):
        return _noop
    watcher = gevent.spawn(_watch, sock, on_disconnect)
    return watcher.kill


def _watch(sock, on_disconnect: Callable[[], None]) -> None:
    """Wait for EOF on the client socket without consuming pipelined bytes."""
    while True:
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except socket.timeout:
            continue  # the worker's own socket timeout is not a disconnect
        except OSError:
            break
        if not data:
            break
        gevent.sleep(0.25)  # bytes of a next request are not a close: look again later
    on_disconnect()


def _noop() -> None:
    """Nothing to stop."""
