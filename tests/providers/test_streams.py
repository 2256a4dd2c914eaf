"""Recorded upstream streams replayed through requests + responses + each adapter."""
from __future__ import annotations

import json

import pytest

from neptun_flask.providers import ADAPTERS, get_adapter
from neptun_flask.providers.base import (DONE, End, FinishReason, ReasoningDelta, TextDelta,
                                         UpstreamError, Usage)
from neptun_flask.providers.framing import MalformedEvent, iter_events

from .helpers import protocol, replay

FRAMING = {"huggingface": "sse", "cloudflare": "sse", "openrouter": "sse", "ollama": "ndjson"}

# transcript: (provider, text, reasoning, usages, finish reasons, error, ends)
CASES = {
    "hf_tgi_generate_stream_ok.txt":
        ("huggingface", " The café is open.", "", [Usage(12, 6)], ["stop"], None, True),
    "hf_inference_api_stream_ok_legacy_nospace.txt":
        ("huggingface", "Hello, world!", "", [], [], None, True),
    "hf_tgi_generate_stream_error_midstream.txt":
        ("huggingface", " The answer is", "", [], [], "Request failed during generation: "
         "Server error: CUDA out of memory.", False),
    "hf_tgi_generate_stream_incomplete.txt":
        ("huggingface", " The answer", "", [], [], "Incomplete generation stream", False),
    "hf_tgi_generate_stream_validation_error.txt":
        ("huggingface", "", "", [], [], "Input validation error: `inputs` tokens + "
         "`max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 512 "
         "`max_new_tokens`", False),
    "cloudflare_stream_ok.txt":
        ("cloudflare", "Bonjour à tous 👋", "", [Usage(24, 5)], [], None, True),
    # The OpenAI-shape chunk and the native terminal event both report the same usage.
    "cloudflare_stream_ok_openai_shape.txt":
        ("cloudflare", "Hello there!", "User greets.", [Usage(70, 14)] * 2, ["stop"], None,
         True),
    "openrouter_stream_ok.txt":
        ("openrouter", "Bonjour à tous 👋!", "", [Usage(14, 5)], ["stop"], None, True),
    "openrouter_stream_error_midstream.txt":
        ("openrouter", "Once upon a time", "", [], [], "Provider disconnected unexpectedly",
         False),
    "ollama_chat_stream_ok.txt":
        ("ollama", "Le ciel est bleu & ☀️.", "", [Usage(26, 7)], ["stop"], None, True),
    "ollama_chat_stream_error_midstream.txt":
        ("ollama", " Yes. I can", "", [], [], "an error was encountered while running the model",
         False),
}


def summarize(events):
    """Reduce events to (text, reasoning, usages, finish reasons, error, ended)."""
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    usages = [e for e in events if isinstance(e, Usage)]
    finishes = [e.reason for e in events if isinstance(e, FinishReason)]
    errors = [e.message for e in events if isinstance(e, UpstreamError)]
    assert len(errors) <= 1
    ends = [e for e in events if isinstance(e, End)]
    assert len(ends) <= 1
    if ends:
        assert events[-1] == End(), "End is the last event"
    return text, reasoning, usages, finishes, errors[0] if errors else None, bool(ends)


def test_registry_holds_the_four_providers():
    assert set(ADAPTERS) == {"huggingface", "cloudflare", "openrouter", "ollama"}
    for name, adapter in ADAPTERS.items():
        assert adapter.name == name
        assert get_adapter(name) is adapter
    with pytest.raises(KeyError):
        get_adapter("nope")


@pytest.mark.parametrize("chunk_size", [1, 7, None])
@pytest.mark.parametrize("name", sorted(CASES))
def test_replayed_stream(name, chunk_size):
    provider, *expected = CASES[name]
    events = replay(protocol(name), get_adapter(provider), FRAMING[provider], chunk_size)
    assert summarize(events) == tuple(expected)


@pytest.mark.parametrize("name", sorted(n for n, case in CASES.items() if case[-1]))
def test_cut_streams_have_no_end(name):
    provider = CASES[name][0]
    body = protocol(name)
    complete = len(body.rstrip())   # the terminator's last byte
    adapter = get_adapter(provider)
    for cut in range(complete):
        events = list(iter_events([body[:cut]], adapter, FRAMING[provider]))
        assert End() not in events, cut


@pytest.mark.parametrize("provider", sorted(FRAMING))
def test_non_object_payload_is_malformed(provider):
    with pytest.raises(MalformedEvent):
        get_adapter(provider).parse_event([1, 2])


