"""Incremental filters on streamed reply text: control-token removal and <think> splitting.

Both work on text deltas as they arrive and hold back nothing but a trailing fragment that
could still become a token or tag (``"<|im"`` before ``"_end|>"``); text without an opening
``<`` or ``[`` passes straight through.
"""
from __future__ import annotations

import re
from collections.abc import Callable

CONTROL_TOKENS = (
    "<|im_end|>", "<|im_start|>", "<|endoftext|>", "</s>", "<s>",
    "<end_of_turn>", "<start_of_turn>", "<eos>", "<bos>",
    "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
    "<|end|>", "<|assistant|>", "<|user|>", "<|system|>",
    "<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "[INST]", "[/INST]",
)

# Every token starts with "<" or "[" and contains neither again, so a fragment worth
# holding always starts at the last opener of the text.
_TOKEN_RE = re.compile("|".join(re.escape(token) for token in CONTROL_TOKENS))
_TOKEN_PREFIXES = frozenset(token[:i] for token in CONTROL_TOKENS for i in range(1, len(token)))
_MAX_PREFIX = max(len(token) for token in CONTROL_TOKENS) - 1


def _held_start(text: str, tail_room: int, is_prefix: Callable[[str], bool]) -> int:
    """Return where a trailing partial token starts in ``text``, or len(text) if none."""
    start = max(0, len(text) - tail_room)
    at = max(text.rfind("<", start), text.rfind("[", start))
    if at >= 0 and is_prefix(text[at:]):
        return at
    return len(text)


class ControlTokenFilter:
    """Remove model control tokens from streamed text, also when split across deltas."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        """Return the text that is safe to emit now, without control tokens."""
        if self._held:
            text = self._held + text
            self._held = ""
        elif "<" not in text and "[" not in text:
            return text   # fast path: nothing here can start a token
        text = _TOKEN_RE.sub("", text)
        cut = _held_start(text, _MAX_PREFIX, _TOKEN_PREFIXES.__contains__)
        self._held = text[cut:]
        return text[:cut]

    @property
    def idle(self) -> bool:
        """Nothing is held back."""
        return not self._held

    def flush(self) -> str:
        """Return the fragment still held at the end of the stream."""
        held, self._held = self._held, ""
        return held


OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


class ThinkSplitter:
    """Split streamed text into ("text" | "reasoning", piece) by ``<think>`` tags.

    Providers differ on who opens the tag: when the prompt did (``starts_in_reasoning``), a
    reply may still begin with its own ``<think>``, which is dropped rather than shown as
    reasoning.
    """

    __slots__ = ("_reasoning", "_held", "_strip", "_opening")

    def __init__(self, starts_in_reasoning: bool = False) -> None:
        self._reasoning = starts_in_reasoning
        self._held = ""
        # Newlines right after a tag are layout, not content: drop them.
        self._strip = starts_in_reasoning
        # At the start of a reply the prompt put in reasoning: a repeated open tag may come.
        self._opening = starts_in_reasoning

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Return the pieces of text that are safe to emit now, each with its kind."""
        if self._held:
            text = self._held + text
            self._held = ""
        elif "<" not in text and not self._opening:
            return self._emit([], text)   # fast path: no tag can start here
        if self._opening:
            text = self._skip_repeated_open_tag(text)
            if self._opening:
                self._held = text   # blank so far, or a part of "<think>"
                return []
        out: list[tuple[str, str]] = []
        while True:
            tag = CLOSE_TAG if self._reasoning else OPEN_TAG
            at = text.find(tag)
            if at < 0:
                break
            self._emit(out, text[:at])
            text = text[at + len(tag):]
            self._reasoning = not self._reasoning
            self._strip = True
        cut = _held_start(text, len(tag) - 1, tag.startswith)
        self._held = text[cut:]
        return self._emit(out, text[:cut])

    def _skip_repeated_open_tag(self, text: str) -> str:
        """``text`` without a leading ``<think>``; ``_opening`` stays set while the text
        (blank, or a part of the tag) could still become one."""
        head = text.lstrip()
        if head.startswith(OPEN_TAG):
            self._opening = False
            return head[len(OPEN_TAG):]
        if not OPEN_TAG.startswith(head):
            self._opening = False
        return text

    @property
    def plain(self) -> bool:
        """Outside reasoning with nothing held or to strip: text without "<" passes as is."""
        return not (self._reasoning or self._held or self._strip)

    def flush(self) -> list[tuple[str, str]]:
        """Return the fragment still held at the end of the stream."""
        held, self._held = self._held, ""
        return self._emit([], held)

    def _emit(self, out: list[tuple[str, str]], piece: str) -> list[tuple[str, str]]:
        """Append a piece of the current kind to ``out`` (dropping layout newlines)."""
        if self._strip and piece:
            piece = piece.lstrip("\r\n")
            self._strip = not piece
        if piece:
            out.append(("reasoning" if self._reasoning else "text", piece))
        return out
