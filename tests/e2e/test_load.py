"""End to end under load: many long streams share a small database pool."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes.protocols import expected_text

from .conftest import TIMEOUT_ENV, Client
from .server import Gunicorn, upstream_env
from .streams import parse_data_stream
from .test_streaming import MODEL_PATHS, directive

STREAMS = 200
TOKENS = 30          # one token a second: every stream lasts 30 s
POOL_SIZE = 5


@pytest.fixture(scope="module")
def small_pool_server(upstream, migrated):
    """The app with DATABASE_POOL_SIZE=5 (and no overflow)."""
    process = Gunicorn({"DATABASE_URL": migrated, **upstream_env(upstream.base_url),
                        **TIMEOUT_ENV, "UPSTREAM_IDLE_TIMEOUT": "5", "UPSTREAM_TOTAL_TIMEOUT": "120",
                        "DATABASE_POOL_SIZE": str(POOL_SIZE)})
    yield process
    process.stop()


def test_200_concurrent_30s_streams_with_pool_of_5(small_pool_server):
    """No database connection is held while streaming: 200 persisted 30 s streams all complete."""
    api = Client(small_pool_server.base_url)
    chat_ids = [api.create_chat("ollama/rwkv-6-world") for _ in range(STREAMS)]
    content = directive(tokens=TOKENS, delay_ms=1000)

    def stream(chat_id: int):
        response = api.chat(MODEL_PATHS["ollama"], content, chat_id=chat_id)
        return response.status_code, response.text

    with ThreadPoolExecutor(max_workers=STREAMS) as pool:
        results = list(pool.map(stream, chat_ids))
    assert [status for status, _ in results] == [200] * STREAMS
    for _, body in results:
        reply = parse_data_stream(body)
        assert reply.errors == []
        assert reply.text == expected_text(TOKENS)
        assert reply.finish["finishReason"] == "stop"
    for chat_id in chat_ids[:: STREAMS // 10]:
        assert [m["actor"] for m in api.messages(chat_id)] == ["user", "assistant"]
