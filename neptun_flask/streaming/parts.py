"""Protocol-neutral reply parts: what a run appends to its log and every reader encodes.

A text delta is the string itself (the common part: no wrapping on the hot path); every other
part is a tuple whose first item names its kind. Stored as JSON they become arrays, which read
back the same way, so a reader on another process decodes them with the same code.
"""
from __future__ import annotations

START = "s"
REASONING = "r"
ERROR = "x"
FINISH = "f"


def start_part(message_id: str) -> tuple:
    """Opens a reply; carries the message id every reader announces."""
    return (START, message_id)


def reasoning_part(text: str) -> tuple:
    """A reasoning delta (DeepSeek-R1's thinking)."""
    return (REASONING, text)


def error_part(message: str) -> tuple:
    """An in-band failure, after which only the finish part follows."""
    return (ERROR, message)


def finish_part(reason: str, prompt_tokens: int, completion_tokens: int) -> tuple:
    """Ends every reply: finish reason and token usage."""
    return (FINISH, reason, prompt_tokens, completion_tokens)


def is_finish(part) -> bool:
    """Whether ``part`` (a tuple, or a list read back from JSON) ends the reply."""
    return type(part) is not str and part[0] == FINISH
