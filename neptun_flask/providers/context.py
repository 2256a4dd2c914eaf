"""Chat message lists for chat-style providers, and fitting them into the model's context.

Token counts are estimates (about four characters per token, plus a few tokens of
per-message overhead): the real tokenizer is upstream, and erring a little is cheaper
than a round trip that fails with a context-length error.
"""
from __future__ import annotations

from typing import Any

from .base import ModelSpec, RequestTooLarge

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4   # role markers and separators the chat template adds per message


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of a text: ceil(chars / 4)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def message_cost(message: dict[str, str]) -> int:
    """Estimate the tokens one chat message takes, overhead included."""
    return estimate_tokens(message["content"]) + MESSAGE_OVERHEAD


def chat_messages(messages: list[dict[str, Any]], system_prompt: str) -> list[dict[str, str]]:
    """Return ``{role, content}`` dicts (other keys dropped), system prompt first if set."""
    out = [{"role": "system", "content": system_prompt}] if system_prompt else []
    out.extend({"role": m["role"], "content": m["content"]} for m in messages)
    return out


def fit_messages(messages: list[dict[str, str]], truncate: int | None,
                 max_new_tokens: int | None) -> list[dict[str, str]]:
    """Drop the oldest turns until the estimate fits ``truncate`` minus the reply's room.

    The leading system message and the last message are never dropped; raise
    RequestTooLarge when those two alone do not fit.
    """
    if not truncate or truncate <= 0 or not messages:
        return messages
    budget = truncate - min(max_new_tokens or 0, truncate // 2)
    costs = [message_cost(m) for m in messages]
    total = sum(costs)
    if total <= budget:
        return messages
    head = 1 if messages[0]["role"] == "system" and len(messages) > 1 else 0
    last = len(messages) - 1
    if sum(costs[:head]) + costs[last] > budget:
        raise RequestTooLarge(
            f"The message is too long for this model: about {sum(costs[:head]) + costs[last]}"
            f" tokens, and the model accepts about {budget}.")
    start = head
    while total > budget and start < last:
        total -= costs[start]
        start += 1
    # Do not let the kept history open with a reply whose question was dropped.
    while start < last and messages[start]["role"] == "assistant":
        start += 1
    return messages[:head] + messages[start:]


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """Estimate the prompt tokens of a message list: ceil(total content chars / 4)."""
    chars = sum(len(m["content"]) for m in messages)
    return -(-chars // CHARS_PER_TOKEN)


def prepare_chat(model: ModelSpec, messages: list[dict[str, str]],
                 system_prompt: str) -> list[dict[str, str]]:
    """The chat providers' messages: system prompt first, oldest turns dropped to fit."""
    parameters = model.parameters
    return fit_messages(chat_messages(messages, system_prompt),
                        parameters.get("truncate"), parameters.get("max_new_tokens"))