@pytest.mark.parametrize("provider, body", [
    ("openrouter", b'data: {"choices": ["x"]}\n\n'),
    ("cloudflare", b'data: {"choices": [{"delta": "text"}]}\n\n'),
    ("huggingface", b'data: {"token": "x", "generated_text": null}\n\n'),
    ("ollama", b'{"message": "hi", "done": false}\n'),
])
def test_unexpected_event_shapes_are_malformed(provider, body):
    with pytest.raises(MalformedEvent):
        list(iter_events([body], get_adapter(provider), FRAMING[provider]))


def test_hf_done_is_not_part_of_generate_stream_and_adds_nothing():
    assert get_adapter("huggingface").parse_event(DONE) == []


def test_hf_special_tokens_are_not_text():
    parse = get_adapter("huggingface").parse_event
    event = {"index": 1, "token": {"id": 2, "text": "<|im_end|>", "special": True},
             "generated_text": None, "details": None}
    assert parse(event) == []
    final = dict(event, token={"id": 5, "text": "!", "special": False}, generated_text="Hi!",
                 details={"finish_reason": "length", "generated_tokens": 2, "input_length": 3})
    assert parse(final) == [TextDelta("!"), Usage(3, 2), FinishReason("length"), End()]


def test_hf_error_object_form():
    parse = get_adapter("huggingface").parse_event
    assert parse({"error": {"message": "boom", "http_status_code": 422}}) == [UpstreamError("boom")]


def test_cloudflare_in_stream_errors():
    parse = get_adapter("cloudflare").parse_event
    error = {"errors": [{"message": "AiError: x", "code": 3046}]}
    assert parse(error) == [UpstreamError("x")]
    assert parse({"error": "bad"}) == [UpstreamError("bad")]
    assert parse({"response": "", "p": "heartbeat"}) == []
    assert parse(DONE) == [End()]


@pytest.mark.parametrize("raw, mapped", [
    ("stop", "stop"), ("length", "length"), ("tool_calls", "tool-calls"),
    ("content_filter", "content-filter"), ("error", "error"), ("weird", "other")])
def test_openrouter_finish_reasons(raw, mapped):
    event = {"choices": [{"index": 0, "delta": {}, "finish_reason": raw}]}
    assert get_adapter("openrouter").parse_event(event) == [FinishReason(mapped)]


def test_openrouter_reasoning_and_usage_without_choices():
    parse = get_adapter("openrouter").parse_event
    event = {"choices": [{"delta": {"reasoning": "hmm", "content": "Hi"}, "finish_reason": None}]}
    assert parse(event) == [ReasoningDelta("hmm"), TextDelta("Hi")]
    assert parse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}) == [
        Usage(3, 4)]
    assert parse({"choices": [], "error": {"code": 502, "message": "down"}}) == [
        UpstreamError("down")]


def test_ollama_final_line_text_thinking_and_missing_counts():
    parse = get_adapter("ollama").parse_event
    assert parse({"message": {"role": "assistant", "content": "", "thinking": "Let me"},
                  "done": False}) == [ReasoningDelta("Let me")]
    final = {"message": {"role": "assistant", "content": "!"}, "done": True,
             "done_reason": "length", "eval_count": 9}
    assert parse(final) == [TextDelta("!"), Usage(None, 9), FinishReason("length"), End()]
    assert parse({"done": True, "done_reason": "unload"})[1] == FinishReason("stop")


# transcript: (provider, status, expected message)
ERROR_BODIES = [
    ("hf_inference_api_410_gone.txt", "huggingface", 410,
     "https://api-inference.huggingface.co is no longer supported. Please use "
     "https://router.huggingface.co instead."),
    ("hf_inference_api_503_loading_legacy.txt", "huggingface", 503,
     "Model meta-llama/Llama-2-13b-chat is currently loading"),
    ("hf_router_v1_400_model_not_supported.txt", "huggingface", 400,
     "The requested model 'HuggingFaceH4/zephyr-7b-beta' is not supported by any provider "
     "you have enabled."),
    # Workers AI's "AiError: " prefixes (sometimes doubled) are dropped.
    ("cloudflare_error_400_no_such_model.txt", "cloudflare", 400,
     "No such model @cf/meta/llama-2-7b-chat-int8 or task"),
    ("cloudflare_error_401_auth.txt", "cloudflare", 401, "Authentication error"),
    ("cloudflare_error_408_timeout.txt", "cloudflare", 408,
     "Request timeout (df1159f0)"),
    ("cloudflare_error_429_daily_neurons.txt", "cloudflare", 429,
     "you have used up your daily free allocation of 10,000 neurons"),
    ("openrouter_error_401.txt", "openrouter", 401, "No auth credentials found"),
    ("openrouter_error_402.txt", "openrouter", 402,
     "This request requires more credits, or fewer max_tokens. You requested up to 32768 "
     "tokens, but can only afford 8246. To increase, visit "
     "https://openrouter.ai/settings/credits and add more credits"),
    ("openrouter_error_429.txt", "openrouter", 429, "Rate limit exceeded: free-models-per-min."),
    ("ollama_chat_error_404.txt", "ollama", 404, "model 'llama9' not found"),
    ("ollama_chat_error_404_legacy.txt", "ollama", 404,
     'model "llama9" not found, try pulling it first'),
]


