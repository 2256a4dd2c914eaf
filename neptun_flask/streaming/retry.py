"""Retries before the first token: the one rule for asking an upstream again, and for moving
on to the model's fallbacks, while nothing has been sent to the client.

The requested model is asked up to ``1 + UPSTREAM_RETRIES`` times when its upstream cannot be
reached or answers 429 or 5xx; between tries it waits what ``Retry-After`` asks, else a short
backoff (0.25 s, 0.5 s, 1 s ... with jitter). A wait longer than ``UPSTREAM_RETRY_MAX_WAIT``,
or past the first-token timeout of the whole sequence, is not waited: the next model is asked
at once. Then each fallback of the catalog entry is asked once, in order. Any other failure of
the requested model (400, 401, 404, a read timeout...) is answered at once; a fallback that
fails in any way is skipped. When every model failed, the client gets the requested model's
last error. Nothing here runs after the first byte: a run that started streaming is never
asked again.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import requests

from .. import metrics
from ..errors import ApiError
from ..providers.base import Adapter, UpstreamRequest
from .upstream import Timeouts, UpstreamError, open_upstream

log = logging.getLogger(__name__)

#: The first backoff in seconds; each next one doubles (with jitter: 50-100 % of it).
BACKOFF = 0.25


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times the requested model is asked again, and the longest wait honoured."""

    retries: int
    max_wait: float

    @classmethod
    def from_config(cls, config) -> "RetryPolicy":
        """Read UPSTREAM_RETRIES and UPSTREAM_RETRY_MAX_WAIT."""
        return cls(config["UPSTREAM_RETRIES"], config["UPSTREAM_RETRY_MAX_WAIT"])


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model to ask: its catalog id, adapter, upstream request and output-token limit."""

    model_id: str
    adapter: Adapter
    request: UpstreamRequest
    max_tokens: int


def with_fallbacks(first: Candidate, fallbacks: Iterable[Any],
                   build: Callable[[Any], Candidate]) -> Iterator[Candidate]:
    """``first``, then each fallback entry built when its turn comes; a fallback that cannot
    be asked (its provider not configured, the prompt too long for it: an ApiError) is
    skipped."""
    yield first
    for fallback in fallbacks:
        try:
            candidate = build(fallback)
        except ApiError as error:
            log.warning("fallback %s skipped: %s", fallback.model_id, error.message)
            continue
        yield candidate


def open_first(candidates: Iterable[Candidate], timeouts: Timeouts,
               policy: RetryPolicy) -> tuple[Candidate, requests.Response]:
    """The first candidate whose upstream answers 200, and that response (see the module's
    rule); raises the requested model's last UpstreamError when none does."""
    deadline = time.monotonic() + timeouts.first_token
    first_error: UpstreamError | None = None
    for index, candidate in enumerate(candidates):
        provider = candidate.adapter.name
        if index:
            if time.monotonic() >= deadline:
                break
            log.info("asking fallback %s", candidate.model_id)
            metrics.upstream_retry(provider, "fallback")
        tries = 1 + policy.retries if index == 0 else 1
        for attempt in range(tries):
            try:
                response = open_upstream(candidate.request, candidate.adapter, provider,
                                         _within(timeouts, deadline))
                return candidate, response
            except UpstreamError as error:
                if index == 0:
                    first_error = error
                    if not error.retryable:
                        raise
                elif not error.retryable:
                    break
                wait = (error.retry_after if error.retry_after is not None
                        else BACKOFF * 2 ** attempt * random.uniform(0.5, 1.0))
            if (attempt + 1 == tries or wait > policy.max_wait
                    or time.monotonic() + wait >= deadline):
                break
            metrics.upstream_retry(provider, "retry")
            time.sleep(wait)   # cooperative under gevent; nothing was sent to the client yet
    raise first_error


def _within(timeouts: Timeouts, deadline: float) -> Timeouts:
    """The timeouts of one try: its connect and first-token timeouts end by ``deadline``."""
    left = max(0.001, deadline - time.monotonic())
    if left >= timeouts.first_token:
        return timeouts
    return replace(timeouts, connect=min(timeouts.connect, left), first_token=left)
