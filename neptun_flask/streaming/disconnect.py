"""Noticing a client that went away while the upstream is quiet (gunicorn + gevent only).

A WSGI server only learns of a disconnect when a write fails, so a stalled upstream would keep
its connection open for as long as the idle timeout. Under gunicorn's gevent worker an event
loop watcher waits for the client socket to become readable (no greenlet per stream: a
streaming client sends nothing, so the watcher costs a start and a stop). Readable means EOF,
a reset, or the bytes of a pipelined next request; a short-lived greenlet peeks to tell which.
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

_READ = 1           # libev/libuv EV_READ
_RECHECK_SECONDS = 0.25  # how soon to look again when the readable bytes were a next request


def watch_disconnect(environ: dict, on_disconnect: Callable[[], None]) -> Callable[[], None]:
    """Start watching the client socket; returns a function that stops watching."""
    sock = environ.get("gunicorn.socket")
    if sock is None or gevent is None or not monkey.is_module_patched("socket"):
        return _noop
    return _Watch(sock, on_disconnect).stop


class _Watch:
    """One client socket's watcher."""

    __slots__ = ("_sock", "_on_disconnect", "_loop", "_io", "_timer", "_stopped")

    def __init__(self, sock, on_disconnect: Callable[[], None]) -> None:
        self._sock = sock
        self._on_disconnect = on_disconnect
        self._loop = gevent.get_hub().loop
        self._io = self._loop.io(sock.fileno(), _READ)
        self._timer = None
        self._stopped = False
        self._io.start(self._readable)

    def _readable(self) -> None:
        """Runs in the hub, which must not block: peek from a greenlet of its own."""
        self._io.stop()
        gevent.spawn(self._check)

    def _check(self) -> None:
        """EOF or an error is a disconnect; bytes of a next request are not: look again later."""
        try:
            gone = not self._sock.recv(1, socket.MSG_PEEK)
        except socket.timeout:
            gone = False  # the worker's own socket timeout is not a disconnect
        except OSError:
            gone = True
        if self._stopped:
            return
        if gone:
            on_disconnect = self._on_disconnect
            self.stop()
            on_disconnect()
            return
        self._timer = self._loop.timer(_RECHECK_SECONDS)
        self._timer.start(self._rearm)

    def _rearm(self) -> None:
        """Watch the socket again after a pause."""
        if not self._stopped:
            self._io.start(self._readable)

    def stop(self) -> None:
        """Stop watching; safe to call more than once. Drops the callbacks, so neither the
        loop's watchers nor the stream are kept alive in a reference cycle."""
        if self._stopped:
            return
        self._stopped = True
        self._io.stop()
        self._io.close()
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
        self._io = self._timer = self._on_disconnect = None


def _noop() -> None:
    """Nothing to stop."""
