"""Prompt strings for Hugging Face text-generation models, one per official chat template.

Each renderer reproduces what the model's ``tokenizer_config.json`` chat template renders
with ``add_generation_prompt=True`` (see tests/data/chat_templates). Templates are keyed by
the catalog model name (``ModelSpec.name``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Turn = tuple[str, str]   # (role, content) with role "user" or "assistant"

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """How to render one model's prompt, and whether the prompt opens a reasoning block."""

    render: Callable[[str, list[Turn]], str]
    starts_in_reasoning: bool = False


def normalize_turns(messages: list[dict[str, Any]]) -> list[Turn]:
    """Return alternating user/assistant turns that strict templates accept.

    Real clients send consecutive same-role messages (a retried question) or open with a
    greeting from the assistant; Mistral and Gemma templates raise on both. Consecutive
    same-role messages are merged with a blank line, leading assistant messages dropped,
    and roles other than user/assistant ignored (the system prompt is passed separately).
    """
    turns: list[Turn] = []
    for message in messages:
        role, content = message.get("role"), message.get("content") or ""
        if role not in ("user", "assistant") or (not turns and role == "assistant"):
            continue
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n\n{content}")
        else:
            turns.append((role, content))
    return turns


def _render_chatml(system: str, turns: list[Turn]) -> str:
    """Qwen2.5: ChatML, with Qwen's default system message when none is given."""
    parts = [f"<|im_start|>system\n{system or QWEN_DEFAULT_SYSTEM}<|im_end|>\n"]
    parts.extend(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def _render_deepseek_r1(system: str, turns: list[Turn]) -> str:
    """DeepSeek-R1 distills: bare system text, past replies without their reasoning."""
    parts = ["<｜begin▁of▁sentence｜>", system]
    for role, content in turns:
        if role == "user":
            parts.append(f"<｜User｜>{content}")
        else:
            answer = content.split("</think>")[-1]
            parts.append(f"<｜Assistant｜>{answer}<｜end▁of▁sentence｜>")
    parts.append("<｜Assistant｜><think>\n")
    return "".join(parts)


def _mistral_renderer(inst: str, reply: Callable[[str], str]) -> Callable[[str, list[Turn]], str]:
    """Build a Mistral renderer; the system prompt goes into the last user turn."""

    def render(system: str, turns: list[Turn]) -> str:
        """Render [INST] turns; replies are formatted by ``reply``."""
        last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=-1)
        parts = ["<s>"]
        for i, (role, content) in enumerate(turns):
            if role == "assistant":
                parts.append(reply(content))
                continue
            if i == last_user and system:
                content = f"{system}\n\n{content}"
            parts.append(f"{inst}{content}[/INST]")
        return "".join(parts)

    return render


def _render_gemma(system: str, turns: list[Turn]) -> str:
    """Gemma 2: no system role, so the system prompt leads the first user turn."""
    parts = ["<bos>"]
    for i, (role, content) in enumerate(turns):
        if i == 0 and system:
            content = f"{system}\n\n{content}"
        speaker = "model" if role == "assistant" else "user"
        parts.append(f"<start_of_turn>{speaker}\n{content.strip()}<end_of_turn>\n")
    parts.append("<start_of_turn>model\n")
    return "".join(parts)


def _render_phi3(system: str, turns: list[Turn]) -> str:
    """Phi-3: ``<|role|>`` blocks closed by ``<|end|>``."""
    parts = [f"<|system|>\n{system}<|end|>\n"] if system else []
    parts.extend(f"<|{role}|>\n{content}<|end|>\n" for role, content in turns)
    parts.append("<|assistant|>\n")
    return "".join(parts)


TEMPLATES: dict[str, ChatTemplate] = {
    "Qwen2.5-72B-Instruct": ChatTemplate(_render_chatml),
    "Qwen2.5-Coder-32B-Instruct": ChatTemplate(_render_chatml),
    # The prompt ends with "<think>\n": the reply starts inside the reasoning block.
    "DeepSeek-R1-Distill-Qwen-32B": ChatTemplate(_render_deepseek_r1, starts_in_reasoning=True),
    # v0.3 puts a space after [INST] and before each reply, and trims replies; Nemo does not.
    "Mistral-7B-Instruct-v0.3": ChatTemplate(
        _mistral_renderer("[INST] ", lambda content: f" {content.strip()}</s>")),
    "Mistral-Nemo-Instruct-2407": ChatTemplate(
        _mistral_renderer("[INST]", lambda content: f"{content}</s>")),
    "gemma-2-27b-it": ChatTemplate(_render_gemma),
    "Phi-3-mini-4k-instruct": ChatTemplate(_render_phi3),
}


def get_template(model_name: str) -> ChatTemplate:
    """Return the chat template of a model; raise ValueError if it has none."""
    try:
        return TEMPLATES[model_name]
    except KeyError:
        raise ValueError(
            f"no chat template for Hugging Face model {model_name!r}; "
            "add one to neptun_flask/providers/prompts.py") from None


def render_prompt(model_name: str, messages: list[dict[str, Any]], system_prompt: str) -> str:
    """Render the prompt string for a model, the conversation and a system prompt."""
    return get_template(model_name).render(system_prompt, normalize_turns(messages))
