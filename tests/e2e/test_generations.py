"""End to end: generations outlive their connection. Resume after a disconnect (on either
worker, or on another instance), stop from anywhere, the grace window of resumable requests,
a killed or terminated worker, and retries that never duplicate a turn.

Every server here runs ``gunicorn -k gevent -w 2``, with the shared log in the SQL database
(the run's SQLite or PostgreSQL) and again in Redis (a key prefix of the test's own).
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, select

from neptun_flask.config import normalize_database_url
from neptun_flask.models import ChatMessage
from tests.conftest import postgres_database
from tests.fakes.protocols import expected_text

from .conftest import TIMEOUT_ENV, Client
from .server import Gunicorn, migrate, upstream_env
from .streams import parse_data_stream, parse_ui_stream
from .test_streaming import directive

PATH = "ollama/rwkv-6-world"
MODEL = "ollama/rwkv-6-world"
REDIS_URL = "redis://127.0.0.1:6379/9"
PG_SERVER_URL = os.environ.get("TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"


def log_env(kind: str) -> dict[str, str]:
    """Settings for a shared log of ``kind``: the SQL database, or Redis."""
    if kind == "sql":
        return {}
    return {"REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": f"neptun-test-{uuid.uuid4().hex}:"}


def serve(upstream, database_url: str, log_kind: str, workers: int = 2, **settings) -> Gunicorn:
    """The app under gunicorn + gevent, talking to the fake upstream."""
    return Gunicorn({"DATABASE_URL": database_url, **upstream_env(upstream.base_url),
                     **TIMEOUT_ENV, **log_env(log_kind),
                     **{key: str(value) for key, value in settings.items()}}, workers=workers)


@pytest.fixture(scope="module", params=["sql", "redis"])
def pair(request, upstream, migrated):
    """Two workers on the run's database; the shared log in SQL or in Redis."""
    process = serve(upstream, migrated, request.param, STREAM_DETACH_GRACE_SECONDS=1.5)
    yield process
    process.stop()


def tagged(**scenario) -> str:
    """A unique user message steering the fake (the tag finds its upstream request)."""
    return f"{uuid.uuid4().hex} {directive(**scenario)}"


def closed_entry(upstream, text: str, timeout: float = 10.0) -> dict:
    """That entry once the upstream connection closed."""
    tag = text.split()[0]
    return upstream.wait_for(lambda log: next(
        (e for e in log if tag in json.dumps(e["json"]) and e["closed_at"]), None), timeout)


class Live:
    """A streamed data-protocol response read line by line, from one iterator (dropping a
    half-read iterator closes the connection: a disconnect)."""

    def __init__(self, response: requests.Response):
        assert response.status_code == 200, response.text
        self.response = response
        self._lines = response.iter_lines()
        self.lines: list[bytes] = []

    def read_parts(self, count: int) -> "Live":
        """Read up to and including the ``count``-th text part from here."""
        seen = 0
        for line in self._lines:
            self.lines.append(line)
            seen += line.startswith(b"0:")
            if seen == count:
                return self
        raise AssertionError(f"stream ended after {seen} more text parts")

    def finish(self):
        """Read to the end; the whole stream, parsed."""
        self.lines.extend(self._lines)
        return parse_data_stream(b"\n".join(self.lines).decode() + "\n")

    def message_id(self) -> str:
        """The message id of the start part."""
        return message_id(self.lines)

    def close(self) -> None:
        """Disconnect, as a closed tab does."""
        self.response.close()


def resume(api: Client, chat_id: int, base_url: str | None = None, by_query: bool = False,
           **params) -> requests.Response:
    """Resume the chat on a fresh connection (a new session object, the same cookie)."""
    base = base_url or api.base_url
    url = (f"{base}/api/ai/{PATH}/chat" if by_query
           else f"{base}/api/ai/{PATH}/chat/{chat_id}/stream")
    if by_query:
        params = {"chatId": chat_id, **params}
    return requests.get(url, params=params, cookies={"neptun-session": api.cookie}, timeout=30)


