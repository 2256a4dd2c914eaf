"""Opening an upstream stream with ``requests`` and mapping its failures to API errors."""
from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from .. import metrics
from ..errors import ApiError
from ..providers.base import Adapter, UpstreamRequest

log = logging.getLogger(__name__)

_ERROR_BODY_LIMIT = 64 * 1024
_RETRY_AFTER = Retry(0)   # only its Retry-After parser is used


class UpstreamError(ApiError):
    """An upstream call that failed before its stream started: the API error the client gets,
    whether asking again may help (``retryable``: unreachable, 429 or 5xx) and how long the
    upstream asked to wait first (``retry_after``, seconds, from ``Retry-After``)."""

    def __init__(self, status: int, message: str, *, retryable: bool = False,
                 retry_after: float | None = None, **kwargs):
        super().__init__(status, message, **kwargs)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds."""

    connect: float
    first_token: float
    idle: float
    total: float

    @classmethod
    def from_config(cls, config) -> "Timeouts":
        """Read the UPSTREAM_*_TIMEOUT settings."""
        return cls(config["UPSTREAM_CONNECT_TIMEOUT"], config["UPSTREAM_FIRST_TOKEN_TIMEOUT"],
                   config["UPSTREAM_IDLE_TIMEOUT"], config["UPSTREAM_TOTAL_TIMEOUT"])


# One pool for every upstream stream: many concurrent streams to one host must not churn
# connections. Requests are sent through the adapter, not a Session: a Session's per-call
# merging (cookies, settings, hooks) costs more than the rest of the call, and its cookie jar
# would carry cookies an upstream set for one user into every other user's requests.
_adapter = HTTPAdapter(pool_connections=8, pool_maxsize=1024, max_retries=0)
_HEADERS = {"User-Agent": "neptun-flask", "Accept": "*/*", "Content-Type": "application/json"}


def _send(request: UpstreamRequest, timeouts: Timeouts) -> requests.Response:
    """POST the request with streaming on (no redirects, proxies or .netrc by surprise)."""
    prepared = requests.PreparedRequest()
    # PreparedRequest.prepare() without its cookie and auth steps: upstreams take neither
    # (the credentials are headers), and a cookie jar per request is most of prepare()'s work.
    prepared.prepare_method("POST")
    prepared.prepare_url(request.url, None)
    prepared.prepare_headers({**_HEADERS, **request.headers})
    # The JSON body encoded by orjson (requests would use the json module, ~10x slower).
    prepared.prepare_body(orjson.dumps(request.json), None)
    prepared.prepare_hooks(None)
    return _adapter.send(prepared, stream=True,
                         timeout=(timeouts.connect, timeouts.first_token))


def open_upstream(request: UpstreamRequest, adapter: Adapter, provider: str,
                  timeouts: Timeouts) -> requests.Response:
    """POST the request with streaming on; return the 200 response or raise UpstreamError.
    A failure to connect (or a connection dropped before the answer's head) may be retried;
    a read timeout may not: it spent the first-token timeout."""
    try:
        response = _send(request, timeouts)
    except requests.Timeout as error:
        metrics.upstream_error(provider, "timeout")
        raise UpstreamError(504, f"Provider {provider} timed out",
                            retryable=isinstance(error, requests.ConnectTimeout)) from None
    except requests.RequestException as error:
        log.warning("upstream %s unreachable: %s", provider, type(error).__name__)
        metrics.upstream_error(provider, "unreachable")
        raise UpstreamError(503, f"Provider {provider} is unreachable",
                            retryable=isinstance(error, requests.ConnectionError)) from None
    if response.status_code == 200:
        return response
    try:
        raise _status_error(response, adapter, provider)
    finally:
        response.close()


def _status_error(response: requests.Response, adapter: Adapter,
                  provider: str) -> UpstreamError:
    """The API error for a non-200 upstream answer; its message is the adapter's plain,
    bounded text of the error body (a 404's goes in ``data``, beside the documented one).
    A 429 or 5xx may be retried."""
    status = response.status_code
    metrics.upstream_error(provider, status)
    message = adapter.error_message(status, _read_error_body(response))
    log.warning("upstream %s answered %s for model %s", provider, status,
                _model_of(response.request))
    if status in (401, 403):
        return UpstreamError(502, "Upstream authentication failed")
    if status in (404, 410):
        return UpstreamError(400, "Service not available anymore.", data={"upstream": message})
    retry = {"retryable": status == 429 or 500 <= status <= 599,
             "retry_after": retry_after_seconds(response.headers.get("Retry-After"))}
    if status == 429:
        header = response.headers.get("Retry-After")
        return UpstreamError(429, message, headers={"Retry-After": header} if header else None,
                             **retry)
    if status in (503, 504):
        return UpstreamError(status, message, **retry)
    return UpstreamError(502, message, **retry)


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds from now (delay-seconds or an HTTP date, read by
    urllib3's parser); None when absent or unreadable."""
    if not value:
        return None
    try:
        return float(_RETRY_AFTER.parse_retry_after(value))
    except InvalidHeader:
        return None


def _model_of(sent: requests.PreparedRequest) -> str:
    """The upstream model id a sent request named, for logs: its JSON body's ``model``
    (OpenRouter, Ollama), else its URL path after ``/models/`` (Hugging Face) or ``/ai/run/``
    (Cloudflare). Never the body's messages."""
    try:
        model = orjson.loads(sent.body or b"{}").get("model")
    except (orjson.JSONDecodeError, AttributeError):
        model = None
    if isinstance(model, str):
        return model
    path = urlsplit(sent.url or "").path
    return path.partition("/models/")[2] or path.partition("/ai/run/")[2] or "?"


def _read_error_body(response: requests.Response) -> bytes:
    """At most 64 KiB of an error body; an unreadable body is empty."""
    try:
        return response.raw.read(_ERROR_BODY_LIMIT, decode_content=True) or b""
    except Exception:  # noqa: BLE001 - the status alone still says what happened
        return b""


def iter_reads(response: requests.Response) -> Iterator[bytes]:
    """The body's reads as they arrive, straight from urllib3 (``iter_content`` adds two
    generator layers per read): one HTTP chunk at a time, or what one socket read returned
    when the body is not chunked. Raises urllib3's errors."""
    raw = response.raw
    if raw.chunked and raw.supports_chunked_reads():
        return raw.read_chunked(decode_content=True)
    return iter(partial(raw.read1, decode_content=True), b"")


def _socket_of(response: requests.Response):
    """The socket under an open streamed response (urllib3 2 keeps its connection), or None."""
    return getattr(response.raw.connection, "sock", None)


def set_read_timeout(response: requests.Response, seconds: float) -> None:
    """Change the socket read timeout of an open stream (first-token -> idle timeout)."""
    sock = _socket_of(response)
    if sock is not None:
        sock.settimeout(seconds)


def abort_upstream(response: requests.Response) -> None:
    """Hang up on the upstream from another greenlet: shut the socket down so the reader wakes
    with EOF (closing the buffered file under a blocked reader raises instead)."""
    sock = _socket_of(response)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
