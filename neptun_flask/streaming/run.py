"""A generation ("run"): one upstream reply, read by a greenlet of its own into a log of parts.

The run, not the HTTP response, owns the upstream connection. It appends protocol-neutral parts
(parts.py) to ``parts`` as they arrive and wakes its local readers (reader.py), which encode
them, each in its own protocol; a reader that leaves does not end the run unless it was the last
one and the run cannot be resumed. Whoever made the run is told of its end through ``on_end``
(the ai layer stores the reply there), before the finish part is visible to any reader.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import requests

try:
    import gevent
    from gevent import monkey
except ImportError:  # pragma: no cover - gevent is a dependency, but keep flask run working
    gevent = monkey = None

from .. import metrics
from ..providers.base import UpstreamRequest
from ..providers.framing import EventDecoder, MalformedEvent
from .reply import Reply
from .upstream import Timeouts, abort_upstream, iter_reads, set_read_timeout

log = logging.getLogger(__name__)

CUT_MESSAGE = "The model's stream ended before the reply was complete."
TOTAL_TIMEOUT_MESSAGE = "The model took longer than the total time allowed."
#: Events beyond ``max_tokens`` a reply may have (its role, usage, finish and end events).
EVENT_SLACK = 8


class Run:
    """One reply being generated; ``prime()`` in the request, then ``start()`` its greenlet."""

    def __init__(self, *, response: requests.Response, adapter, request: UpstreamRequest,
                 timeouts: Timeouts, model_id: str, max_tokens: int, message_id: str,
                 key: int | None, resumable: bool,
                 on_end: Callable[["Run", list], None]):
        self._response = response
        self._reads = iter_reads(response)
        self._decoder = EventDecoder(adapter, request.framing)
        self._idle = False     # the idle timeout replaces the first-token one at first content
        self._idle_timeout = timeouts.idle
        self._started = time.monotonic()
        self._first_content: float | None = None
        self._ended_at: float | None = None
        self._deadline = self._started + timeouts.total
        self.time_limit = timeouts.total    # seconds; it bounds the run's readers too
        # Every upstream event of a reply carries at least one token (a few more carry usage
        # or the finish): an upstream that sends more is cut there, as at its length limit.
        self._events = 0
        self._event_limit = max_tokens + EVENT_SLACK
        self.reply = Reply(message_id, prompt_estimate=request.prompt_tokens_estimate,
                           max_tokens=max_tokens, starts_in_reasoning=request.starts_in_reasoning)
        self.parts = self.reply.parts
        self.model_id = model_id
        self.provider = adapter.name
        self.key = key                  # the stored run's id (its message row); None if unstored
        self.resumable = resumable
        self._on_end = on_end
        self.cancelled: str | None = None   # "stopped", "aborted" or "interrupted"
        self.reason: str | None = None      # the finish reason, once ended
        self.done = False                   # the finish part is in ``parts``
        self._wakeups: list[threading.Event] = []
        self.detached_at: float | None = None   # when the last reader of a resumable run left

    # The owner: priming in the request, then the run's own greenlet.

    def prime(self) -> str | None:
        """Read up to the first reply content (in the request, so its failure gets a real HTTP
        status); return the upstream's error if it failed before any content."""
        self._pump(prime=True)
        reply = self.reply
        if reply.error is not None and not reply.has_content and self.cancelled is None:
            self._response.close()
            return reply.error
        return None

    def start(self) -> None:
        """Go on reading in a greenlet (a thread outside gevent) of the run's own."""
        spawn(self.drive)

    def drive(self) -> None:
        """Read the rest of the reply, then end it, whatever happens (the run's greenlet)."""
        try:
            if not self.reply.done and self.cancelled is None:
                self._pump(prime=False)
        finally:
            self._end()

    def _pump(self, prime: bool) -> None:
        """Apply the upstream's reads until the reply is done (or, priming, has content),
        waking the readers after each read: the relay's hot loop."""
        reply = self.reply
        decoder = self._decoder
        wake = self._wake
        try:
            for chunk in self._reads:
                events = decoder.feed(chunk)
                self._events += len(events)
                reply.apply_all(events)
                if self._events > self._event_limit and not reply.done:
                    reply.cut_at_length()
                if not self._idle and reply.generated_chars:
                    self._idle = True
                    self._first_content = time.monotonic()
                    set_read_timeout(self._response, self._idle_timeout)
                if not reply.done and time.monotonic() > self._deadline:
                    reply.fail(TOTAL_TIMEOUT_MESSAGE)
                if reply.done:
                    return
                if prime:
                    if reply.has_content:
                        return
                else:
                    wake()
            if self.cancelled is None:
                reply.apply_all(decoder.finish())
                if not reply.done:
                    reply.fail(CUT_MESSAGE)
        except Exception as error:  # noqa: BLE001 - any read failure ends the reply as an error
            if self.cancelled is None:
                reply.fail(_describe(error))
                log.warning("upstream stream failed for %s: %s", self.model_id,
                            type(error).__name__)
                metrics.upstream_error(self.provider, "stream")

    def _end(self) -> None:
        """Finish the log: hand the end to ``on_end`` (the reply is stored there), then append
        the error and finish parts and wake the readers; release the upstream last."""
        reply = self.reply
        self._ended_at = time.monotonic()
        reply.flush_filters()
        self.reason = self.cancelled or reply.finish_reason()
        tail = reply.end_parts(self.reason)
        try:
            self._on_end(self, tail)
        except Exception:  # noqa: BLE001 - the readers must still get their ending
            log.exception("could not record the end of a run for %s", self.model_id)
        self.parts.extend(tail)
        self.done = True
        self._wake()
        if reply.ended and reply.error is None and self.cancelled is None:
            self._release_connection()
        self._response.close()

    def _release_connection(self) -> None:
        """Read what follows the terminator (at least the chunked body's last chunk), so the
        upstream connection goes back to the pool instead of being closed and reopened."""
        set_read_timeout(self._response, 1.0)
        try:
            for _ in self._reads:
                pass
        except Exception:  # noqa: BLE001 - then the connection is simply not reused
            pass

    def seconds_to_first_token(self) -> float | None:
        """From the upstream call's start to the first content, if any came."""
        return None if self._first_content is None else self._first_content - self._started

    def seconds(self) -> float:
        """From the upstream call's start to the end (or now)."""
        return (self._ended_at or time.monotonic()) - self._started

    # Readers and control, from any greenlet of the process.

    def attach(self) -> threading.Event:
        """A reader joins; it waits on the returned event for more parts."""
        wakeup = threading.Event()
        self._wakeups.append(wakeup)
        self.detached_at = None
        return wakeup

    def detach(self, wakeup: threading.Event) -> None:
        """A reader left. When it was the last: a resumable run waits for another reader (its
        owner cancels it after the grace window), any other run is aborted at once."""
        if wakeup in self._wakeups:
            self._wakeups.remove(wakeup)
        if self._wakeups or self.done:
            return
        if self.resumable:
            self.detached_at = time.monotonic()
        else:
            self.cancel("aborted")

    def cancel(self, reason: str) -> None:
        """End the run early with ``reason``: hang up on the upstream, so the owner's read wakes
        at once even if the upstream is silent; the text so far is kept."""
        if self.done or self.cancelled is not None:
            return
        self.cancelled = reason
        abort_upstream(self._response)

    def _wake(self) -> None:
        """Wake every waiting reader."""
        for wakeup in self._wakeups:
            wakeup.set()


def spawn(target) -> None:
    """Run ``target`` in a greenlet of its own under gevent: scheduled, with no switch to it
    now (a thread's start would switch, before the request's first byte goes out); outside
    gevent, in a daemon thread."""
    if gevent is not None and monkey.is_module_patched("threading"):
        gevent.spawn(target)
    else:
        threading.Thread(target=target, daemon=True).start()


def _describe(error: Exception) -> str:
    """A client-safe sentence for a failure while reading the upstream stream."""
    if isinstance(error, MalformedEvent):
        return "The model's stream sent a malformed event."
    if isinstance(error, (requests.Timeout, TimeoutError)) or "timed out" in str(error):
        return "The model stopped sending data (timed out)."
    return CUT_MESSAGE
