"""Use the ``openai`` Python SDK found first on sys.path against the service, and print what
it got as one JSON object (run by tests/e2e/test_openai_api.py under each SDK version).

Usage: python openai_sdk.py BASE_URL API_KEY MODEL RATE_LIMITED_PROMPT
"""
from __future__ import annotations

import json
import sys

import openai


def main() -> None:
    base_url, key, model, limited = sys.argv[1:5]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=30)
    out: dict = {"version": openai.__version__}
    out["models"] = [(m.id, m.owned_by) for m in client.models.list()]

    text, usage, finish = "", None, None
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], stream=True,
        stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    out["stream"] = {"text": text, "usage": usage, "finish": finish}

    whole = client.chat.completions.create(
        model=model, max_tokens=3,
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Hello"}])
    out["complete"] = {"text": whole.choices[0].message.content,
                       "finish": whole.choices[0].finish_reason,
                       "usage": whole.usage.model_dump(), "object": whole.object}

    for name, call in (
            ("rate_limited", lambda: client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": limited}])),
            ("bad_key", lambda: openai.OpenAI(base_url=f"{base_url}/v1", api_key="nf_wrong",
                                              max_retries=0).models.list()),
            ("unknown_model", lambda: client.chat.completions.create(
                model="nobody/nothing", messages=[{"role": "user", "content": "Hi"}])),
            ("tools", lambda: client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}],
                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]))):
        try:
            call()
            out[name] = None
        except openai.APIStatusError as error:
            out[name] = {"class": type(error).__name__, "status": error.status_code,
                         "message": error.message, "body": error.body,
                         "retry_after": error.response.headers.get("retry-after")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
