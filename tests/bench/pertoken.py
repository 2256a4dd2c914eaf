"""CPU per relayed token in process: the service's relay against a pass-through, no waiting.

``python -m tests.bench.pertoken`` feeds one whole chunked OpenRouter stream of N tokens (the
fake upstream's bytes) through a socket pair, so every read is already buffered and only the
Python of the two relays is timed: the service's ``Run`` and its ``RunReader`` (framing, JSON,
the adapter, the reply's parts, the data-protocol encoding) and the bare relay's ``iter_content`` pass-through. It
prints the best of many runs, in microseconds per token.
"""
from __future__ import annotations

import argparse
import http.client
import socket
import time

import requests
from urllib3.response import HTTPResponse

from neptun_flask.providers import get_adapter
from neptun_flask.providers.base import UpstreamRequest
from neptun_flask.streaming.protocol import new_encoder
from neptun_flask.streaming.reader import RunReader
from neptun_flask.streaming.run import Run
from neptun_flask.streaming.upstream import Timeouts
from tests.fakes.protocols import REPLIES

_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n")


def stream_bytes(tokens: int) -> bytes:
    """A whole chunked OpenRouter response of ``tokens`` tokens, as the fake sends it."""
    reply = REPLIES["openrouter"]({"model": "m", "stream": True,
                                   "messages": [{"role": "user", "content": "Hi"}]}, "Hi")
    return _HEAD + b"".join(data for _, data in reply.events(None, tokens, "stop", True)) \
        + b"0\r\n\r\n"


def open_response(data: bytes) -> tuple[requests.Response, socket.socket]:
    """A streamed ``requests`` response whose socket already holds all of ``data``."""
    ours, theirs = socket.socketpair()
    theirs.sendall(data)
    theirs.close()
    original = http.client.HTTPResponse(ours, method="POST")
    original.begin()
    response = requests.Response()
    response.status_code = 200
    response.raw = HTTPResponse(body=original, headers=dict(original.getheaders()), status=200,
                                preload_content=False, original_response=original)
    return response, ours


def service(data: bytes) -> float:
    """Seconds the service's relay takes for the whole stream."""
    response, sock = open_response(data)
    started = time.perf_counter()
    run = Run(response=response, adapter=get_adapter("openrouter"),
              request=UpstreamRequest(url="http://upstream", json={}),
              timeouts=Timeouts(10, 60, 60, 600), model_id="m", max_tokens=10_000,
              message_id="msg-1", key=None, resumable=False, on_end=lambda run, tail: None)
    reader = RunReader(run, new_encoder("data"), {})
    run.prime()
    run.drive()    # in this process's one thread: the reads, then the reader's encoding
    for _ in reader:
        pass
    reader.close()
    elapsed = time.perf_counter() - started
    sock.close()
    return elapsed


def pass_through(data: bytes) -> float:
    """Seconds the bare relay's generator (``iter_content`` chunks, unchanged) takes."""
    response, sock = open_response(data)
    started = time.perf_counter()
    for _ in response.iter_content(chunk_size=None):
        pass
    response.close()
    elapsed = time.perf_counter() - started
    sock.close()
    return elapsed


def main() -> None:
    """Print the best per-token time of each relay."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.pertoken", description=__doc__)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    data = stream_bytes(args.tokens)
    for name, relay in (("service relay", service), ("pass-through", pass_through)):
        for _ in range(30):
            relay(data)  # warm up
        best = min(relay(data) for _ in range(args.runs))
        print(f"{name:>13}: {best / args.tokens * 1e6:.2f} us per token")


if __name__ == "__main__":
    main()
