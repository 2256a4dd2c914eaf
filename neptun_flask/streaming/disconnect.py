"""Noticing a client that went away while the upstream is quiet (gunicorn + gevent only).

A WSGI server only learns of a disconnect when a write fails, so a stalled upstream would keep
its connection open for as long as the idle timeout. Under gunicorn's gevent worker an event
loop watcher waits for the client socket to become readable (no greenlet per stream: a
streaming client sends nothing, so the watcher costs a start and a stop). Readable means EOF,
a reset, or the bytes of a pipelined next request; a short-lived greenlet peeks to tell which.

A reset (or any error) is a disconnect. EOF is not always one: a client that half-closed its
sending side after a complete request still reads the reply, and EOF looks the same as a full
close. Only a write tells them apart (a closed peer answers it with a reset, and the next write
fails), so on EOF the watcher stops (the socket stays readable from then on) and hands over to
``on_eof``: the reader probes with writes of its own (reader.py).
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


def watch_disconnect(environ: dict, on_disconnect: Callable[[], None],
                     on_eof: Callable[[], None]) -> Callable[[], None]:
    """Start watching the client socket: ``on_disconnect`` when it fails, ``on_eof`` (once, and
    the watch ends) when the client closed its sending side; returns a function that stops
    watching."""
    sock = client_socket(environ)
    if sock is None:
        return stop_nothing
    return _Watch(sock, on_disconnect, on_eof).stop


def client_socket(environ: dict):
    """The request's client socket when served by gunicorn's gevent worker (its event loop can
    watch it), else None."""
    sock = environ.get("gunicorn.socket")
    if sock is None or gevent is None or not monkey.is_module_patched("socket"):
        return None
    return sock


class _Watch:
    """One client socket's watcher."""

    __slots__ = ("_sock", "_on_disconnect", "_on_eof", "_loop", "_io", "_timer", "_stopped")

    def __init__(self, sock, on_disconnect: Callable[[], None],
                 on_eof: Callable[[], None]) -> None:
        self._sock = sock
        self._on_disconnect = on_disconnect
        self._on_eof = on_eof
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
        """An error is a disconnect, EOF a half or a full close (``on_eof`` finds out which);
        bytes of a next request are neither: look again later."""
        try:
            peeked = self._sock.recv(1, socket.MSG_PEEK)
        except socket.timeout:
            peeked = None  # the worker's own socket timeout is not a disconnect
        except OSError:
            peeked = False
        if self._stopped:
            return
        if peeked is False or peeked == b"":
            callback = self._on_disconnect if peeked is False else self._on_eof
            self.stop()
            callback()
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
        self._io = self._timer = self._on_disconnect = self._on_eof = None


def stop_nothing() -> None:
    """Nothing to stop."""
