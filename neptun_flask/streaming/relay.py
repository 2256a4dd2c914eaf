"""The relay: reads the upstream, feeds the reply, writes the client; closes and records once."""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

import requests

from ..chats.store import store_message
from ..providers.base import UpstreamRequest
from ..providers.framing import EventDecoder, MalformedEvent
from .disconnect import watch_disconnect
from .protocol import Encoder, TextEncoder
from .reply import Reply
from .upstream import Timeouts, abort_upstream, iter_reads, set_read_timeout

log = logging.getLogger(__name__)

CUT_MESSAGE = "The model's stream ended before the reply was complete."
TOTAL_TIMEOUT_MESSAGE = "The model took longer than the total time allowed."


class StreamCut(Exception):
    """Raised at the end of a plain-text stream that failed, so the server cuts the connection
    instead of ending the chunked body cleanly: plain text has no in-band error channel."""


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a finished reply is stored (absent for playground and chat_id=-1)."""

    inserter: object   # the app's batched message insert (chats.store.message_inserter)
    chat_id: int


class ReplyStream:
    """A WSGI response iterable relaying one upstream reply; ``close()`` releases everything."""

    def __init__(self, *, response: requests.Response, adapter, request: UpstreamRequest,
                 encoder: Encoder, timeouts: Timeouts, model_id: str, max_tokens: int,
                 target: ReplyTarget | None, environ: dict):
        self._response = response
        self._reads = iter_reads(response)
        self._decoder = EventDecoder(adapter, request.framing)
        self._idle = False     # the idle timeout replaces the first-token one at first content
        self._text_only = isinstance(encoder, TextEncoder)
        self._reply = Reply(encoder, prompt_estimate=request.prompt_tokens_estimate,
                            max_tokens=max_tokens,
                            starts_in_reasoning=request.starts_in_reasoning)
        self._idle_timeout = timeouts.idle
        self._deadline = time.monotonic() + timeouts.total
        self._model_id = model_id
        self._target = target
        self._aborted = False
        self._closed = False
        self._recorded = False
        self._generator = None
        self._client_socket = environ.get("gunicorn.socket")
        self._stop_watch = watch_disconnect(environ, self._on_disconnect)

    def prime(self) -> str | None:
        """Read up to the first reply content; return the upstream's error if it failed first."""
        self._pump(stop_at_content=True)
        if self._reply.error is not None and not self._reply.has_content:
            self.close(record=False)
            return self._reply.error
        return None

    def _pump(self, stop_at_content: bool) -> None:
        """Apply the upstream's reads until there is something to send (or content, when
        priming) or the upstream is done. Works one read at a time: the relay's hot loop."""
        reply = self._reply
        decoder = self._decoder
        try:
            for chunk in self._reads:
                reply.apply_all(decoder.feed(chunk))
                if not self._idle and reply.generated_chars:
                    self._idle = True
                    set_read_timeout(self._response, self._idle_timeout)
                if not reply.done and time.monotonic() > self._deadline:
                    reply.fail(TOTAL_TIMEOUT_MESSAGE)
                if reply.done or (reply.has_content if stop_at_content else reply.pending):
                    return
            reply.apply_all(decoder.finish())
            if not reply.done:
                reply.fail(CUT_MESSAGE)
        except Exception as error:  # noqa: BLE001 - any read failure ends the reply as an error
            if not self._aborted:
                reply.fail(_describe(error))
                log.warning("upstream stream failed for %s: %s", self._model_id,
                            type(error).__name__)
        finally:
            if reply.done:
                reply.flush_filters()

    def __iter__(self):
        """Yield the primed bytes, then the rest of the reply."""
        self._generator = self._generate()
        return self._generator

    def _generate(self):
        """The body generator; a GeneratorExit here means the client went away."""
        reply = self._reply
        try:
            while True:
                chunk = reply.take_pending()
                if chunk:
                    yield chunk
                if reply.done or self._aborted:
                    break
                self._pump(stop_at_content=False)
        except GeneratorExit:
            self._aborted = True
            raise
        if self._aborted:
            return
        # Stored before the finish parts go out: a client that reloads the chat when it reads
        # them (useChat's onFinish) finds the reply already there.
        self._record()
        yield reply.finish_bytes()
        if reply.error is not None and self._text_only:
            self._cut_client_connection(reply.error)

    def _cut_client_connection(self, reason: str) -> None:
        """End a failed plain-text reply without the chunked terminator, so the client sees an
        incomplete body. Under gunicorn, shutting the socket makes its final write fail quietly
        (EPIPE is ignored); other servers cut the connection when the iterable raises."""
        self._stop_watch()
        sock = self._client_socket
        if sock is None:
            raise StreamCut(reason)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def _on_disconnect(self) -> None:
        """The client is gone: close the upstream now, even if it is silent."""
        self._aborted = True
        abort_upstream(self._response)

    def close(self, record: bool = True) -> None:
        """Called by the WSGI server (or on a failed prime): close upstream, record once."""
        if self._closed:
            return
        self._closed = True
        self._stop_watch()
        if self._generator is not None:
            self._generator.close()   # a closed generator no longer refers to this stream
        if self._reply.ended and self._reply.error is None and not self._aborted:
            self._release_connection()
        self._response.close()
        if not self._reply.done:
            self._aborted = True
        if record:
            self._record()

    def _release_connection(self) -> None:
        """Read what follows the terminator (at least the chunked body's last chunk), so the
        upstream connection goes back to the pool instead of being closed and reopened."""
        set_read_timeout(self._response, 1.0)
        try:
            for _ in self._reads:
                pass
        except Exception:  # noqa: BLE001 - then the connection is simply not reused
            pass

    def _record(self) -> None:
        """Store the assistant reply once, whole or partial, with its finish reason and usage."""
        if self._recorded or self._target is None:
            return
        self._recorded = True
        reply = self._reply
        prompt, completion = reply.token_counts()
        reason = "aborted" if self._aborted else reply.finish_reason()
        try:
            store_message(self._target.inserter, self._target.chat_id, "assistant", reply.text,
                          model=self._model_id, finish_reason=reason,
                          prompt_tokens=prompt, completion_tokens=completion)
        except Exception:  # noqa: BLE001 - the reply is already sent; log and move on
            log.exception("could not store the reply for chat %s", self._target.chat_id)


def _describe(error: Exception) -> str:
    """A client-safe sentence for a failure while reading the upstream stream."""
    if isinstance(error, MalformedEvent):
        return "The model's stream sent a malformed event."
    if isinstance(error, (requests.Timeout, TimeoutError)) or "timed out" in str(error):
        return "The model stopped sending data (timed out)."
    return CUT_MESSAGE