@pytest.mark.parametrize("name, provider, status, message", ERROR_BODIES)
def test_error_message_of_recorded_bodies(name, provider, status, message):
    assert get_adapter(provider).error_message(status, protocol(name)) == message


def test_openrouter_prefers_the_providers_raw_message():
    body = (b'{"error":{"code":502,"message":"Provider returned error",'
            b'"metadata":{"raw":"upstream exploded","provider_name":"X"}}}')
    assert get_adapter("openrouter").error_message(502, body) == "upstream exploded"
    body = b'{"error":{"code":502,"message":"Provider returned error","metadata":{"raw":{}}}}'
    assert get_adapter("openrouter").error_message(502, body) == "Provider returned error"


@pytest.mark.parametrize("provider", sorted(FRAMING))
@pytest.mark.parametrize("status, body, message", [
    (502, b"", "HTTP 502"),
    (500, b"  \n", "HTTP 500"),
    (502, b"<html>Bad gateway</html>", "Bad gateway"),
    (500, b"x" * 1000, "x" * 300),
    (500, b"\xff\xfe broken", "\ufffd\ufffd broken"),
    (400, b'{"unexpected": [1, 2]}', '{"unexpected": [1, 2]}'),
    (400, b'[{"error": "x"}]', '[{"error": "x"}]'),
    (400, b'{"error": null, "errors": "nope"}', '{"error": null, "errors": "nope"}'),
])
def test_error_message_falls_back_and_never_raises(provider, status, body, message):
    assert get_adapter(provider).error_message(status, body) == message


NGINX_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
             b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
             b"</body>\r\n</html>\r\n")
BIG_PAGE = (b"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Oops</title>"
            b"<style>body { font: 14px sans-serif; }" + b" .x { color: red; }" * 500
            + b"</style><script>var x = '<b>' + 1;</script></head><body><!-- origin down -->"
            b"<h1>Error&nbsp;502</h1>\n\n  <p>The   origin &amp; its\tpool are down.</p>"
            + b"<p>Ray ID: 8f1c</p>" * 100 + b"</body></html>")


@pytest.mark.parametrize("provider", sorted(FRAMING))
def test_html_error_page_becomes_plain_bounded_text(provider):
    """An HTML error page (a proxy's or a CDN's) is passed on as its plain text: no head,
    style, script, comments or tags, entities decoded, whitespace collapsed, <= 300 chars."""
    adapter = get_adapter(provider)
    assert adapter.error_message(502, NGINX_502) == "502 Bad Gateway nginx"
    message = adapter.error_message(502, BIG_PAGE)
    assert message.startswith("Error 502 The origin & its pool are down. Ray ID: 8f1c Ray ID")
    assert len(message) <= 300
    for markup in ("<", ">", "font", "var x", "origin down", "Oops", "  ", "\n", "\t"):
        assert markup not in message


@pytest.mark.parametrize("provider", sorted(FRAMING))
def test_error_text_found_in_json_is_plain_and_bounded(provider):
    """A message taken from a JSON error body is made plain and bounded the same way (an
    upstream may put a whole HTML page in it)."""
    page = "<html><body><h1>upstream\n  exploded</h1>" + "<p>detail</p>" * 100 + "</body></html>"
    error = {"message": page, "metadata": {"raw": page}} if provider == "openrouter" else page
    if provider == "cloudflare":
        body = json.dumps({"errors": [{"message": page}], "success": False})
    else:
        body = json.dumps({"error": error})
    message = get_adapter(provider).error_message(500, body.encode())
    assert message.startswith("upstream exploded detail detail")
    assert len(message) <= 300 and "<" not in message
