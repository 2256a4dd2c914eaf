"""Per-user limits on the chat routes and ``POST /v1/chat/completions``, kept in flask-limiter's
storage (RATELIMIT_STORAGE_URI: Redis shares them across workers and instances; ``memory://``
keeps them per process):

- ``USER_RATE_LIMIT``: requests per user (a window of flask-limiter's strategy);
- ``USER_MAX_STREAMS``: a user's generations running at once; a slot is taken before the upstream
  call and given back exactly once when the reply ends, however it ends (the run's end hook), or
  when the request fails before the run starts;
- ``USER_DAILY_TOKENS``: prompt + completion tokens per UTC day, charged when each reply ends;
  once spent, requests are refused until the day ends.

A refusal is a 429 with ``Retry-After`` and ``X-RateLimit-Limit/Remaining/Reset``. A storage that
fails (Redis away) lets requests through with a logged warning, like flask-limiter's own limits
(``swallow_errors``). With ``RATELIMIT_ENABLED=false`` nothing is limited.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timedelta, timezone

from flask import after_this_request, current_app
from limits import parse

from .errors import ApiError
from .extensions import limiter

log = logging.getLogger(__name__)

#: A slot counter outlives its streams by this much at most, should a process die holding one.
_SLOT_SLACK_SECONDS = 120


class Slot:
    """A user's stream slot: ``release()`` gives it back once (later calls do nothing)."""

    def __init__(self, storage=None, key: str | None = None):
        self._storage = storage
        self._key = key
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        with self._lock:
            storage, self._storage = self._storage, None
        if storage is None:
            return
        try:
            if storage.incr(self._key, _SLOT_SLACK_SECONDS, amount=-1) < 0:
                storage.clear(self._key)   # the counter expired meanwhile: never below zero
        except Exception as error:  # noqa: BLE001 - the counter's expiry clears it in the end
            log.warning("could not release a stream slot: %s", type(error).__name__)


NO_SLOT = Slot()


def _prefix() -> str:
    return current_app.config["REDIS_KEY_PREFIX"]


def _seconds_to_midnight(now: float | None = None) -> int:
    """Whole seconds until the UTC day ends (at least 1)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - moment).total_seconds()))


def _day_key(user_id: int) -> str:
    return f"{_prefix()}tokens:{user_id}:{datetime.now(timezone.utc):%Y-%m-%d}"


def _refuse(message: str, limit: int, remaining: int, reset_in: int) -> ApiError:
    """The 429 with its headers."""
    return ApiError(429, message, headers={
        "Retry-After": str(max(1, reset_in)), "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": str(int(time.time()) + max(1, reset_in))})


def admit_user(user_id: int, stream: bool) -> Slot:
    """Check the user's limits for one request (counting it against USER_RATE_LIMIT); with
    ``stream``, take one of the user's stream slots and return it (release it when the run
    ends, or at once if it never starts). Raises the 429."""
    if not limiter.enabled:
        return NO_SLOT
    config = current_app.config
    storage = limiter.storage
    _check_rate(user_id, config["USER_RATE_LIMIT"])
    _check_tokens(storage, user_id, config["USER_DAILY_TOKENS"])
    if not stream or config["USER_MAX_STREAMS"] <= 0:
        return NO_SLOT
    return _take_slot(storage, user_id, config["USER_MAX_STREAMS"],
                      config["UPSTREAM_TOTAL_TIMEOUT"] + config["STREAM_DETACH_GRACE_SECONDS"])


def _check_rate(user_id: int, setting: str | None) -> None:
    """One hit of the user's request limit; its headers go on the response either way."""
    if not setting:
        return
    item = parse(setting)
    try:
        allowed = limiter.limiter.hit(item, _prefix() + "user", str(user_id))
        stats = limiter.limiter.get_window_stats(item, _prefix() + "user", str(user_id))
    except Exception as error:  # noqa: BLE001 - fail open
        log.warning("user rate limit not checked (storage failed: %s)", type(error).__name__)
        return
    reset_in = math.ceil(stats.reset_time - time.time())
    if not allowed:
        raise _refuse(f"Rate limit exceeded: {setting} per user", item.amount, 0, reset_in)
    headers = {"X-RateLimit-Limit": str(item.amount),
               "X-RateLimit-Remaining": str(stats.remaining),
               "X-RateLimit-Reset": str(int(stats.reset_time))}

    @after_this_request
    def _headers(response):
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response


def _check_tokens(storage, user_id: int, quota: int | None) -> None:
    """429 until the UTC day ends once the user's tokens of today reach the quota."""
    if not quota:
        return
    try:
        spent = storage.get(_day_key(user_id))
    except Exception as error:  # noqa: BLE001 - fail open
        log.warning("daily token quota not checked (storage failed: %s)", type(error).__name__)
        return
    if spent >= quota:
        raise _refuse("Daily token quota exhausted", quota, 0, _seconds_to_midnight())


def _take_slot(storage, user_id: int, most: int, lifetime: float) -> Slot:
    """One of the user's ``most`` stream slots, or the 429."""
    key = f"{_prefix()}streams:{user_id}"
    expiry = int(lifetime) + _SLOT_SLACK_SECONDS
    try:
        running = storage.incr(key, expiry)
    except Exception as error:  # noqa: BLE001 - fail open
        log.warning("stream slots not counted (storage failed: %s)", type(error).__name__)
        return NO_SLOT
    slot = Slot(storage, key)
    if running > most:
        slot.release()
        raise _refuse(f"Too many concurrent streams: at most {most} per user", most, 0, 5)
    return slot


def charger(user_id: int):
    """What to call with a finished reply's tokens: adds them to the user's day (no-op without a
    quota). Works outside the request (the run's greenlet)."""
    if not limiter.enabled or not current_app.config["USER_DAILY_TOKENS"]:
        return lambda tokens: None
    storage = limiter.storage
    key = _day_key(user_id)

    def charge(tokens: int) -> None:
        if tokens <= 0:
            return
        try:
            storage.incr(key, _seconds_to_midnight() + 60, amount=tokens)
        except Exception as error:  # noqa: BLE001 - fail open
            log.warning("tokens not charged to the daily quota (storage failed: %s)",
                        type(error).__name__)
    return charge


def end_hook(slot: Slot, user_id: int, after=None):
    """A run's ``on_end``: give the slot back, charge the reply's tokens, then ``after``."""
    charge = charger(user_id)

    def ended(run, tail: list) -> None:
        slot.release()
        try:
            _, _, prompt, completion = tail[-1]
            charge((prompt or 0) + (completion or 0))
        finally:
            if after is not None:
                after(run, tail)
    return ended
