"""build_request for the 12 catalog models: URLs, headers, exact parameters, messages, context."""
from __future__ import annotations

import dataclasses
import math

import pytest

from neptun_flask.providers import get_adapter
from neptun_flask.providers.base import ModelSpec, ProviderSettings, RequestTooLarge

from .helpers import CHAT_SPECS, HF_SPECS, MODEL_SPECS, SETTINGS, SPECS_BY_NAME

MESSAGES = [
    {"role": "user", "content": "Hi!", "id": "m1", "createdAt": "2025-01-01T00:00:00Z"},
    {"role": "assistant", "content": "Hello! How can I help?", "parts": []},
    {"role": "user", "content": "Write `print(1)` in Python."},
]
TGI_ONLY = {"typical_p", "truncate", "return_full_text", "details", "max_new_tokens"}


def build(spec: ModelSpec, messages=MESSAGES, system="Be brief.", settings=None):
    """Build the request of a spec with the test settings of its provider."""
    return get_adapter(spec.provider).build_request(
        spec, messages, settings or SETTINGS[spec.provider], system)


def with_params(spec: ModelSpec, **changes) -> ModelSpec:
    """A copy of a spec with some catalog parameters changed (None removes one)."""
    parameters = {**spec.parameters, **changes}
    parameters = {k: v for k, v in parameters.items() if v is not None}
    return dataclasses.replace(spec, parameters=parameters)


def test_there_are_twelve_models():
    assert len(MODEL_SPECS) == 12 and len(HF_SPECS) == 7


@pytest.mark.parametrize("spec", HF_SPECS, ids=lambda s: s.name)
def test_huggingface_request(spec):
    request = build(spec)
    assert request.url == f"https://router.huggingface.co/hf-inference/models/{spec.upstream_id}"
    assert request.headers == {"Authorization": "Bearer hf_key"}
    assert request.framing == "sse"
    assert set(request.json) == {"inputs", "parameters", "stream"}
    assert request.json["stream"] is True
    expected = {"max_new_tokens": spec.parameters["max_new_tokens"], "typical_p": 0.2,
                "repetition_penalty": 1.1, "truncate": spec.parameters["truncate"],
                "return_full_text": False, "details": True}
    if "temperature" in spec.parameters:
        expected["temperature"] = spec.parameters["temperature"]
    assert request.json["parameters"] == expected
    assert request.prompt_tokens_estimate == math.ceil(len(request.json["inputs"]) / 4)
    assert request.starts_in_reasoning == (spec.name == "DeepSeek-R1-Distill-Qwen-32B")
    assert "Be brief." in request.json["inputs"]


def test_temperature_only_where_the_catalog_sets_it():
    with_temperature = {s.name for s in HF_SPECS if "temperature" in build(s).json["parameters"]}
    assert with_temperature == {"DeepSeek-R1-Distill-Qwen-32B", "Mistral-Nemo-Instruct-2407"}


@pytest.mark.parametrize("changes, absent", [
    ({"typical_p": -1, "repetition_penalty": -1}, {"typical_p", "repetition_penalty"}),
    ({"typical_p": 1.0}, {"typical_p"}),
    ({"typical_p": 0}, {"typical_p"}),
    ({"temperature": 0}, {"temperature"}),
    ({"temperature": -1}, {"temperature"}),
])
def test_huggingface_leaves_out_values_tgi_rejects(changes, absent):
    request = build(with_params(SPECS_BY_NAME["gemma-2-27b-it"], **changes))
    assert not absent & set(request.json["parameters"])
    assert request.json["parameters"]["truncate"] == 7692


def test_huggingface_without_api_key_sends_no_auth():
    settings = ProviderSettings("http://tgi.local:8080")
    request = build(HF_SPECS[0], settings=settings)
    assert request.headers == {}
    assert request.url == "http://tgi.local:8080/models/Qwen/Qwen2.5-72B-Instruct"


def test_huggingface_model_without_template_is_a_clear_error():
    spec = ModelSpec("huggingface", "meta", "Llama-9", "meta/Llama-9", HF_SPECS[0].parameters)
    with pytest.raises(ValueError, match="no chat template.*Llama-9"):
        build(spec)


def test_huggingface_never_drops_history():
    spec = with_params(SPECS_BY_NAME["Phi-3-mini-4k-instruct"], truncate=10)
    messages = [{"role": "user", "content": "word " * 500}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "again"}]
    request = build(spec, messages)
    assert request.json["inputs"].count("word") == 500
    assert request.json["parameters"]["truncate"] == 10


def test_cloudflare_request():
    spec = SPECS_BY_NAME["llama-3.3-70b-instruct-fp8-fast"]
    request = build(spec)
    assert request.url == ("https://api.cloudflare.com/client/v4/accounts/acc123/ai/run/"
                           "@cf/meta/llama-3.3-70b-instruct-fp8-fast")
    assert request.headers == {"Authorization": "Bearer cf_key"}
    assert request.framing == "sse"
    assert set(request.json) == {"messages", "stream", "max_tokens", "repetition_penalty"}
    assert request.json["max_tokens"] == 256
    assert request.json["repetition_penalty"] == 1.1
    assert request.json["stream"] is True


def test_cloudflare_sends_temperature_when_set_and_needs_an_account():
    spec = with_params(SPECS_BY_NAME["llama-3.3-70b-instruct-fp8-fast"], temperature=0.3,
                       repetition_penalty=-1)
    assert set(build(spec).json) == {"messages", "stream", "max_tokens", "temperature"}
    with pytest.raises(ValueError, match="account"):
        build(spec, settings=ProviderSettings("https://api.cloudflare.com/client/v4", "k"))