def wait_stored(api: Client, chat_id: int, reasons: set[str], timeout: float = 10.0) -> list:
    """The chat's messages once its last one finished with one of ``reasons``."""
    deadline = time.monotonic() + timeout
    while True:
        stored = api.messages(chat_id)
        if stored and stored[-1]["finish_reason"] in reasons:
            return stored
        if time.monotonic() > deadline:
            raise AssertionError(f"never stored with {reasons}: {stored}")
        time.sleep(0.05)


def message_id(lines: list[bytes]) -> str:
    """The message id of a data stream's start part."""
    assert lines[0].startswith(b"f:")
    return json.loads(lines[0][2:])["messageId"]


# --- resume ------------------------------------------------------------------------------------

@pytest.mark.parametrize("resumable", [True, False])
def test_resume_after_disconnect_gets_the_whole_reply_once(pair, resumable):
    """A 64-token reply, disconnected after 10 parts (a resumable one) or kept open: resumes
    on fresh connections, landing on either worker, each get exactly the whole reply, once, in
    order, with the original message id; the stored reply equals it."""
    api = Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    text = tagged(tokens=64, delay_ms=25)
    params = {"resumable": "true"} if resumable else {}
    original = Live(api.chat(PATH, text, chat_id, stream=True, **params)).read_parts(10)
    if resumable:
        original.close()
    with ThreadPoolExecutor(4) as pool:   # concurrent: each reads until the reply ends
        resumed = list(pool.map(lambda index: resume(api, chat_id, by_query=index % 2 == 1),
                                range(4)))
    for response in resumed:
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-data-stream"] == "v1"
        reply = parse_data_stream(response.text)
        assert reply.text == expected_text(64)
        assert reply.codes[0] == "f" and reply.codes[-2:] == ["e", "d"]
        assert reply.codes.count("f") == 1 and reply.codes.count("d") == 1
        assert message_id(response.content.split(b"\n")) == original.message_id()
        assert reply.finish["finishReason"] == "stop"
    if not resumable:
        assert original.finish().text == expected_text(64)
    stored = wait_stored(api, chat_id, {"stop"})
    assert [(m["actor"], m["finish_reason"]) for m in stored] == [("user", None),
                                                                  ("assistant", "stop")]
    assert stored[1]["message"] == expected_text(64)
    assert original.message_id() == f"msg-{stored[1]['id']}"


