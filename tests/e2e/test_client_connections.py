"""End to end: clients at the socket level. One that half-closes its sending side after a
complete request still gets its whole reply (a write, not EOF, tells it from one that left);
one that never reads is cut off once the reply's time limit (UPSTREAM_TOTAL_TIMEOUT) and a
margin have passed, so it holds neither the worker's connection nor the upstream's."""
from __future__ import annotations

import json
import socket
import time

import pytest

from tests.fakes.protocols import expected_text

from .conftest import TIMEOUT_ENV, Client
from .server import Gunicorn, upstream_env
from .streams import parse_data_stream, parse_ui_stream
from .test_generations import Live, closed_entry, tagged, wait_stored
from .test_ui_stream import sdk5_body

PATH = "ollama/rwkv-6-world"
MODEL = "ollama/rwkv-6-world"
#: Five tokens 300 ms apart: quiet spells longer than a reader's probe interval.
SLOW = {"tokens": 5, "delay_ms": 300}
#: A long reply sent fast: 80,000 tokens over 4 s or more (on a model that allows that many),
#: so that a client that never reads fills the socket buffers (the server's send buffer grows
#: to 4 MiB here: OpenAI chunks, some 190 bytes a token, pass that within the first second)
#: while the run still reads past a 2 s time limit.
LONG_FAST = {"tokens": 80000, "delay_ms": 0.05}
LONG_MODEL = "openrouter/deepseek-chat"


# --- raw HTTP/1.1 over a socket ----------------------------------------------------------------

def send_request(base_url: str, method: str, path: str, cookie: str, body: dict | None = None,
                 receive_buffer: int | None = None) -> socket.socket:
    """A connection that has sent one complete request (and asks to close after it)."""
    host, port = base_url.rsplit("/", 1)[1].split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connecting: it sets the window the server sees
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect((host, int(port)))
    data = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: neptun-session={cookie}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\n\r\n")
    sock.sendall(head.encode() + data)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read to EOF; the status and the de-chunked body."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = b""
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n", "the chunked body ends cleanly"
            return status, body
        body, rest = body + rest[:size], rest[size + 2:]


def half_closed(sock: socket.socket) -> tuple[int, bytes]:
    """Close the sending side (the request is complete), then read the whole answer."""
    sock.shutdown(socket.SHUT_WR)
    return read_response(sock)


# --- half-closing clients ----------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["data", "ui", "text"])
def test_a_half_closed_client_gets_its_whole_reply(server, protocol):
    """POST, SHUT_WR, read: the whole reply with its finish part, stored as ``stop`` (it was
    stored as ``aborted`` when EOF counted as a disconnect). The SSE and data protocols write
    keep-alives in the quiet spells: bytes their clients ignore."""
    api = Client(server.base_url)
    chat_id = api.create_chat(MODEL)
    path = f"/api/ai/{PATH}/chat?chat_id={chat_id}"
    text = tagged(**SLOW)
    if protocol == "ui":
        body = sdk5_body(text, chat_id)
    else:
        body = {"messages": [{"role": "user", "content": text}]}
        path += f"&stream_protocol={protocol}"
    status, reply = half_closed(send_request(server.base_url, "POST", path, api.cookie, body))
    assert status == 200
    if protocol == "data":
        parsed = parse_data_stream(reply.decode())
        assert parsed.finish["finishReason"] == "stop"
        assert b"2:[]\n" in reply
    elif protocol == "ui":
        parsed = parse_ui_stream(reply.decode())
        assert parsed.metadata["finishReason"] == "stop"
        assert b"\n: \n\n" in reply
    else:
        parsed = None
    assert (parsed.text if parsed else reply.decode()) == expected_text(5)
    stored = wait_stored(api, chat_id, {"stop", "aborted", "error"})
    assert [(m["finish_reason"], m["message"]) for m in stored[1:]] == [("stop", expected_text(5))]


def test_a_half_closed_openai_client_gets_its_whole_reply(server):
    """The same on /v1/chat/completions: every chunk, the finish chunk and [DONE]."""
    api = Client(server.base_url)
    body = {"model": MODEL, "stream": True,
            "messages": [{"role": "user", "content": tagged(**SLOW)}]}
    status, reply = half_closed(send_request(server.base_url, "POST", "/v1/chat/completions",
                                             api.cookie, body))
    assert status == 200
    events = reply.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert ": " in events, "a keep-alive comment"
    chunks = [json.loads(event[6:]) for event in events[:-2] if event != ": "]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                   if c["choices"]) == expected_text(5)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.fixture(scope="module")
