"""Prompt rendering against the golden chat-template outputs, and turn normalisation."""
from __future__ import annotations

import pytest

from neptun_flask.providers import get_adapter
from neptun_flask.providers.prompts import (QWEN_DEFAULT_SYSTEM, TEMPLATES, normalize_turns,
                                            render_prompt)

from .helpers import (GOLDEN_MESSAGES, GOLDEN_SYSTEM, HF_SPECS, SETTINGS, TEMPLATES as GOLDEN_DIR,
                      golden_prompt)

# Gemma's template rejects a system message, so its golden file was rendered without one.
GOLDEN_SYSTEMS = {spec.name: GOLDEN_SYSTEM for spec in HF_SPECS} | {"gemma-2-27b-it": ""}


def test_every_hf_model_has_a_template_and_a_golden_file():
    assert set(TEMPLATES) == {spec.name for spec in HF_SPECS}
    assert all((GOLDEN_DIR / f"{name}.txt").exists() for name in TEMPLATES)


@pytest.mark.parametrize("spec", HF_SPECS, ids=lambda s: s.name)
def test_prompt_equals_the_golden_file(spec):
    system = GOLDEN_SYSTEMS[spec.name]
    assert render_prompt(spec.name, GOLDEN_MESSAGES, system) == golden_prompt(spec.name)
    request = get_adapter("huggingface").build_request(
        spec, GOLDEN_MESSAGES, SETTINGS["huggingface"], system)
    assert request.json["inputs"] == golden_prompt(spec.name)


def test_gemma_system_prompt_leads_the_first_user_turn():
    prompt = render_prompt("gemma-2-27b-it", GOLDEN_MESSAGES, GOLDEN_SYSTEM)
    assert prompt == golden_prompt("gemma-2-27b-it").replace(
        "<start_of_turn>user\nHi!", "<start_of_turn>user\nYou answer in Markdown.\n\nHi!", 1)
    assert prompt.count("You answer in Markdown.") == 1


@pytest.mark.parametrize("name", ["Qwen2.5-72B-Instruct", "Qwen2.5-Coder-32B-Instruct"])
def test_qwen_injects_its_default_system_message(name):
    prompt = render_prompt(name, GOLDEN_MESSAGES, "")
    assert prompt.startswith(f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n")
    assert prompt == golden_prompt(name).replace(GOLDEN_SYSTEM, QWEN_DEFAULT_SYSTEM)


@pytest.mark.parametrize("name", ["Mistral-7B-Instruct-v0.3", "Mistral-Nemo-Instruct-2407",
                                  "Phi-3-mini-4k-instruct", "DeepSeek-R1-Distill-Qwen-32B"])
def test_an_empty_system_prompt_renders_no_system_text(name):
    prompt = render_prompt(name, GOLDEN_MESSAGES, "")
    assert GOLDEN_SYSTEM not in prompt
    assert "\n\nWrite" not in prompt and "<|system|>" not in prompt


def test_deepseek_history_keeps_only_the_answer_after_think():
    messages = [{"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
                {"role": "user", "content": "and 3+3?"}]
    prompt = render_prompt("DeepSeek-R1-Distill-Qwen-32B", messages, "")
    assert prompt == ("<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜>"
                      "<｜User｜>and 3+3?<｜Assistant｜><think>\n")


def test_mistral_v03_trims_replies_and_nemo_does_not():
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": " b \n"},
                {"role": "user", "content": "c"}]
    assert render_prompt("Mistral-7B-Instruct-v0.3", messages, "") == (
        "<s>[INST] a[/INST] b</s>[INST] c[/INST]")
    assert render_prompt("Mistral-Nemo-Instruct-2407", messages, "") == (
        "<s>[INST]a[/INST] b \n</s>[INST]c[/INST]")


def test_normalize_merges_same_role_and_drops_leading_replies():
    messages = [{"role": "assistant", "content": "Welcome!"},
                {"role": "assistant", "content": "Ask me."},
                {"role": "user", "content": "Hi", "id": "x"},
                {"role": "user", "content": "Anyone?"},
                {"role": "system", "content": "ignored"},
                {"role": "assistant", "content": "Yes."},
                {"role": "assistant", "content": "Sorry."},
                {"role": "user", "content": "Ok"}]
    assert normalize_turns(messages) == [("user", "Hi\n\nAnyone?"), ("assistant", "Yes.\n\nSorry."),
                                         ("user", "Ok")]


@pytest.mark.parametrize("spec", HF_SPECS, ids=lambda s: s.name)
def test_real_client_input_does_not_break_strict_templates(spec):
    messages = [{"role": "assistant", "content": "Welcome!"},
                {"role": "user", "content": "Hi"}, {"role": "user", "content": "Anyone?"}]
    prompt = render_prompt(spec.name, messages, "Sys")
    assert "Welcome!" not in prompt
    assert "Hi\n\nAnyone?" in prompt


def test_gemma_alternation_after_merging():
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"}, {"role": "assistant", "content": "d"},
                {"role": "user", "content": "e"}]
    assert render_prompt("gemma-2-27b-it", messages, "") == (
        "<bos><start_of_turn>user\na\n\nb<end_of_turn>\n<start_of_turn>model\nc\n\nd<end_of_turn>\n"
        "<start_of_turn>user\ne<end_of_turn>\n<start_of_turn>model\n")