@pytest.mark.parametrize("spec", [s for s in CHAT_SPECS if s.provider == "openrouter"],
                         ids=lambda s: s.name)
def test_openrouter_request(spec):
    request = build(spec)
    assert request.url == "https://openrouter.ai/api/v1/chat/completions"
    assert request.headers == {"Authorization": "Bearer or_key",
                               "HTTP-Referer": "https://chat.example.org",
                               "X-Title": "neptun-flask"}
    assert request.json == {"model": spec.upstream_id, "messages": request.json["messages"],
                            "stream": True, "max_tokens": spec.parameters["max_new_tokens"],
                            "usage": {"include": True}}


def test_openrouter_optional_parameters_and_default_referer():
    spec = with_params(SPECS_BY_NAME["deepseek-chat"], temperature=0.5, repetition_penalty=1.05)
    request = build(spec, settings=ProviderSettings("https://openrouter.ai/api/v1", "k"))
    assert request.json["temperature"] == 0.5
    assert request.json["repetition_penalty"] == 1.05
    assert "typical_p" not in request.json
    assert request.headers["HTTP-Referer"].startswith("http")


def test_ollama_request():
    spec = SPECS_BY_NAME["rwkv-6-world"]
    request = build(spec)
    assert request.url == "http://localhost:11434/api/chat"
    assert request.headers == {}
    assert request.framing == "ndjson"
    assert set(request.json) == {"model", "messages", "stream", "options"}
    assert request.json["model"] == "mollysama/rwkv-6-world:1.6b"
    assert request.json["options"] == {"num_predict": 500}


def test_ollama_options_when_set_and_api_key():
    spec = with_params(SPECS_BY_NAME["rwkv-6-world"], temperature=0.7, typical_p=0.5,
                       repetition_penalty=1.2)
    request = build(spec, settings=ProviderSettings("https://ollama.com/", "ol_key"))
    assert request.json["options"] == {"num_predict": 500, "temperature": 0.7,
                                       "typical_p": 0.5, "repeat_penalty": 1.2}
    assert request.headers == {"Authorization": "Bearer ol_key"}
    assert request.url == "https://ollama.com/api/chat"


@pytest.mark.parametrize("spec", CHAT_SPECS, ids=lambda s: s.name)
def test_chat_providers_get_clean_messages_with_the_system_prompt_first(spec):
    request = build(spec)
    assert request.json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Write `print(1)` in Python."},
    ]
    assert not TGI_ONLY & set(request.json)
    chars = len("Be brief.Hi!Hello! How can I help?Write `print(1)` in Python.")
    assert request.prompt_tokens_estimate == math.ceil(chars / 4)
    assert request.starts_in_reasoning is False
    assert build(spec, system="").json["messages"][0] == {"role": "user", "content": "Hi!"}


def _turns(n: int, size: int) -> list[dict[str, str]]:
    """n alternating user/assistant messages of ``size`` characters each, oldest first."""
    return [{"role": "assistant" if i % 2 else "user", "content": f"{i:02d}" + "x" * (size - 2)}
            for i in range(n)]


@pytest.mark.parametrize("spec", CHAT_SPECS, ids=lambda s: s.name)
def test_context_fitting_drops_the_oldest_turns(spec):
    # truncate 200, max_new_tokens 50: budget 150 tokens; each message costs 40/4 + 4 = 14.
    small = with_params(spec, truncate=200, max_new_tokens=50)
    messages = build(small, _turns(21, 40), system="S" * 40).json["messages"]
    assert messages[0] == {"role": "system", "content": "S" * 40}
    assert messages[-1]["content"].startswith("20")
    assert sum(len(m["content"]) // 4 + 4 for m in messages) <= 150
    assert messages[1]["role"] == "user", "history does not open with an orphaned reply"
    kept = [int(m["content"][:2]) for m in messages[1:]]
    assert kept == list(range(kept[0], 21)) and kept[0] > 0


def test_context_budget_keeps_half_the_context_for_the_prompt():
    # max_new_tokens larger than half of truncate: the prompt still gets truncate // 2.
    spec = with_params(SPECS_BY_NAME["deepseek-chat"], truncate=100, max_new_tokens=1000)
    messages = build(spec, _turns(9, 40), system="").json["messages"]
    assert sum(len(m["content"]) // 4 + 4 for m in messages) <= 50
    assert len(messages) == 3


def test_context_that_fits_is_untouched():
    spec = SPECS_BY_NAME["llama-3.3-70b-instruct"]
    assert len(build(spec, _turns(30, 400)).json["messages"]) == 31


@pytest.mark.parametrize("spec", CHAT_SPECS, ids=lambda s: s.name)
def test_request_too_large_when_the_last_message_alone_does_not_fit(spec):
    small = with_params(spec, truncate=100, max_new_tokens=20)
    with pytest.raises(RequestTooLarge):
        build(small, [{"role": "user", "content": "y" * 400}], system="")
    with pytest.raises(RequestTooLarge):
        build(small, _turns(3, 20) + [{"role": "user", "content": "y" * 200}], system="z" * 200)
    # Without the long system prompt the last message fits (54 of 80 tokens), and the
    # history is cut to what fits beside it: one 9-token turn.
    messages = build(small, _turns(3, 20) + [{"role": "user", "content": "y" * 200}],
                     system="").json["messages"]
    assert [m["content"][:2] for m in messages] == ["02", "yy"]
