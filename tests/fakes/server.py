"""The fake upstream's asyncio server: connections, routing, streaming, faults, request log."""
from __future__ import annotations

import asyncio
import json
import threading
import time

from . import protocols
from .http1 import (LAST_CHUNK, Connection, HttpError, Request, json_response, read_request,
                    response_head)
from .protocols import PRE, TOKEN
from .scenario import BadRequest, Scenario, read_max_tokens, read_prompt, read_scenario, route

#: How long a ``stall`` fault holds a connection the client never closes.
STALL_SECONDS = 120.0
_AUTH_MESSAGES = {"huggingface": "Invalid credentials in Authorization header",
                  "cloudflare": "Authentication error", "openrouter": "No auth credentials found"}
_CLOSE = [("Connection", "close")]


class UpstreamServer:
    """The asyncio server: connections, routing, streaming, faults and the request log."""

    def __init__(self, tokens: int, delay_ms: float, api_key: str | None,
                 first_delay_ms: float, log_requests: bool) -> None:
        self.defaults = Scenario(tokens=tokens, delay_ms=delay_ms, first_delay_ms=first_delay_ms)
        self.api_key = api_key
        self.log_requests = log_requests
        self.log: list[dict] = []
        self.answered: dict[str, int] = {}   # directive -> its ``status`` answers (``times``)
        self.lock = threading.Lock()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False

    async def start(self, port: int = 0) -> None:
        """Bind 127.0.0.1; the big backlog lets hundreds of clients connect at once."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port, backlog=2048)
        self.port = self._server.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        """Stop listening, drop every connection and finish their tasks."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
            if conn.responder is not None:
                conn.responder.cancel()
        # The connection tasks end by themselves once their sockets are gone; cancelling them
        # instead makes Python 3.11's StreamReaderProtocol log a spurious CancelledError.
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read requests until EOF; EOF mid-response means the client went away."""
        conn = Connection(writer)
        self._connections.add(conn)
        task = asyncio.current_task()
        self._tasks.add(task)
        queue: asyncio.Queue = asyncio.Queue()
        conn.responder = responder = asyncio.create_task(self._respond_all(conn, queue))
        peer_closed = True
        try:
            # Reading continues while a response streams, so a client close is seen at once,
            # even during a stall or a delay when nothing is being written.
            while (request := await read_request(reader)) is not None:
                queue.put_nowait(request)
        except HttpError as exc:
            queue.put_nowait(exc)
            peer_closed = False
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # a reset, a truncated request or an oversized line: all end the connection
        if peer_closed and not conn.closing:
            conn.peer_closed_at = time.monotonic()
            responder.cancel()
        try:
            await responder
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            self._connections.discard(conn)
            self._tasks.discard(task)
            conn.abort()

    async def _respond_all(self, conn: Connection, queue: asyncio.Queue) -> None:
        """Answer queued requests in order until one ends the connection."""
        while True:
            request = await queue.get()
            if isinstance(request, HttpError):
                conn.writer.write(json_response(400, {"error": str(request)}, keep_alive=False))
                conn.closing = True
                conn.writer.close()
                return
            if not await self._respond(conn, request) or not request.keep_alive:
                conn.closing = True
                conn.writer.close()
                return

    async def _respond(self, conn: Connection, request: Request) -> bool:
        """Answer one request; False when the connection must not be reused."""
        kind = route(request.path)
        keep = request.keep_alive
        if request.path.startswith("/_fake/"):
            conn.writer.write(self._control(request, keep))
            return True
        if kind in ("ollama_tags", "ollama_version"):
            if request.method not in ("GET", "HEAD"):
                conn.writer.write(json_response(405, {"error": "method not allowed"}, keep))
                return True
            obj = protocols.OLLAMA_TAGS if kind == "ollama_tags" else protocols.OLLAMA_VERSION
            conn.writer.write(json_response(200, obj, keep, head_only=request.method == "HEAD"))
            return True
        entry = self._record(kind, request)
        if kind is None or request.method != "POST":
            status = 404 if kind is None else 405
            entry["outcome"] = "error_status"
            conn.writer.write(json_response(status, {"error": f"{status}: {request.path}"}, keep))
            return True
        reply_class = protocols.REPLIES[kind]
        try:
            return await self._stream_guarded(conn, entry, reply_class, request)
        except BadRequest as exc:
            entry["outcome"] = "error_status"
            body = reply_class.error_body(exc.status, exc.message)
            conn.writer.write(json_response(exc.status, body, keep))
            return True

    def _record(self, provider: str | None, request: Request) -> dict:
        """Start a log entry (kept only when logging is on)."""
        try:
            body = json.loads(request.body) if request.body else None
        except ValueError:
            body = None
        entry = {"provider": provider, "path": request.path, "headers": request.headers,
                 "json": body, "started": time.monotonic(), "tokens_sent": 0,
                 "outcome": None, "closed_at": None}
        if self.log_requests:
            with self.lock:
                self.log.append(entry)
        return entry

    def _control(self, request: Request, keep: bool) -> bytes:
        """The ``/_fake/requests`` and ``/_fake/reset`` endpoints."""
        if request.path == "/_fake/requests" and request.method == "GET":
            return json_response(200, self.snapshot(), keep)
        if request.path == "/_fake/reset" and request.method == "POST":
            self.clear()
            return json_response(200, {"ok": True}, keep)
        return json_response(404, {"error": f"404: {request.path}"}, keep)

    def clear(self) -> None:
        """Forget all recorded requests."""
        with self.lock:
            self.log.clear()

    def snapshot(self) -> list[dict]:
        """A thread-safe copy of the request log."""
        with self.lock:
            return [dict(entry) for entry in self.log]

    async def _stream_guarded(self, conn: Connection, entry: dict, reply_class: type,
                              request: Request) -> bool:
        """Check auth, body and directive, then stream; record how the stream ended."""
        provider = reply_class.name
        if self.api_key and provider != "ollama" \
                and request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise BadRequest(_AUTH_MESSAGES[provider], 401)
        if entry["json"] is None:
            raise BadRequest("request body is not valid JSON")
        prompt, directive_text = read_prompt(provider, request.path, entry["json"])
        scenario = read_scenario(directive_text, self.defaults)
        if scenario.status is not None and self._status_due(scenario):
            return self._answer_status(conn, entry, reply_class, scenario, request.keep_alive)
        limit = read_max_tokens(provider, entry["json"])
        reply = reply_class(entry["json"], prompt)
        try:
            return await self._stream(conn, entry, reply, scenario, limit, request.keep_alive)
        except asyncio.CancelledError:
            if conn.peer_closed_at is not None and not self._stopping:
                entry["outcome"], entry["closed_at"] = "client_closed", conn.peer_closed_at
            raise
        except ConnectionError:
            entry["outcome"], entry["closed_at"] = "client_closed", time.monotonic()
            return False

    def _status_due(self, scenario: Scenario) -> bool:
        """Whether the directive's status answers this request: always, or (``times``) only
        the first ``times`` requests of the same directive; later ones stream."""
        if scenario.times is None:
            return True
        key = json.dumps(scenario.__dict__, sort_keys=True)
        with self.lock:
            self.answered[key] = count = self.answered.get(key, 0) + 1
        return count <= scenario.times

    def _answer_status(self, conn: Connection, entry: dict, reply_class: type,
                       scenario: Scenario, keep: bool) -> bool:
        """Answer the directive's error status: a str ``body`` is the message, else verbatim."""
        body = scenario.body
        if body is None or isinstance(body, str):
            message = body or f"fake upstream error {scenario.status}"
            body = reply_class.error_body(scenario.status, message)
        extra = [] if scenario.retry_after is None else [("Retry-After", str(scenario.retry_after))]
        entry["outcome"] = "error_status"
        conn.writer.write(json_response(scenario.status, body, keep, extra=extra))
        return True

    async def _stream(self, conn: Connection, entry: dict, reply: protocols.Reply,
                      s: Scenario, limit: int | None, keep: bool) -> bool:
        """Write the stream event by event, injecting the scenario's fault at token ``s.at``."""
        count, reason = _length(s, limit)
        inject = None if s.fault == "no_terminator" else s.fault  # replaces the rest of the stream
        at = min(s.at, count)
        first, delay = s.first_delay_ms / 1000, s.delay_ms / 1000
        if s.delay_headers and first:
            await asyncio.sleep(first)
            first = 0.0
        if at < 0:
            if inject in ("reset", "stall"):  # at = -1: before the response headers
                return await self._fault(conn, entry, reply, inject)
            at = 0
        write, drain = conn.writer.write, conn.writer.drain
        headers = [("Content-Type", reply.content_type), ("Transfer-Encoding", "chunked")]
        write(response_head(200, headers + reply.headers() + ([] if keep else _CLOSE)))
        loop = asyncio.get_running_loop()
        due = loop.time() + first  # absolute deadlines: a late wake-up does not delay later tokens
        sent = 0
        for kind, data in reply.events(s.pieces, count, reason, s.fault != "no_terminator"):
            if kind is TOKEN:
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                due += delay
            if inject is not None and sent == at and kind is not PRE:
                return await self._fault(conn, entry, reply, inject)
            if kind is TOKEN:  # log first: the client thread may read the log as soon as bytes land
                sent += 1
                entry["tokens_sent"] = sent
            write(data)
            await drain()
        if inject is not None:  # `at` was past the last event
            return await self._fault(conn, entry, reply, inject)
        entry["outcome"] = "fault" if s.fault else "complete"
        if s.tail_delay_ms:
            await asyncio.sleep(s.tail_delay_ms / 1000)
        write(LAST_CHUNK)
        await drain()
        return True

    async def _fault(self, conn: Connection, entry: dict, reply: protocols.Reply,
                     fault: str) -> bool:
        """Carry out a mid-stream fault; False when it leaves the connection unusable."""
        if fault == "stall":
            await asyncio.sleep(STALL_SECONDS)  # a client close cancels this sleep
            entry["outcome"] = "fault"
            conn.abort()
            return False
        entry["outcome"] = "fault"
        if fault == "reset":
            await conn.reset()
            return False
        event = reply.malformed_event() if fault == "malformed" else reply.error_event()
        conn.writer.write(event + LAST_CHUNK)
        await conn.writer.drain()
        return True


def _length(s: Scenario, limit: int | None) -> tuple[int, str]:
    """How many tokens to send and why the reply ends: "stop", or "length" at the limit."""
    count = len(s.pieces) if s.pieces is not None else s.tokens
    if limit is not None and limit < count and not s.overrun:
        return limit, "length"
    return count, "stop"
