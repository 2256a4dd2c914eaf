"""Test helpers for the provider adapters: recorded data, the 12 catalog models, replays."""
from __future__ import annotations

from pathlib import Path

import requests
import responses

from neptun_flask.providers.base import ModelSpec, ProviderSettings
from neptun_flask.providers.framing import iter_events

DATA = Path(__file__).resolve().parent.parent / "data"
PROTOCOLS = DATA / "protocols"
TEMPLATES = DATA / "chat_templates"

SETTINGS = {
    "huggingface": ProviderSettings("https://router.huggingface.co/hf-inference/", "hf_key"),
    "cloudflare": ProviderSettings("https://api.cloudflare.com/client/v4", "cf_key",
                                   account_id="acc123"),
    "openrouter": ProviderSettings("https://openrouter.ai/api/v1", "or_key",
                                   app_url="https://chat.example.org"),
    "ollama": ProviderSettings("http://localhost:11434/"),
}


def _params(max_new: int, typical_p: float, rep: float, truncate: int, **extra) -> dict:
    """Catalog parameters in the catalog's own shape."""
    return {"max_new_tokens": max_new, "typical_p": typical_p, "repetition_penalty": rep,
            "truncate": truncate, "return_full_text": False, **extra}


# The 12 models of the seed catalog (shared/seeds/models-endpoint.txt), as ModelSpecs.
MODEL_SPECS = [
    ModelSpec("huggingface", "qwen", "Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-72B-Instruct",
              _params(512, 0.2, 1.1, 32267)),
    ModelSpec("huggingface", "qwen", "Qwen2.5-Coder-32B-Instruct",
              "Qwen/Qwen2.5-Coder-32B-Instruct", _params(512, 0.2, 1.1, 15499)),
    ModelSpec("huggingface", "deepseek-ai", "DeepSeek-R1-Distill-Qwen-32B",
              "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
              _params(512, 0.2, 1.1, 12499, temperature=0.6)),
    ModelSpec("huggingface", "mistralai", "Mistral-Nemo-Instruct-2407",
              "mistralai/Mistral-Nemo-Instruct-2407",
              _params(500, 0.2, 1.1, 127500, temperature=0.35)),
    ModelSpec("huggingface", "mistralai", "Mistral-7B-Instruct-v0.3",
              "mistralai/Mistral-7B-Instruct-v0.3", _params(500, 0.2, 1.1, 32268)),
    ModelSpec("huggingface", "google", "gemma-2-27b-it", "google/gemma-2-27b-it",
              _params(500, 0.2, 1.1, 7692)),
    ModelSpec("huggingface", "microsoft", "Phi-3-mini-4k-instruct",
              "microsoft/Phi-3-mini-4k-instruct", _params(500, 0.2, 1.1, 3596)),
    ModelSpec("openrouter", "openrouter", "gemini-2.0-pro-exp-02-05",
              "google/gemini-2.0-pro-exp-02-05:free", _params(8192, -1, -1, 1991808)),
    ModelSpec("openrouter", "openrouter", "deepseek-chat", "deepseek/deepseek-chat:free",
              _params(128000, -1, -1, 128000)),
    ModelSpec("openrouter", "openrouter", "llama-3.3-70b-instruct",
              "meta-llama/llama-3.3-70b-instruct:free", _params(2048, -1, -1, 129024)),
    ModelSpec("cloudflare", "cloudflare", "llama-3.3-70b-instruct-fp8-fast",
              "@cf/meta/llama-3.3-70b-instruct-fp8-fast", _params(256, 0.2, 1.1, 130816)),
    ModelSpec("ollama", "ollama", "rwkv-6-world", "mollysama/rwkv-6-world:1.6b",
              _params(500, -1, -1, 3596)),
]
SPECS_BY_NAME = {spec.name: spec for spec in MODEL_SPECS}
HF_SPECS = [spec for spec in MODEL_SPECS if spec.provider == "huggingface"]
CHAT_SPECS = [spec for spec in MODEL_SPECS if spec.provider != "huggingface"]

# The conversation the golden prompts were rendered from.
GOLDEN_SYSTEM = "You answer in Markdown."
GOLDEN_MESSAGES = [
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Write `print(1)` in Python."},
]


def protocol(name: str) -> bytes:
    """The recorded body bytes of one transcript."""
    return (PROTOCOLS / name).read_bytes()


def golden_prompt(model_name: str) -> str:
    """The golden prompt of one model."""
    return (TEMPLATES / f"{model_name}.txt").read_text(encoding="utf-8")


def replay(body: bytes, adapter, framing: str, chunk_size: int | None) -> list:
    """Serve ``body`` from a mocked upstream, read it with requests, return the events."""
    url = "https://upstream.test/stream"
    with responses.RequestsMock() as mock:
        # The request's stream=True makes responses serve the body in reads of chunk_size.
        mock.add(responses.POST, url, body=body, content_type="text/event-stream")
        response = requests.post(url, json={}, stream=True, timeout=5)
        try:
            return list(iter_events(response.iter_content(chunk_size=chunk_size),
                                    adapter, framing))
        finally:
            response.close()
