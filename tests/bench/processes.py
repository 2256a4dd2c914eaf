"""Starting, placing and always stopping the benchmark's processes.

Every child gets its own process group, so stopping it also stops whatever it spawned
(gunicorn's worker). ``taskset`` places the client side (fake upstream, load generator) and
the server on different cores when the machine has two.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.e2e.server import ROOT, free_port

from .machine import can_pin, children

#: Settings every server run gets, as the issue asks; the rest comes from each target. A worker
#: that crashes leaves its threads' Python tracebacks in its log (faulthandler; free until then).
SERVER_SETTINGS = {"SECRET_KEY": "bench-secret", "SESSION_COOKIE_SECURE": "false",
                   "RATELIMIT_ENABLED": "false", "LOG_LEVEL": "WARNING",
                   "PASSWORD_HASH_COST": "low", "PYTHONFAULTHANDLER": "1"}
_FOREIGN = ("HUGGINGFACE_", "CLOUDFLARE_", "OPENROUTER_", "OLLAMA_", "UPSTREAM_", "DATABASE_",
            "REDIS_")


class Placement:
    """The ``taskset`` prefixes for the client side and the server, or none."""

    def __init__(self) -> None:
        self.pinned = can_pin()
        cores = sorted(os.sched_getaffinity(0))
        self.client = ["taskset", "-c", str(cores[0])] if self.pinned else []
        self.server = ["taskset", "-c", str(cores[1])] if self.pinned else []


class Child:
    """A child process in its own process group."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None,
                 root: Path = ROOT, **popen) -> None:
        self.command = command
        self.process = subprocess.Popen(command, cwd=root, env=env, start_new_session=True,
                                        **popen)
        self.pid = self.process.pid

    def read_line(self, timeout: float) -> str:
        """One line of the child's stdout, waiting at most ``timeout`` seconds."""
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            code = self.process.poll()
            raise RuntimeError(f"{self.command[-1]}: no answer within {timeout:.0f} s"
                               + ("" if code is None else f" (exited with {code})"))
        return line

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL it if it is still there after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def start_fake(placement: Placement, tokens: int, delay_ms: float) -> tuple[Child, str]:
    """The fake upstream as its own process; returns it and its base URL."""
    command = placement.client + [
        sys.executable, "-m", "tests.fakes.upstream", "--port", "0", "--tokens", str(tokens),
        "--delay-ms", str(delay_ms), "--no-log-requests"]
    child = Child(command, stdout=subprocess.PIPE, text=True)
    return child, child.read_line(30).strip()


class LoadGen:
    """The load generator process; ``run`` sends one job and waits for its answer."""

    def __init__(self, placement: Placement) -> None:
        self.placement = placement
        self._child = self._start()

    def _start(self) -> Child:
        """A fresh load generator on the client core."""
        command = self.placement.client + [sys.executable, "-m", "tests.bench.loadgen"]
        return Child(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, job: dict, timeout: float) -> dict:
        """Send a job; its answer is due within the job's own time limit plus ``timeout``.

        A job that never answers would leave a stale answer behind, so the process is replaced.
        """
        process = self._child.process
        try:
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
            return json.loads(self._child.read_line(job["time_limit"] + timeout))
        except (OSError, RuntimeError, ValueError):
            self._child.stop()
            self._child = self._start()
            raise

    def stop(self) -> None:
        """Stop the process."""
        self._child.stop()


def server_env(settings: dict[str, str]) -> dict[str, str]:
    """This environment without provider or database settings, plus the server's own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_FOREIGN)}
    return {**env, **SERVER_SETTINGS, **settings}


def migrate(database_url: str, root: Path = ROOT) -> None:
    """Create the schema with the project's own release step (of the checkout at ``root``)."""
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=root,
                   env=server_env({"DATABASE_URL": database_url}), check=True,
                   capture_output=True, timeout=120)


class Gunicorn(Child):
    """``gunicorn -w 1 --worker-connections 2000 --no-control-socket -c CONFIG APP`` with
    gevent workers (the service passes ``python:neptun_flask.serving``, its hooks and its
    gevent worker; the bare relay nothing, so ``-k gevent``). ``root``: the checkout it
    serves (another one than this, to compare two versions)."""

    def __init__(self, placement: Placement, app: str, settings: dict[str, str],
                 log: Path, config: str | None = None, root: Path = ROOT) -> None:
        self.port = free_port()
        self.log = log
        self.base_url = f"http://127.0.0.1:{self.port}"
        command = placement.server + [
            sys.executable, "-m", "gunicorn", "-w", "1",
            "--worker-connections", "2000", "-b", f"127.0.0.1:{self.port}",
            "--no-control-socket", "--graceful-timeout", "2",
            *(["-c", config] if config else ["-k", "gevent"]), app]
        with log.open("ab") as file:  # gunicorn's own lines would bury the progress output
            super().__init__(command, server_env(settings), root, stdout=file,
                             stderr=subprocess.STDOUT)
        self.worker_pid = self._wait_ready()

    def worker_deaths(self) -> list[str]:
        """gunicorn's log lines about a worker that died or timed out (a crash, SIGKILL,
        a non-zero exit): its replacement starts empty, so the rows after it measured
        another process than the one whose RSS is polled."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in lines if "Worker (pid:" in line or "WORKER TIMEOUT" in line]

    def _wait_ready(self) -> int:
        """Wait for /health, then return the worker's pid."""
        wait_ready(self, self.base_url + "/health", 30, self.log)
        deadline = time.monotonic() + 10
        while len(workers := children(self.pid)) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(workers) != 1:
            self.stop()
            raise RuntimeError(f"gunicorn has workers {workers}, expected one; see {self.log}")
        return workers[0]


def wait_ready(child: Child, url: str, seconds: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; stop the child and raise if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.command[-1]} exited with {child.process.returncode}; "
                               f"see {log}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    child.stop()
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s; see {log}")
