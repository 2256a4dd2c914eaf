"""Just enough HTTP/1.1 for the fake upstream: parse requests, build responses, drop connections."""
from __future__ import annotations

import asyncio
import http
import socket
import struct
import time
from typing import Any

try:
    import fcntl
    import termios
except ImportError:  # Windows has neither; a reset then skips waiting for the send queue
    pass

from .protocols import dumps

LAST_CHUNK = b"0\r\n\r\n"


class HttpError(Exception):
    """A request that cannot be parsed; answered with 400 and a closed connection."""


class Request:
    """One parsed HTTP request."""

    __slots__ = ("method", "path", "version", "headers", "body")

    def __init__(self, method: str, path: str, version: str, headers: dict, body: bytes) -> None:
        self.method, self.path, self.version = method, path, version
        self.headers, self.body = headers, body

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 closes it."""
        connection = self.headers.get("connection", "").lower()
        return connection != "close" if self.version == "HTTP/1.1" else connection == "keep-alive"


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one request; None when the client closed the connection between requests."""
    line = await reader.readline()
    while line in (b"\r\n", b"\n"):  # RFC 9112 lets servers skip stray blank lines here
        line = await reader.readline()
    if not line.endswith(b"\n"):
        return None
    try:
        method, target, version = line.decode("latin-1").split()
    except ValueError:
        raise HttpError(f"bad request line {line[:80]!r}") from None
    headers = {}
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length") or 0))
    return Request(method, target.split("?", 1)[0], version, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Read a chunked request body (trailers are skipped)."""
    parts = []
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """Status line and headers, ending with the blank line."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_response(status: int, obj: Any, keep_alive: bool = True, head_only: bool = False,
                  extra: list[tuple[str, str]] | None = None) -> bytes:
    """A complete JSON response with Content-Length."""
    body = dumps(obj)
    headers = [("Content-Type", "application/json; charset=utf-8"),
               ("Content-Length", str(len(body)))] + (extra or [])
    if not keep_alive:
        headers.append(("Connection", "close"))
    return response_head(status, headers) + (b"" if head_only else body)


class Connection:
    """State shared by a connection's request reader and its responder."""

    __slots__ = ("writer", "responder", "peer_closed_at", "closing")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.responder: asyncio.Task | None = None
        self.peer_closed_at: float | None = None
        self.closing = False  # set before the server itself closes, so EOF is not the client's

    def abort(self) -> None:
        """Drop the connection now, discarding anything not yet sent."""
        self.closing = True
        self.writer.transport.abort()

    async def reset(self) -> None:
        """Send RST instead of FIN, once the bytes already written have reached the client.

        An RST discards data the peer has not acknowledged yet, which would make the number of
        tokens a client sees before the reset random; so wait (at most 1 s) for the send queue.
        """
        self.closing = True
        sock = self.writer.get_extra_info("socket")
        deadline = time.monotonic() + 1.0
        while (self.writer.transport.get_write_buffer_size() or _unacked_bytes(sock)) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def _unacked_bytes(sock: Any) -> int:
    """Bytes in the kernel send queue not yet acknowledged (Linux only; elsewhere 0)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, NameError, OSError):
        return 0
    return struct.unpack("i", raw)[0]
