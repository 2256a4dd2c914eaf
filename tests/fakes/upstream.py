"""A fast local fake of the four LLM upstreams: real HTTP/1.1 on 127.0.0.1, stdlib asyncio only.

Use ``FakeUpstream`` from tests, or run ``python -m tests.fakes.upstream --port N`` for a
benchmark. Tests steer single requests with ``[[fake {...}]]`` directives (see scenario.py);
the reply text is ``expected_text(n)``.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from typing import Any, Callable

from .protocols import expected_text, token_text
from .server import UpstreamServer

__all__ = ["FakeUpstream", "expected_text", "token_text"]


class FakeUpstream:
    """The fake upstream on its own event loop in a daemon thread, for tests."""

    def __init__(self, tokens: int = 5, delay_ms: float = 0, api_key: str | None = None, *,
                 first_delay_ms: float = 0, port: int = 0, log_requests: bool = True) -> None:
        self._server = UpstreamServer(tokens, delay_ms, api_key, first_delay_ms, log_requests)
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, port: int | None = None) -> "FakeUpstream":
        """Start serving; an OS-chosen port unless ``port`` is given here or to the constructor."""
        self._loop = asyncio.new_event_loop()
        ready = asyncio.run_coroutine_threadsafe(
            self._server.start(self._port if port is None else port), self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-upstream",
                                        daemon=True)
        self._thread.start()
        ready.result(timeout=10)
        return self

    def stop(self) -> None:
        """Drop all connections and stop the loop thread."""
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        return self._server.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.port}"

    def requests(self) -> list[dict]:
        """A copy of the request log, oldest first."""
        return self._server.snapshot()

    def reset(self) -> None:
        """Forget all recorded requests."""
        self._server.clear()

    def wait_for(self, predicate: Callable[[list[dict]], Any], timeout: float = 5.0) -> Any:
        """Poll the log until ``predicate(log)`` is truthy and return that value."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.requests()
            result = predicate(log)
            if result:
                return result
            if time.monotonic() > deadline:
                summary = [(e["provider"], e["outcome"], e["tokens_sent"]) for e in log]
                raise TimeoutError(f"fake upstream log never matched; log: {summary}")
            time.sleep(0.005)


def main(argv: list[str] | None = None) -> None:
    """Serve from the command line until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.upstream", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--first-delay-ms", type=float, default=0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--log-requests", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    _raise_file_limit()
    server = UpstreamServer(args.tokens, args.delay_ms, args.api_key, args.first_delay_ms,
                            args.log_requests)
    asyncio.run(_serve_forever(server, args.port))


async def _serve_forever(server: UpstreamServer, port: int) -> None:
    """Start, print the base URL, and wait for a stop signal."""
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before printing: callers signal right after
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await server.start(port)
    print(f"http://127.0.0.1:{server.port}", flush=True)
    await stop.wait()
    await server.shutdown()


def _raise_file_limit() -> None:
    """Benchmarks hold hundreds of sockets; lift the soft descriptor limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


if __name__ == "__main__":
    main()
