"""Running the real app under gunicorn's gevent worker for end-to-end tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-upstream-key"


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def upstream_env(base_url: str) -> dict[str, str]:
    """Point every provider at one upstream base URL, with credentials."""
    return {
        "HUGGINGFACE_BASE_URL": base_url, "HUGGINGFACE_API_KEY": API_KEY,
        "CLOUDFLARE_BASE_URL": base_url, "CLOUDFLARE_API_TOKEN": API_KEY,
        "CLOUDFLARE_ACCOUNT_ID": "test-account",
        "OPENROUTER_BASE_URL": base_url, "OPENROUTER_API_KEY": API_KEY,
        "OLLAMA_BASE_URL": base_url,
    }


def migrate(database_url: str) -> None:
    """Create the schema with the project's release step."""
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                   env={**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "x"},
                   check=True, capture_output=True, timeout=120)


class Gunicorn:
    """``gunicorn -k gevent wsgi:app`` on 127.0.0.1 with the given environment."""

    def __init__(self, env: dict[str, str], workers: int = 1):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        full_env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("HUGGINGFACE_", "CLOUDFLARE_", "OPENROUTER_",
                                           "OLLAMA_", "UPSTREAM_", "DATABASE_"))}
        full_env.update({"SECRET_KEY": "e2e-secret", "SESSION_COOKIE_SECURE": "false",
                         "PASSWORD_HASH_COST": "low", "RATELIMIT_ENABLED": "false",
                         "LOG_LEVEL": "WARNING"})
        full_env.update(env)
        # The serving config names the worker: gunicorn's gevent worker, with JSON errors.
        command = [sys.executable, "-m", "gunicorn", "-w", str(workers),
                   "--worker-connections", "2000", "-b", f"127.0.0.1:{self.port}",
                   "--no-control-socket", "--graceful-timeout", "2",
                   "-c", "python:neptun_flask.serving", "wsgi:app"]
        self.process = subprocess.Popen(command, cwd=ROOT, env=full_env)
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Wait for /health to answer."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            try:
                if requests.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not become ready")

    def stop(self) -> None:
        """Stop gunicorn and wait for it."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
