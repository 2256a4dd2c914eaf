"""One assistant reply as it streams: its text, usage and finish, and its parts so far."""
from __future__ import annotations

import math

from ..providers.base import End, FinishReason, ReasoningDelta, TextDelta, UpstreamError, Usage
from .parts import error_part, finish_part, reasoning_part, start_part
from .textfilters import ControlTokenFilter, ThinkSplitter


class Reply:
    """Applies upstream events: filters control tokens, splits reasoning, appends protocol-
    neutral parts (``parts.py``) to ``parts``, the reply's log, which its readers encode."""

    def __init__(self, message_id: str, *, prompt_estimate: int, max_tokens: int,
                 starts_in_reasoning: bool):
        self._prompt_estimate = prompt_estimate
        self._max_tokens = max_tokens
        self._controls = ControlTokenFilter()
        self._think = ThinkSplitter(starts_in_reasoning)
        self._plain = self._think.plain   # both filters would pass plain text through as is
        self.parts: list = [start_part(message_id)]   # only ever appended to
        self._text: list[str] = []
        self.generated_chars = 0
        self._usage: Usage | None = None
        self._reason: str | None = None
        self.ended = False
        self.error: str | None = None
        # The upstream ended or failed: nothing more will be applied. An attribute, not a
        # property: the relay reads it after every upstream read.
        self.done = False

    @property
    def has_content(self) -> bool:
        """Some text or reasoning was produced (beyond the opening part)."""
        return len(self.parts) > 1

    @property
    def text(self) -> str:
        """The answer so far (reasoning excluded)."""
        return "".join(self._text)

    def apply(self, event) -> None:
        """Apply one upstream event."""
        kind = type(event)
        if kind is TextDelta:
            text = event.text
            self.generated_chars += len(text)
            clean = self._controls.feed(text)
            if clean:
                for part, piece in self._think.feed(clean):
                    self._queue(part, piece)
            self._plain = self._controls.idle and self._think.plain
        elif kind is ReasoningDelta:
            self.generated_chars += len(event.text)
            self._queue("reasoning", event.text)
        elif kind is Usage:
            self._usage = event
        elif kind is FinishReason:
            self._reason = event.reason
        elif kind is End:
            self.ended = self.done = True
        elif kind is UpstreamError:
            self.fail(event.message)

    def apply_all(self, events) -> None:
        """Apply the events of one read, in order, up to the end of the reply. The common
        event, text while no filter holds anything and no tag or token can start in it, is
        queued here directly: the filters would pass it through as is."""
        for event in events:
            if self.done:
                return
            if type(event) is TextDelta and self._plain:
                text = event.text
                if "<" not in text and "[" not in text:
                    self.generated_chars += len(text)
                    self._queue_text(text)
                    continue
            self.apply(event)

    def cut_at_length(self) -> None:
        """End the reply at the model's token limit (the upstream went past it)."""
        self._reason = "length"
        self.done = True

    def fail(self, message: str) -> None:
        """End the reply with an error."""
        self.error = message
        self.done = True

    def _queue(self, part: str, piece: str) -> None:
        """Queue one text or reasoning part."""
        if part == "text":
            self._queue_text(piece)
        else:
            self.parts.append(reasoning_part(piece))

    def _queue_text(self, piece: str) -> None:
        """Queue one text part (kept for the stored reply too)."""
        self._text.append(piece)
        self.parts.append(piece)

    def flush_filters(self) -> None:
        """Release text the filters still hold once the upstream is done."""
        tail = self._controls.flush()
        parts = self._think.feed(tail) if tail else []
        for part, piece in parts + self._think.flush():
            self._queue(part, piece)

    def token_counts(self) -> tuple[int, int]:
        """Usage as reported, with estimates where the upstream gave none."""
        usage = self._usage
        prompt = usage.prompt_tokens if usage and usage.prompt_tokens is not None else None
        completion = (usage.completion_tokens
                      if usage and usage.completion_tokens is not None else None)
        if prompt is None:
            prompt = self._prompt_estimate
        if completion is None:
            completion = math.ceil(self.generated_chars / 4)
        return prompt, completion

    @property
    def usage_estimated(self) -> bool:
        """Whether a token count is this service's estimate (the upstream reported none)."""
        usage = self._usage
        return usage is None or usage.prompt_tokens is None or usage.completion_tokens is None

    def finish_reason(self) -> str:
        """The finish reason; upstreams that report none (Cloudflare) stop at max tokens."""
        if self.error is not None:
            return "error"
        if self._reason is None and self.token_counts()[1] >= self._max_tokens:
            return "length"
        return self._reason or "stop"

    def end_parts(self, reason: str) -> list:
        """The error part (when ``reason`` is "error") and the finish part, which ends every
        reply."""
        prompt, completion = self.token_counts()
        head = [error_part(self.error)] if reason == "error" else []
        return head + [finish_part(reason, prompt, completion)]
