"""The relay: upstream events in, client protocol bytes out; closed and recorded exactly once."""
from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass

import requests

from ..chats.store import record_message
from ..providers.base import (End, FinishReason, ReasoningDelta, TextDelta, UpstreamError,
                              UpstreamRequest, Usage)
from ..providers.framing import MalformedEvent, iter_events
from .disconnect import watch_disconnect
from .protocol import Encoder, TextEncoder
from .textfilters import ControlTokenFilter, ThinkSplitter
from .upstream import Timeouts, abort_upstream, set_read_timeout

log = logging.getLogger(__name__)

CUT_MESSAGE = "The model's stream ended before the reply was complete."


class StreamCut(Exception):
    """Raised at the end of a plain-text stream that failed, so the server cuts the connection
    instead of ending the chunked body cleanly: plain text has no in-band error channel."""


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a finished reply is stored (absent for playground and chat_id=-1)."""

    engine: object   # the app's SQLAlchemy engine
    chat_id: int


class ReplyStream:
    """A WSGI response iterable relaying one upstream reply; ``close()`` releases everything."""

    def __init__(self, *, response: requests.Response, adapter, request: UpstreamRequest,
                 encoder: Encoder, timeouts: Timeouts, model_id: str, max_tokens: int,
                 target: ReplyTarget | None, environ: dict):
        self._response = response
        self._chunks = response.iter_content(chunk_size=None)
        self._events = iter_events(self._chunks, adapter, request.framing)
        self._encoder = encoder
        self._timeouts = timeouts
        self._model_id = model_id
        self._max_tokens = max_tokens
        self._target = target
        self._prompt_estimate = request.prompt_tokens_estimate
        self._controls = ControlTokenFilter()
        self._think = ThinkSplitter(request.starts_in_reasoning)
        self._pending = [encoder.start(f"msg-{uuid.uuid4().hex}")]
        self._text: list[str] = []
        self._generated_chars = 0
        self._usage: Usage | None = None
        self._reason: str | None = None
        self._ended = False
        self._error: str | None = None
        self._aborted = False
        self._closed = False
        self._recorded = False
        self._generator = None
        self._deadline = time.monotonic() + timeouts.total
        self._stop_watch = watch_disconnect(environ, self._on_disconnect)

    # -- reading upstream events ----------------------------------------------------------

    def prime(self) -> str | None:
        """Read up to the first reply content; return the upstream's error if it failed first."""
        self._pump(stop_at_content=True)
        if self._error is not None and not self._pending[1:]:
            self.close(record=False)
            return self._error
        return None

    def _pump(self, stop_at_content: bool) -> None:
        """Handle events until content (when priming), an end or an error."""
        try:
            for event in self._events:
                self._handle(event)
                if self._ended or self._error is not None:
                    return
                if stop_at_content and len(self._pending) > 1:
                    return
                if not stop_at_content and self._pending:
                    return
            self._error = CUT_MESSAGE
        except Exception as error:  # noqa: BLE001 - any read failure ends the reply as an error
            if not self._aborted:
                self._error = _describe(error)
                log.warning("upstream stream failed for %s: %s", self._model_id,
                            type(error).__name__)
        finally:
            if self._ended or self._error is not None:
                self._flush_filters()

    def _handle(self, event) -> None:
        """Apply one upstream event."""
        kind = type(event)
        if kind is TextDelta:
            self._on_text(event.text)
        elif kind is ReasoningDelta:
            self._note_generated(event.text)
            self._emit("reasoning", event.text)
        elif kind is Usage:
            self._usage = event
        elif kind is FinishReason:
            self._reason = event.reason
        elif kind is End:
            self._ended = True
        elif kind is UpstreamError:
            self._error = event.message
        if time.monotonic() > self._deadline and not self._ended:
            self._error = "The model took longer than the total time allowed."

    def _note_generated(self, text: str) -> None:
        """Count generated characters; the first token switches to the idle timeout."""
        if not self._generated_chars:
            set_read_timeout(self._response, self._timeouts.idle)
        self._generated_chars += len(text)

    def _on_text(self, text: str) -> None:
        """Filter control tokens, split reasoning from the answer, queue the output."""
        self._note_generated(text)
        clean = self._controls.feed(text)
        if clean:
            for kind, piece in self._think.feed(clean):
                self._emit(kind, piece)

    def _emit(self, kind: str, piece: str) -> None:
        """Queue one text or reasoning part."""
        if kind == "text":
            self._text.append(piece)
            self._pending.append(self._encoder.text(piece))
        else:
            self._pending.append(self._encoder.reasoning(piece))

    def _flush_filters(self) -> None:
        """Release text the filters still hold once the upstream is done."""
        tail = self._controls.flush()
        parts = self._think.feed(tail) if tail else []
        for kind, piece in parts + self._think.flush():
            self._emit(kind, piece)

    # -- the WSGI iterable ------------------------------------------------------------------

    def __iter__(self):
        """Yield the primed bytes, then the rest of the reply."""
        self._generator = self._generate()
        return self._generator

    def _generate(self):
        """The body generator; a GeneratorExit here means the client went away."""
        try:
            while True:
                if self._pending:
                    chunk = b"".join(self._pending)
                    self._pending.clear()
                    if chunk:
                        yield chunk
                if self._ended or self._error is not None or self._aborted:
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
        yield self._finish_bytes()
        if self._error is not None and isinstance(self._encoder, TextEncoder):
            raise StreamCut(self._error)

    def _finish_reason(self, completion_tokens: int) -> str:
        """The finish reason; upstreams that report none (Cloudflare) stop at max tokens."""
        if self._error is not None:
            return "error"
        if self._reason is None and completion_tokens >= self._max_tokens:
            return "length"
        return self._reason or "stop"

    def _finish_bytes(self) -> bytes:
        """The error part (if any) and the finish parts."""
        prompt, completion = self._token_counts()
        reason = self._finish_reason(completion)
        head = self._encoder.error(self._error) if self._error is not None else b""
        return head + self._encoder.finish(reason, prompt, completion)

    def _token_counts(self) -> tuple[int, int]:
        """Usage as reported, with estimates where the upstream gave none."""
        usage = self._usage
        prompt = usage.prompt_tokens if usage and usage.prompt_tokens is not None else None
        completion = (usage.completion_tokens
                      if usage and usage.completion_tokens is not None else None)
        if prompt is None:
            prompt = self._prompt_estimate
        if completion is None:
            completion = math.ceil(self._generated_chars / 4)
        return prompt, completion

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
            self._generator.close()
        if self._ended and self._error is None and not self._aborted:
            self._release_connection()
        self._response.close()
        if not (self._ended or self._error is not None):
            self._aborted = True
        if record:
            self._record()

    def _release_connection(self) -> None:
        """Read what follows the terminator (at least the chunked body's last chunk), so the
        upstream connection goes back to the pool instead of being closed and reopened."""
        set_read_timeout(self._response, 1.0)
        try:
            for _ in self._chunks:
                pass
        except Exception:  # noqa: BLE001 - then the connection is simply not reused
            pass

    def _record(self) -> None:
        """Store the assistant reply once, whole or partial, with its finish reason and usage."""
        if self._recorded or self._target is None:
            return
        self._recorded = True
        prompt, completion = self._token_counts()
        reason = "aborted" if self._aborted else self._finish_reason(completion)
        try:
            record_message(self._target.engine, self._target.chat_id, "assistant",
                           "".join(self._text), model=self._model_id, finish_reason=reason,
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
