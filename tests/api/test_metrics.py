"""GET /metrics in-process: off by default, the METRICS_TOKEN gate, the metric functions, and
the metrics wired at their places (responses per route rule, upstream errors, batch sizes,
stored replies); no user data in any label."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from neptun_flask import metrics
from tests.api.helpers import assert_error, create_chat
from tests.api.test_upstream_errors import Upstream
from tests.conftest import sign_up

EMAIL = "metrics.person@example.com"


def value(name: str, **labels) -> float:
    """A sample's value in this process's registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client, **headers) -> dict:
    """The scrape's samples by (name, sorted labels)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for s in family.samples}


def test_metrics_off_by_default(client):
    """Without METRICS_ENABLED there is no /metrics route: the JSON 404."""
    assert_error(client.get("/metrics"), 404)


def test_metrics_without_token_are_open(app_factory):
    """Enabled without a token: a scrape answers the text format, responses counted by route
    rule and status."""
    client = app_factory(METRICS_ENABLED=True).test_client()
    before = value("neptun_http_requests_total", method="GET", route="/health", status="200")
    for _ in range(3):
        assert client.get("/health").status_code == 200
    samples = scrape(client)
    key = ("neptun_http_requests_total",
           (("method", "GET"), ("route", "/health"), ("status", "200")))
    assert samples[key] == before + 3


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer s3cret-token x", "s3cret-token"])
def test_metrics_token_gate_refuses(app_factory, header):
    """With METRICS_TOKEN, a scrape without exactly ``Bearer <token>`` is a JSON 401."""
    client = app_factory(METRICS_ENABLED=True, METRICS_TOKEN="s3cret-token").test_client()
    response = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert_error(response, 401)
    assert b"neptun_" not in response.data


def test_metrics_token_gate_accepts(app_factory):
    """The right bearer token scrapes."""
    client = app_factory(METRICS_ENABLED=True, METRICS_TOKEN="s3cret-token").test_client()
    assert scrape(client, Authorization="Bearer s3cret-token")


@pytest.fixture
def recording(monkeypatch):
    """This process records metrics (as once an app with METRICS_ENABLED was made)."""
    monkeypatch.setattr(metrics, "_recording", True)


def test_nothing_is_recorded_without_metrics_enabled(monkeypatch, client):
    """A process whose apps serve no /metrics records nothing: not a request, not a reply."""
    monkeypatch.setattr(metrics, "_recording", False)
    model = "test/unrecorded-model"
    health = {"method": "GET", "route": "/health", "status": "200"}
    before = value("neptun_http_requests_total", **health)
    assert client.get("/health").status_code == 200
    metrics.reply_finished(model, 12, 5, 0.5, 1.3)
    metrics.batch_size("unrecorded", 3)
    assert value("neptun_http_requests_total", **health) == before
    assert value("neptun_input_tokens_total", model=model) == 0
    assert value("neptun_db_batch_size_count", batcher="unrecorded") == 0


def test_reply_finished_observes_ttft_tpot_and_tokens(recording):
    """reply_finished: TTFT, time per output token after the first, tokens in and out."""
    model = "test/metrics-model"
    metrics.reply_finished(model, 12, 5, 0.5, 1.3)
    assert value("neptun_input_tokens_total", model=model) == 12
    assert value("neptun_output_tokens_total", model=model) == 5
    assert value("neptun_time_to_first_token_seconds_sum", model=model) == 0.5
    assert value("neptun_time_per_output_token_seconds_sum", model=model) == pytest.approx(0.2)
    metrics.reply_finished(model, None, None, None, 2.0)   # an upstream that sent nothing
    assert value("neptun_time_to_first_token_seconds_count", model=model) == 1


def test_stream_gauge_and_store_counters(recording):
    """stream_opened/closed move the gauge; stored and lost replies count."""
    start = value("neptun_active_streams")
    metrics.stream_opened(), metrics.stream_opened(), metrics.stream_closed()
    assert value("neptun_active_streams") == start + 1
    metrics.stream_closed()
    stored, failed = value("neptun_replies_stored_total"), value("neptun_replies_failed_total")
    metrics.reply_stored(), metrics.reply_stored(), metrics.reply_store_failed()
    assert value("neptun_replies_stored_total") == stored + 2
    assert value("neptun_replies_failed_total") == failed + 1


def test_upstream_errors_and_batches_are_wired(app_factory):
    """An upstream 429 through a chat route counts (provider, status) per try, and its
    retries; the request counts its admission batch size; no label carries the user's email
    or ids."""
    upstream = Upstream()
    app = app_factory(METRICS_ENABLED=True, OLLAMA_BASE_URL=upstream.url)
    client = app.test_client()
    user_id = sign_up(client, EMAIL)
    chat_id = create_chat(client, user_id)["id"]
    upstream.answer(429, {"error": "slow down"})
    errors = value("neptun_upstream_errors_total", provider="ollama", status="429")
    retries = value("neptun_upstream_retries_total", provider="ollama", kind="retry")
    batches = value("neptun_db_batch_size_count", batcher="admit_chat_requests")
    response = client.post(f"/api/ai/ollama/rwkv-6-world/chat?chat_id={chat_id}",
                           json={"messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 429
    # Asked 1 + UPSTREAM_RETRIES (2) times.
    assert value("neptun_upstream_errors_total", provider="ollama", status="429") == errors + 3
    assert value("neptun_upstream_retries_total", provider="ollama", kind="retry") == retries + 2
    assert value("neptun_db_batch_size_count", batcher="admit_chat_requests") > batches
    samples = scrape(client)
    labels = {v for (_, pairs) in samples for _, v in pairs}
    assert "/api/users/<int:user_id>/chats" in labels
    assert not [v for v in labels if EMAIL in v or f"/{user_id}/" in v or f"/{chat_id}" in v]
    upstream.server.shutdown()