def test_resume_when_nothing_runs_is_204_and_checks_like_the_post(pair):
    """204 with no body when the chat has no running generation; 404 for another user's chat
    or a missing one; 401 without a session; 400 for an unknown model."""
    api, other = Client(pair.base_url), Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    for by_query in (False, True):
        response = resume(api, chat_id, by_query=by_query)
        assert (response.status_code, response.content) == (204, b"")
        assert resume(other, chat_id, by_query=by_query).status_code == 404
        assert resume(api, 10**6, by_query=by_query).status_code == 404
    anonymous = requests.get(f"{pair.base_url}/api/ai/{PATH}/chat/{chat_id}/stream", timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["statusCode"] == 401
    unknown = requests.get(f"{pair.base_url}/api/ai/ollama/no-such-model/chat/{chat_id}/stream",
                           cookies={"neptun-session": api.cookie}, timeout=5)
    assert unknown.status_code == 400 and unknown.json()["statusMessage"] == "Invalid model name"


def test_running_reply_is_visible_with_its_text_so_far(pair):
    """While it runs, the stored reply exists with ``finish_reason`` null, status generating,
    and text brought up to date within 2 s."""
    api = Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    response = Live(api.chat(PATH, tagged(tokens=120, delay_ms=25), chat_id, stream=True))
    response.read_parts(20)
    time.sleep(2.2)
    stored = api.messages(chat_id)
    reply = stored[-1]
    assert (reply["actor"], reply["finish_reason"], reply["status"]) == (
        "assistant", None, "generating")
    assert expected_text(120).startswith(reply["message"])
    assert len(reply["message"]) >= len(expected_text(20))
    response.close()


# --- stop --------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["chat", "users"])
def test_stop_ends_every_reader_and_stores_stopped(pair, upstream, route):
    """Stop, from the chat route or the chats route, closes the upstream within 1 s; the
    reader gets the protocol's normal ending; the reply is stored ``stopped`` with its text."""
    api = Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    text = tagged(tokens=400, delay_ms=25)
    response = Live(api.chat(PATH, text, chat_id, stream=True)).read_parts(5)
    url = (f"{pair.base_url}/api/ai/{PATH}/chat/{chat_id}/stop" if route == "chat"
           else f"{pair.base_url}/api/users/{api.user_id}/chats/{chat_id}/stop")
    asked = time.monotonic()
    # From a fresh connection, which may land on the other worker.
    assert requests.post(url, cookies={"neptun-session": api.cookie}, timeout=5).status_code == 204
    entry = closed_entry(upstream, text)
    assert entry["closed_at"] - asked < 1.0
    reply = response.finish()
    assert reply.finish["finishReason"] == "stopped" and not reply.errors
    stored = wait_stored(api, chat_id, {"stopped"})
    assert stored[-1]["message"] == reply.text
    assert expected_text(400).startswith(reply.text) and len(reply.text) < len(expected_text(400))
    assert requests.post(url, cookies={"neptun-session": api.cookie}, timeout=5).status_code == 204


def test_stop_of_another_users_chat_is_404(pair):
    """Stop has the chat routes' rules."""
    api, other = Client(pair.base_url), Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    response = other.http.post(f"{pair.base_url}/api/ai/{PATH}/chat/{chat_id}/stop", timeout=5)
    assert response.status_code == 404
    response = other.http.post(f"{pair.base_url}/api/users/{api.user_id}/chats/{chat_id}/stop",
                               timeout=5)
    assert response.status_code == 403


# --- disconnects -------------------------------------------------------------------------------

def test_resumable_disconnect_runs_through_the_grace_window(pair, upstream):
    """A resumable request whose reader left keeps its upstream for the grace window (1.5 s
    here), then is stored ``aborted`` and its upstream closed."""
    api = Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    text = tagged(tokens=400, delay_ms=25)
    Live(api.chat(PATH, text, chat_id, stream=True, resumable="true")).read_parts(3).close()
    left = time.monotonic()
    entry = closed_entry(upstream, text)
    assert 1.5 <= entry["closed_at"] - left < 4.0   # generating through the window, no longer
    stored = wait_stored(api, chat_id, {"aborted"})
    assert expected_text(400).startswith(stored[-1]["message"])
    assert len(stored[-1]["message"]) > len(expected_text(3))


def test_a_resumer_keeps_a_detached_generation_alive(pair, upstream):
    """A reader that resumes within the grace window gets the rest; the reply completes."""
    api = Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    text = tagged(tokens=100, delay_ms=25)
    Live(api.chat(PATH, text, chat_id, stream=True, resumable="true")).read_parts(3).close()
    time.sleep(0.5)
    reply = parse_data_stream(resume(api, chat_id).text)
    assert reply.text == expected_text(100) and reply.finish["finishReason"] == "stop"
    assert wait_stored(api, chat_id, {"stop"})[-1]["message"] == expected_text(100)


# --- retries -----------------------------------------------------------------------------------

def turns(api: Client, chat_id: int) -> list[tuple[str, str]]:
    """The chat's (actor, finish reason) pairs."""
    return [(m["actor"], m["finish_reason"]) for m in api.messages(chat_id)]


def post(api: Client, body: dict, chat_id: int, headers: dict | None = None,
         stream: bool = False) -> requests.Response:
    """POST a raw chat body."""
    return api.http.post(f"{api.base_url}/api/ai/{PATH}/chat", params={"chat_id": chat_id},
                         json=body, headers=headers or {}, stream=stream, timeout=30)


@pytest.mark.parametrize("keyed_by", ["message-id", "header"])
def test_a_repeated_turn_runs_once(pair, upstream, keyed_by):
    """The same turn sent while it runs attaches to it; sent after it finished, replays it;
    the same key with another body is 409. One user turn, one reply, one upstream call."""
    api = Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    text = tagged(tokens=40, delay_ms=25)
    key = uuid.uuid4().hex
    message = {"role": "user", "content": text}
    headers = {}
    if keyed_by == "header":
        headers["Idempotency-Key"] = key
    else:
        message["id"] = key
    body = {"messages": [message]}
    first = Live(post(api, body, chat_id, headers, stream=True)).read_parts(5)
    again = post(api, body, chat_id, headers)              # while it runs: attaches
    whole = first.finish()
    after = post(api, body, chat_id, headers)              # finished: replays
    for response in (again, after):
        reply = parse_data_stream(response.text)
        assert reply.text == expected_text(40)
        assert message_id(response.content.split(b"\n")) == first.message_id()
    assert whole.text == expected_text(40)
    changed = {"messages": [{**message, "content": text + " changed"}]}
    conflict = post(api, changed, chat_id, headers)
    assert conflict.status_code == 409 and conflict.json()["statusCode"] == 409
    assert turns(api, chat_id) == [("user", None), ("assistant", "stop")]
    tag = text.split()[0]
    assert sum(tag in json.dumps(e["json"]) for e in upstream.requests()) == 1


def test_same_text_after_an_upstream_failure_is_stored_once(pair):
    """Without any id: retrying a turn whose upstream failed before streaming (503) leaves
    one user turn and no reply; a turn that got its reply can be asked again."""
    api = Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    failing = tagged(status=503, body="busy")
    for _ in range(3):
        assert api.chat(PATH, failing, chat_id).status_code == 503
    assert turns(api, chat_id) == [("user", None)]
    for _ in range(2):
        assert parse_data_stream(api.chat(PATH, "Hello!", chat_id).text).text == expected_text(5)
    assert turns(api, chat_id) == [("user", None), ("user", None), ("assistant", "stop"),
                                   ("user", None), ("assistant", "stop")]


def test_regenerate_replaces_the_last_reply(pair):
    """``trigger: regenerate-message`` replaces the chat's last reply with a new one (not a
    replay of the turn, whose message id it resends); no second user turn."""
    api = Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    body = {"messages": [{"id": "turn-1", "role": "user", "content": "Hello!"}]}
    parse_data_stream(post(api, body, chat_id).text)
    before = api.messages(chat_id)
    # A trigger marks an AI SDK 5+ body: the answer is in the UI message stream protocol.
    again = parse_ui_stream(post(api, {**body, "trigger": "regenerate-message"},
                                 chat_id).content.decode())
    assert again.text == expected_text(5)
    after = api.messages(chat_id)
    assert [(m["actor"], m["finish_reason"]) for m in after] == [("user", None),
                                                                 ("assistant", "stop")]
    assert after[0]["id"] == before[0]["id"]
    assert after[1]["created_at"] > before[1]["created_at"]


def test_chat_id_from_the_body_id(pair):
    """Without ``chat_id`` in the query, the body's ``id`` (as the AI SDK sends it) names the
    chat; a body without an integer id is the missing ``chat_id`` 400."""
    api = Client(pair.base_url)
    chat_id = api.create_chat(MODEL)
    url = f"{api.base_url}/api/ai/{PATH}/chat"
    body = {"id": str(chat_id), "messages": [{"role": "user", "content": "Hello!"}]}
    assert parse_data_stream(api.http.post(url, json=body, timeout=30).text).text == \
        expected_text(5)
    assert turns(api, chat_id) == [("user", None), ("assistant", "stop")]
    missing = api.http.post(url, json={**body, "id": "not-a-number"}, timeout=30)
    assert missing.status_code == 400 and "chat_id" in missing.json()["data"]


# --- two instances -----------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["redis", "sql"])
def instances(request, upstream):
    """Two gunicorn masters (two workers each) on one PostgreSQL database of the test's own,
    sharing Redis (or the database) as the log."""
    with postgres_database(PG_SERVER_URL, prefix="neptun_instances") as url:
        migrate(url)
        settings = {"DATABASE_URL": url, **upstream_env(upstream.base_url), **TIMEOUT_ENV,
                    **log_env(request.param)}
        first = Gunicorn(settings, workers=2)
        second = Gunicorn(settings, workers=2)
        yield first, second
        first.stop()
        second.stop()


def test_start_on_one_instance_resume_and_stop_on_the_other(instances, upstream):
    """Start on A; resume on B gets the reply from its first part, live; stop on B closes A's
    upstream within 1 s and both readers end ``stopped``."""
    a, b = instances
    api = Client(a.base_url)
    chat_id = api.create_chat(MODEL)
    text = tagged(tokens=400, delay_ms=25)
    original = Live(api.chat(PATH, text, chat_id, stream=True)).read_parts(10)
    resumed = Live(requests.get(f"{b.base_url}/api/ai/{PATH}/chat/{chat_id}/stream",
                                cookies={"neptun-session": api.cookie}, stream=True,
                                timeout=30)).read_parts(20)
    assert resumed.message_id() == original.message_id()
    asked = time.monotonic()
    stop = requests.post(f"{b.base_url}/api/ai/{PATH}/chat/{chat_id}/stop",
                         cookies={"neptun-session": api.cookie}, timeout=5)
    assert stop.status_code == 204
    assert closed_entry(upstream, text)["closed_at"] - asked < 1.0
    on_a, on_b = original.finish(), resumed.finish()
    assert on_a.finish["finishReason"] == on_b.finish["finishReason"] == "stopped"
    assert on_a.text == on_b.text
    stored = wait_stored(api, chat_id, {"stopped"})
    assert stored[-1]["message"] == on_a.text


# --- a worker that dies ------------------------------------------------------------------------

def worker_pids(master: int) -> list[int]:
    """The gunicorn master's worker processes."""
    path = f"/proc/{master}/task/{master}/children"
    with open(path) as file:
        return [int(pid) for pid in file.read().split()]


def test_sigkill_of_the_owner_is_reaped_as_interrupted(upstream, migrated):
    """A worker killed mid-reply: within twice STREAM_REAP_SECONDS (3 s here) the message is
    ``interrupted`` with at least the text it had 2 s before the kill; resume then answers 204."""
    server = serve(upstream, migrated, "sql", workers=1, STREAM_REAP_SECONDS=3)
    try:
        api = Client(server.base_url)
        chat_id = api.create_chat(MODEL)
        response = Live(api.chat(PATH, tagged(tokens=600, delay_ms=20), chat_id, stream=True))
        early = "".join(json.loads(line[2:]) for line in response.read_parts(10).lines
                        if line.startswith(b"0:"))
        time.sleep(2.5)
        (owner,) = worker_pids(server.process.pid)
        os.kill(owner, signal.SIGKILL)
        killed = time.monotonic()
        response.close()
        stored = wait_stored(api, chat_id, {"interrupted"}, timeout=8)
        assert time.monotonic() - killed < 6
        assert stored[-1]["message"].startswith(early)
        assert expected_text(600).startswith(stored[-1]["message"])
        assert resume(api, chat_id).status_code == 204
    finally:
        server.stop()


def test_sigterm_with_20_runs_loses_none(upstream, migrated):
    """SIGTERM of the master with 20 runs in flight (graceful timeout 2 s): every reply ends
    ``stop`` or ``interrupted``, none missing, none stored twice, and every reader gets its
    ending."""
    server = serve(upstream, migrated, "sql")
    api = Client(server.base_url)
    chats = [api.create_chat(MODEL) for _ in range(20)]
    responses = [Live(api.chat(PATH, tagged(tokens=10 if n < 5 else 300, delay_ms=20),
                               chat_id, stream=True)).read_parts(3)
                 for n, chat_id in enumerate(chats)]
    server.process.send_signal(signal.SIGTERM)
    replies: list = [None] * 20

    def read(index: int) -> None:
        replies[index] = responses[index].finish()

    threads = [threading.Thread(target=read, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    server.process.wait(timeout=15)
    endings = [reply.finish["finishReason"] for reply in replies]
    assert endings.count("stop") >= 5 and set(endings) <= {"stop", "interrupted"}
    engine = create_engine(normalize_database_url(migrated))
    with engine.connect() as connection:
        rows = connection.execute(select(ChatMessage.chat_id, ChatMessage.actor,
                                         ChatMessage.finish_reason, ChatMessage.message)
                                  .where(ChatMessage.chat_id.in_(chats))).all()
    engine.dispose()
    replies = {chat_id: [row for row in rows if row.chat_id == chat_id and
                         row.actor == "assistant"] for chat_id in chats}
    assert all(len(found) == 1 for found in replies.values()), replies
    for chat_id, ending in zip(chats, endings):
        (reply,) = replies[chat_id]
        assert reply.finish_reason == ending
        assert len(reply.message) > 0


def test_clients_leaving_while_their_reader_waits_do_not_hurt_the_worker(pair):
    """Thirty resumable replies whose clients leave while their readers wait for the next part
    (the watcher ends them from its own greenlet): no worker dies, every reply is stored."""
    masters_workers = worker_pids(pair.process.pid)
    api = Client(pair.base_url)
    chats = [api.create_chat(MODEL) for _ in range(30)]
    streams = [Live(api.chat(PATH, tagged(tokens=30, delay_ms=60), chat_id, stream=True,
                             resumable="true")).read_parts(1) for chat_id in chats]
    for stream in streams:
        stream.close()
    for chat_id in chats:
        assert wait_stored(api, chat_id, {"stop", "aborted"}, timeout=15)[-1]["message"]
    assert worker_pids(pair.process.pid) == masters_workers


def test_a_slow_redis_never_stalls_a_sqlite_worker(upstream, tmp_path):
    """SQLite waits for a write lock in C, blocking the whole gevent worker: a greenlet that
    held the lock across a Redis round trip (a yield) would freeze every request until the
    wait timed out. With Redis 30 ms away, streams and new turns keep flowing, /health
    answers at once, and every reply is stored."""
    from .proxy import TcpProxy

    database_url = f"sqlite:///{tmp_path / 'slow-redis.sqlite3'}"
    migrate(database_url)
    proxy = TcpProxy(6379)
    proxy.delay = 0.03
    server = Gunicorn({"DATABASE_URL": database_url, **upstream_env(upstream.base_url),
                       **TIMEOUT_ENV, "DATABASE_TIMEOUT": "6",
                       "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/9",
                       "REDIS_KEY_PREFIX": f"neptun-test-{uuid.uuid4().hex}:"}, workers=1)
    try:
        api = Client(server.base_url)
        chats = [api.create_chat(MODEL) for _ in range(24)]

        def turn(chat_id: int) -> int:
            response = api.chat(PATH, tagged(tokens=20, delay_ms=100), chat_id)
            return response.status_code

        slowest = 0.0
        with ThreadPoolExecutor(len(chats)) as pool:
            statuses = []
            for chat_id in chats:
                statuses.append(pool.submit(turn, chat_id))
                started = time.monotonic()
                assert requests.get(server.base_url + "/health", timeout=30).status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.15)
            assert [future.result() for future in statuses] == [200] * len(chats)
        assert slowest < 1.0, f"/health took {slowest:.1f} s"
        for chat_id in chats:
            assert wait_stored(api, chat_id, {"stop"})[-1]["finish_reason"] == "stop"
    finally:
        server.stop()
        proxy.close()