def two_instances(upstream, migrated):
    """Two gunicorn masters of one worker each on one database: a chat's generation runs on
    the first, and a resume on the second reads it from the shared log. The second allows a
    reply 2 s (UPSTREAM_TOTAL_TIMEOUT), the first 20 s."""
    settings = {"DATABASE_URL": migrated, **upstream_env(upstream.base_url), **TIMEOUT_ENV}
    first = Gunicorn(settings)
    second = Gunicorn({**settings, "UPSTREAM_TOTAL_TIMEOUT": "2"})
    yield first, second
    first.stop()
    second.stop()


def test_a_half_closed_resume_from_the_shared_log_gets_the_whole_reply(two_instances):
    """A resume on the other instance (a log reader), half-closed, reads to the finish."""
    first, second = two_instances
    api = Client(first.base_url)
    chat_id = api.create_chat(MODEL)
    original = Live(api.chat(PATH, tagged(**SLOW), chat_id, stream=True)).read_parts(1)
    sock = send_request(second.base_url, "GET", f"/api/ai/{PATH}/chat/{chat_id}/stream",
                        api.cookie)
    status, reply = half_closed(sock)
    assert status == 200
    parsed = parse_data_stream(reply.decode())
    assert parsed.text == expected_text(5) and parsed.finish["finishReason"] == "stop"
    assert b"2:[]\n" in reply
    assert original.finish().text == expected_text(5)


# --- clients that never read -------------------------------------------------------------------

def server_holds(server_port: int, client_port: int) -> bool:
    """Whether a process still holds the server's end of the client's connection (a socket
    closed with unsent data lingers in the kernel, owned by no file: inode 0)."""
    wanted = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == wanted:
                return fields[9] != "0"
    return False


def assert_let_go_in_time(sock: socket.socket, server: Gunicorn, started: float) -> None:
    """The server still holds the unread response at 1.5 s, and lets go of it by 4 s after
    ``started``: the time limit (2 s), the margin (1 s), and slack."""
    client_port = sock.getsockname()[1]
    time.sleep(max(0.0, started + 1.5 - time.monotonic()))
    assert server_holds(server.port, client_port), "the response ended early"
    while server_holds(server.port, client_port):
        assert time.monotonic() - started < 4.0, "the server still holds the connection"
        time.sleep(0.05)
    sock.close()


def test_a_client_that_never_reads_is_cut_at_the_time_limit(two_instances, upstream):
    """A streamed completion whose client never reads: the run ends at its 2 s limit and
    releases its upstream connection; the response, blocked in a write with its client's
    window shut, lets go of the client's connection by 2 s + the 1 s margin."""
    server = two_instances[1]
    api = Client(server.base_url)
    text = tagged(**LONG_FAST)
    started = time.monotonic()
    body = {"model": LONG_MODEL, "stream": True, "messages": [{"role": "user", "content": text}]}
    sock = send_request(server.base_url, "POST", "/v1/chat/completions", api.cookie, body,
                        receive_buffer=4096)
    assert_let_go_in_time(sock, server, started)
    assert closed_entry(upstream, text)["closed_at"] - started < 3.0


def test_a_reply_whose_client_never_reads_is_stored_as_error_with_its_text(two_instances,
                                                                           upstream):
    """A chat reply whose client never reads ends at the 2 s limit like any other: stored as
    ``error`` with its text so far, its upstream connection released."""
    server = two_instances[1]
    api = Client(server.base_url)
    chat_id = api.create_chat(LONG_MODEL)
    text = tagged(**LONG_FAST)
    started = time.monotonic()
    sock = send_request(server.base_url, "POST", f"/api/ai/{LONG_MODEL}/chat?chat_id={chat_id}",
                        api.cookie, {"messages": [{"role": "user", "content": text}]},
                        receive_buffer=4096)
    assert closed_entry(upstream, text)["closed_at"] - started < 3.0
    stored = wait_stored(api, chat_id, {"stop", "aborted", "error"})[-1]
    assert stored["finish_reason"] == "error"
    full = expected_text(LONG_FAST["tokens"])
    assert stored["message"] and full.startswith(stored["message"]) and stored["message"] != full
    sock.close()


def test_a_resume_that_never_reads_is_cut_at_the_time_limit(two_instances):
    """A resume from the shared log (on the instance that allows 2 s) whose client never
    reads lets go of its connection by its start + 2 s + the 1 s margin, though the reply
    still runs on the other instance."""
    first, second = two_instances
    api = Client(first.base_url)
    chat_id = api.create_chat(MODEL)
    original = Live(api.chat(PATH, tagged(tokens=400, delay_ms=20), chat_id, stream=True))
    original.read_parts(1)
    started = time.monotonic()
    sock = send_request(second.base_url, "GET",
                        f"/api/ai/{PATH}/chat/{chat_id}/stream?stream_protocol=ui", api.cookie,
                        receive_buffer=4096)
    assert_let_go_in_time(sock, second, started)
    original.close()
