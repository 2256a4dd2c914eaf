"""Upstream bodies are relayed read by read as they arrive, chunked or not."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from neptun_flask.providers import get_adapter
from neptun_flask.providers.base import UpstreamRequest
from neptun_flask.streaming.upstream import Timeouts, iter_reads, open_upstream

FIRST = b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
SECOND = b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\ndata: [DONE]\n\n'
PAUSE = 0.5


def serve_once(head: bytes, parts: list[bytes]) -> tuple[int, threading.Thread]:
    """A one-request HTTP server on 127.0.0.1 that sends ``head`` then each part after a pause,
    then closes the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run():
        with listener:
            connection, _ = listener.accept()
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                length = int(request.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                while len(request.split(b"\r\n\r\n", 1)[1]) < length:
                    request += connection.recv(65536)
                connection.sendall(head + parts[0])
                for part in parts[1:]:
                    time.sleep(PAUSE)
                    connection.sendall(part)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.parametrize("framing", ["chunked", "close-delimited"])
def test_each_read_is_relayed_before_the_rest_arrives(framing):
    if framing == "chunked":
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        parts = [chunk(FIRST), chunk(SECOND) + b"0\r\n\r\n"]
    else:  # no length and no chunking: the body ends when the server closes
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        parts = [FIRST, SECOND]
    port, server = serve_once(head, parts)
    request = UpstreamRequest(url=f"http://127.0.0.1:{port}/chat/completions", json={"x": 1})
    response = open_upstream(request, get_adapter("openrouter"), "openrouter",
                             Timeouts(connect=5, first_token=5, idle=5, total=30))
    try:
        started = time.monotonic()
        reads = iter_reads(response)
        first = next(reads)
        first_at = time.monotonic() - started
        rest = b"".join(reads)
    finally:
        response.close()
    server.join(5)
    assert first == FIRST
    assert first_at < PAUSE / 2, "the first read did not wait for the rest of the body"
    assert first + rest == FIRST + SECOND
