"""Prometheus metrics, and ``GET /metrics`` to scrape them (``METRICS_ENABLED=true``).

Every metric of the service is defined here; the rest of the code calls the one-line
functions below at the place each docstring names. Labels are bounded and never carry user
data: models and providers of the catalog, HTTP statuses, route rules (never raw paths),
batcher names; no user, chat, message or key ids, no emails.

Under gunicorn, counters of every worker are summed at scrape time: prometheus-client's
multiprocess mode, switched on by ``PROMETHEUS_MULTIPROC_DIR``, which ``neptun_flask.serving``
sets (a fresh temporary folder) and cleans. It must be set before prometheus-client is first
imported, which is why the gunicorn master must not load the app (no ``--preload``).
"""
from __future__ import annotations

import hmac
import os
import threading

from flask import Blueprint, Flask, current_app, request

from .errors import error_response
from .openapi import operation

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
_TOKEN_SECONDS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
_BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100, 200)
#: HTTP methods counted by name; any other (a client may send anything) is ``OTHER``.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The metric objects. Made on first use in each process, never at import: the gunicorn
    master imports this package (its config module is in it) before it sets
    ``PROMETHEUS_MULTIPROC_DIR``, and prometheus-client picks its mode when a metric is made."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.time_to_first_token = Histogram(
            "neptun_time_to_first_token_seconds", "Seconds from a reply's upstream call to its "
            "first token, per model", ["model"], buckets=_SECONDS)
        self.time_per_output_token = Histogram(
            "neptun_time_per_output_token_seconds", "Seconds per output token after the first, "
            "per reply and model", ["model"], buckets=_TOKEN_SECONDS)
        self.input_tokens = Counter(
            "neptun_input_tokens", "Prompt tokens of finished replies, per model", ["model"])
        self.output_tokens = Counter(
            "neptun_output_tokens", "Completion tokens of finished replies, per model",
            ["model"])
        self.upstream_errors = Counter(
            "neptun_upstream_errors", "Failed upstream calls, per provider and upstream HTTP "
            "status (or timeout, unreachable, stream)", ["provider", "status"])
        self.upstream_retries = Counter(
            "neptun_upstream_retries", "Upstream calls asked again before the first token, "
            "per provider asked and kind (retry, fallback)", ["provider", "kind"])
        self.active_streams = Gauge("neptun_active_streams",
                                    "Replies streaming to a client right now",
                                    multiprocess_mode="livesum")
        self.replies_stored = Counter("neptun_replies_stored",
                                      "Finished replies stored in the database")
        self.replies_failed = Counter("neptun_replies_failed",
                                      "Finished replies whose storing failed")
        self.batch_size = Histogram("neptun_db_batch_size", "Items per batched database step, "
                                    "per batcher", ["batcher"], buckets=_BATCH_SIZES)
        self.http_requests = Counter("neptun_http_requests", "HTTP responses, per method, "
                                     "route rule and status", ["method", "route", "status"])


class _Unrecorded:
    """Any metric of a process that records none: each call does nothing."""

    def labels(self, *values: str) -> "_Unrecorded":
        return self

    def inc(self, amount: float = 1) -> None:
        """Nothing."""

    dec = observe = inc


class _NotRecording:
    """What ``get()`` gives a process that records no metrics: every metric, unrecorded."""

    def __getattr__(self, name: str) -> _Unrecorded:
        return _UNRECORDED


_UNRECORDED = _Unrecorded()
_NOT_RECORDING = _NotRecording()
_made: Metrics | None = None
_making = threading.Lock()
#: Whether this process records: switched on by the first app made with METRICS_ENABLED (a
#: process that serves no /metrics would only pay for numbers nobody can read).
_recording = False


def get() -> Metrics:
    """This process's metric objects (ones that do nothing while it does not record)."""
    global _made
    if not _recording:
        return _NOT_RECORDING
    if _made is None:
        with _making:
            if _made is None:
                _made = Metrics()
    return _made


def reply_finished(model: str, prompt_tokens: int | None, completion_tokens: int | None,
                   seconds_to_first_token: float | None, seconds: float) -> None:
    """Call once per finished reply (any finish reason), where its usage is known: the
    generation's end (neptun_flask/generations or streaming/run.py). ``model`` is the catalog
    id; ``seconds`` runs from the upstream call to the last token."""
    if seconds_to_first_token is not None:
        get().time_to_first_token.labels(model).observe(seconds_to_first_token)
        if completion_tokens and completion_tokens > 1:
            get().time_per_output_token.labels(model).observe(
                max(0.0, seconds - seconds_to_first_token) / (completion_tokens - 1))
    if prompt_tokens:
        get().input_tokens.labels(model).inc(prompt_tokens)
    if completion_tokens:
        get().output_tokens.labels(model).inc(completion_tokens)


def upstream_error(provider: str, status: int | str) -> None:
    """Call where an upstream call fails: its HTTP status (wired in streaming/upstream.py's
    ``_status_error``), or ``"timeout"`` / ``"unreachable"`` (open_upstream's except clauses)
    and ``"stream"`` for a failure after the first byte (streaming/run.py)."""
    get().upstream_errors.labels(provider, str(status)).inc()


def upstream_retry(provider: str, kind: str) -> None:
    """Call before an upstream is asked again before the first token (streaming/retry.py):
    ``kind`` ``"retry"`` (the same model, after its wait) or ``"fallback"`` (the next model)."""
    get().upstream_retries.labels(provider, kind).inc()


def stream_opened() -> None:
    """Call when a response starts streaming a reply to a client (streaming/reader.py); pair
    with stream_closed()."""
    get().active_streams.inc()


def stream_closed() -> None:
    """Call when that response ends, however it ends (a ``finally`` in streaming/reader.py)."""
    get().active_streams.dec()


def reply_stored(count: int = 1) -> None:
    """Count stored finished replies (generations/manager.py, once each, retries included)."""
    get().replies_stored.inc(count)


def reply_store_failed(count: int = 1) -> None:
    """Count finished replies lost: the database refused them for REPLY_RETRY_SECONDS."""
    get().replies_failed.inc(count)


def batch_size(name: str, size: int) -> None:
    """Call per batched database step (wired in batching.py's ``Batcher._deliver``)."""
    get().batch_size.labels(name).observe(size)


def request_done(response):
    """after_request hook: count the response by method, route rule and status."""
    rule = request.url_rule
    method = request.method if request.method in _METHODS else "OTHER"
    get().http_requests.labels(method, rule.rule if rule is not None else "<unmatched>",
                         str(response.status_code)).inc()
    return response


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@operation("Prometheus metrics (only with METRICS_ENABLED; METRICS_TOKEN as a bearer)",
           tag="operations", public=True, errors=(401,),
           responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def scrape():
    """The metrics in Prometheus' text format; with METRICS_TOKEN, only for its bearer."""
    token = current_app.config["METRICS_TOKEN"]
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return error_response(401, "Unauthorized", headers={"WWW-Authenticate": "Bearer"})
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    get()   # a process that has served nothing yet still reports every metric
    return current_app.response_class(generate_latest(_registry()),
                                      headers={"Content-Type": CONTENT_TYPE_LATEST})


def _registry():
    """Every process's metrics in multiprocess mode (gunicorn), else this process's."""
    # The variable prometheus-client itself reads, at its import, to pick multiprocess mode.
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def init_app(app: Flask) -> None:
    """With METRICS_ENABLED: record in this process, count every response, serve /metrics."""
    global _recording
    if app.config["METRICS_ENABLED"]:
        _recording = True
        app.after_request(request_done)
        app.register_blueprint(bp)
