"""Bounding how long a response may take (gunicorn + gevent only).

A client that reads slowly or not at all fills the socket buffers, and the response's next
write blocks in the server's sendall for as long as the client stays connected, holding the
response's greenlet, its connection and the reply's parts. One event loop timer per response
(started once, stopped when the response closes: nothing per part) shuts the client socket
down when the response outlives its bound: the blocked write fails, so the server closes the
response, and ``on_cut`` ends a response that was waiting for parts rather than writing.
"""
from __future__ import annotations

import socket
from typing import Callable

try:
    import gevent
except ImportError:  # pragma: no cover - gevent is a dependency, but keep flask run working
    gevent = None

from .disconnect import client_socket, stop_nothing


def cut_after(environ: dict, seconds: float, on_cut: Callable[[], None]) -> Callable[[], None]:
    """Cut the client connection in ``seconds``, then call ``on_cut``, unless the returned
    function (which is safe to call more than once) is called first."""
    sock = client_socket(environ)
    if sock is None:
        return stop_nothing
    return _Deadline(sock, seconds, on_cut).stop


class _Deadline:
    """One response's timer."""

    __slots__ = ("_sock", "_on_cut", "_timer")

    def __init__(self, sock, seconds: float, on_cut: Callable[[], None]) -> None:
        self._sock = sock
        self._on_cut = on_cut
        self._timer = gevent.get_hub().loop.timer(seconds)
        self._timer.start(self._expired)

    def _expired(self) -> None:
        """Runs in the hub, which must not block: cut from a greenlet of its own."""
        gevent.spawn(self._cut)

    def _cut(self) -> None:
        """Shut the socket down both ways (a write blocked on it fails at once), then tell the
        response."""
        on_cut, sock = self._on_cut, self._sock
        if on_cut is None:
            return   # the response closed in the meantime
        self.stop()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone
        on_cut()

    def stop(self) -> None:
        """Stop the timer; safe to call more than once. Drops the callback, so neither the
        loop's timer nor the response is kept alive in a reference cycle."""
        if self._timer is None:
            return
        self._timer.stop()
        self._timer.close()
        self._timer = self._sock = self._on_cut = None

