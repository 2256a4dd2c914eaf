"""Readers: WSGI response iterables that send a reply's parts in one client protocol.

``RunReader`` follows a run of this process in memory (the POST's own response, and resumes
or repeats that land on the owner's process); ``LogReader`` sends parts read from the shared
log by an iterator the ai layer passes in (a run of another process or instance).

A client that closed its sending side (EOF, see disconnect.py) may have closed the whole
connection or only half of it; the reader finds out by writing. From then on, whenever it has
had nothing to write for a moment, it writes its protocol's keep-alive (bytes clients ignore):
to a closed client the first write is answered with a reset and a later one fails, which makes
the server close the response. A plain-text reply has no such bytes; there the next part's
write finds out, and a silent upstream is bounded by its idle timeout.

No response outlives its start by more than the reply's time limit (UPSTREAM_TOTAL_TIMEOUT)
and a margin: a client that stops reading would otherwise hold it in a blocked write
(deadline.py).
"""
from __future__ import annotations

import socket
from collections.abc import Iterator

from .. import metrics
from .deadline import cut_after
from .disconnect import watch_disconnect
from .protocol import Encoder, TextEncoder, encode
from .run import Run


#: Seconds a response may take beyond the reply's time limit before its connection is cut.
LIMIT_MARGIN = 1.0
#: Seconds without a write after which a reader whose client closed its sending side probes.
PROBE_SECONDS = 0.15


class StreamCut(Exception):
    """Raised at the end of a plain-text stream that failed, so the server cuts the connection
    instead of ending the chunked body cleanly: plain text has no in-band error channel."""


class RunReader:
    """Sends a local run's parts from its first one, then live, until the finish part."""

    def __init__(self, run: Run, encoder: Encoder, environ: dict):
        self._run = run
        self._encoder = encoder
        self._wakeup = run.attach()
        self._closed = False
        self._probing = False   # the client closed its sending side: keep-alives while quiet
        self._generator = None
        self._client_socket = environ.get("gunicorn.socket")
        self._stop_watch = watch_disconnect(environ, self._gone, self._eof)
        self._stop_deadline = cut_after(environ, run.time_limit + LIMIT_MARGIN, self._gone)
        metrics.stream_opened()

    def __iter__(self):
        self._generator = self._generate()
        return self._generator

    def _generate(self):
        """The body: every part of the log, in order, each once; waits while there is none
        (a probing reader writes a keep-alive when it waited ``PROBE_SECONDS`` for nothing)."""
        run = self._run
        parts = run.parts
        wakeup = self._wakeup
        encoder = self._encoder
        sent = 0
        while not self._closed:
            count = len(parts)
            if sent < count:
                chunk = encode(encoder, parts[sent:count])
                sent = count
                if chunk:
                    yield chunk
                continue
            if run.done:
                break
            wakeup.clear()
            if sent == len(parts) and not run.done:
                if not self._probing:
                    wakeup.wait()
                elif not wakeup.wait(PROBE_SECONDS):
                    yield encoder.keepalive
            if self._closed:
                return
        if run.reason == "error" and isinstance(encoder, TextEncoder):
            self._cut_client_connection()

    def _cut_client_connection(self) -> None:
        """End a failed plain-text reply without the chunked terminator, so the client sees an
        incomplete body. Under gunicorn, shutting the socket makes its final write fail quietly
        (EPIPE is ignored); other servers cut the connection when the iterable raises."""
        self._stop_watch()
        sock = self._client_socket
        if sock is None:
            raise StreamCut(self._run.reply.error)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def _eof(self) -> None:
        """The watcher saw the client close its sending side (from a greenlet of its own):
        probe from now on, if the protocol can; wake this reader's greenlet to start."""
        if not self._closed and self._encoder.keepalive:
            self._probing = True
            self._wakeup.set()

    def _gone(self) -> None:
        """The watcher saw the client leave, or the deadline cut it (from a greenlet of its
        own): leave the run and wake this reader's greenlet, which ends its body by itself. The
        body generator belongs to that greenlet: closing it from here would switch into a
        running frame."""
        if self._closed:
            return
        self._closed = True
        self._stop_watch()
        self._stop_deadline()
        self._run.detach(self._wakeup)
        self._wakeup.set()
        metrics.stream_closed()

    def close(self) -> None:
        """Called by the WSGI server at the end, in the request's greenlet."""
        self._gone()
        if self._generator is not None:
            self._generator.close()


class LogReader:
    """Sends the part lists an iterator yields (a tail of the shared log) until it ends; the
    iterator yields an empty list after each empty poll, so a client that left is noticed
    within a poll (a probing reader writes a keep-alive there). ``time_limit``: the reply's
    (UPSTREAM_TOTAL_TIMEOUT)."""

    def __init__(self, batches: Iterator[list], encoder: Encoder, environ: dict,
                 time_limit: float):
        self._batches = batches
        self._encoder = encoder
        self._gone = False
        self._closed = False
        self._probing = False
        self._stop_watch = watch_disconnect(environ, self._left, self._eof)
        self._stop_deadline = cut_after(environ, time_limit + LIMIT_MARGIN, self._left)
        self._generator = None
        metrics.stream_opened()

    def __iter__(self):
        self._generator = self._generate()
        return self._generator

    def _generate(self):
        for parts in self._batches:
            if self._gone:
                return
            if parts:
                chunk = encode(self._encoder, parts)
                if chunk:
                    yield chunk
            elif self._probing:
                yield self._encoder.keepalive

    def _eof(self) -> None:
        """The watcher saw the client close its sending side: probe at each empty poll from
        now on, if the protocol can."""
        self._probing = bool(self._encoder.keepalive)

    def _left(self) -> None:
        """The watcher saw the client leave, or the deadline cut it: the body ends at the next
        batch or poll."""
        self._gone = True
        self._stop_watch()
        self._stop_deadline()

    def close(self) -> None:
        """Called by the WSGI server at the end, in the request's greenlet."""
        self._left()
        if not self._closed:
            self._closed = True
            metrics.stream_closed()
        if self._generator is not None:
            self._generator.close()
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()
