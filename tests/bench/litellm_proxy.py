"""Optional comparison target: the LiteLLM proxy, from a throwaway virtualenv under /tmp.

LiteLLM is never a project dependency: ``--litellm`` creates the virtualenv on first use
(``pip install 'litellm[proxy]'``, about a minute) and reuses it after that. The proxy runs
as one process (uvicorn, no master) on the server core and is sent the service's upstream
messages as an OpenAI chat completion; it streams OpenAI-style SSE back.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.server import free_port

from .machine import children
from .processes import Child, Placement, wait_ready

VENV = Path(tempfile.gettempdir()) / "neptun-bench-litellm-venv"
# Offline switches: the bundled cost map, no tokenizer downloads from a model hub, and no
# refusal to start without a master key (this proxy only ever listens on 127.0.0.1).
_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1",
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true", "LITELLM_LOG": "ERROR"}


def ensure_litellm() -> Path:
    """The ``litellm`` command of the throwaway virtualenv, installing it when missing."""
    command = VENV / "bin" / "litellm"
    if not command.exists():
        print(f"installing litellm[proxy] into {VENV} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
                       check=True, timeout=900)
    return command


class LiteLLMProxy:
    """``litellm --config ... --num_workers 1`` in front of the fake upstream."""

    name = "litellm proxy"
    mode = "openrouter"  # OpenAI-style SSE, which the OpenRouter reader understands
    headers: dict[str, str] = {}

    def __init__(self, placement: Placement, base_url: str, upstream: dict,
                 log_dir: Path) -> None:
        config = log_dir / "litellm.json"  # JSON is YAML, which is what LiteLLM reads
        # A model name without "llama" in it: LiteLLM would fetch a llama tokenizer to count.
        config.write_text(json.dumps({"model_list": [{"model_name": "bench", "litellm_params": {
            "model": "openai/bench-model", "api_base": base_url,
            "api_key": upstream["headers"].get("Authorization", "x").removeprefix("Bearer ")}}]}))
        self.port = free_port()
        log = log_dir / "litellm.log"
        command = placement.server + [
            str(ensure_litellm()), "--config", str(config), "--host", "127.0.0.1",
            "--port", str(self.port), "--num_workers", "1"]
        with log.open("ab") as file:
            self.child = Child(command, {**os.environ, **_ENV}, stdout=file,
                               stderr=subprocess.STDOUT)
        wait_ready(self.child, f"http://127.0.0.1:{self.port}/health/liveliness", 120, log)
        workers = children(self.child.pid)
        self.cpu_pid = self.child.pid
        self.rss_pid = workers[0] if len(workers) == 1 else self.child.pid
        body = upstream["json"]
        self._body = json.dumps({"model": "bench", "messages": body["messages"], "stream": True,
                                 "max_tokens": body.get("max_tokens")})

    def prepare(self, count: int) -> list[tuple[str, str]]:
        """``count`` identical chat completion requests."""
        return [("/v1/chat/completions", self._body)] * count

    def close(self) -> None:
        """Stop the proxy."""
        self.child.stop()
