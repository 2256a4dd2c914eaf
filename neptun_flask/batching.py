"""Batching of the per-request database work of concurrent requests.

Every chat request looks up its session, checks its chat, stores the user's message before
the upstream call and the reply before the finish parts. When many streams start or end
together, a query or a transaction per request is most of their database time (connection
checkout, SQLAlchemy's per-statement work, the commit). Instead each caller queues its item
and waits; one runner (a thread, which gunicorn's gevent worker makes a greenlet) hands
everything queued so far to ``handle`` at once (one ``IN`` query, one ``executemany`` in one
transaction), then wakes the callers with their results. A caller alone is served at once,
in a batch of one: the pattern some call group commit, and others a data loader.

A batch that fails on an item (a chat deleted mid-stream: an integrity error) is retried item
by item, so one bad item fails only its own caller; a batch that fails because the database
is away (a refused or broken connection, the pool's timeout) fails all its callers at once, and
no caller waits longer than its bound. The runner stops after a few idle seconds and is
started again on demand, and anew in a forked process.
"""
from __future__ import annotations

import os
import queue
import threading
from functools import partial
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app
from sqlalchemy import exc
from sqlalchemy.engine import Engine

from . import metrics
from .extensions import db

#: Most items one call of ``handle`` takes; more stay queued for the next one.
MAX_BATCH = 200
#: Seconds without work after which the runner ends.
IDLE_SECONDS = 5.0
#: Errors about one item of a batch: the others may still go through alone.
ITEM_ERRORS = (exc.IntegrityError, exc.DataError)
#: Guards each batcher's per-process set-up (threads of ``flask run`` may race to it).
_SETUP = threading.Lock()


class BatchTimeout(Exception):
    """A caller's batch did not finish within its bound (the database is away or swamped)."""


class _Pending:
    """One queued item and the caller waiting for its result."""

    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Batcher:
    """Calls ``handle(items) -> results`` (one result per item, in order) for batches of the
    items that concurrent callers pass to ``__call__``."""

    def __init__(self, handle: Callable[[list[Any]], list[Any]],
                 wait_seconds: float | None = None) -> None:
        self._handle = handle
        self._wait_seconds = wait_seconds
        self._pid: int | None = None
        self._lock = self._queue = None
        self._running = False

    def __call__(self, item: Any) -> Any:
        """The item's result, once its batch is handled; or what handling it raised."""
        pending = _Pending(item)
        self._enqueue(pending)
        if not pending.done.wait(self._wait_seconds):
            raise BatchTimeout()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _enqueue(self, pending: _Pending) -> None:
        """Queue an item, starting the runner if it is not running (in this process)."""
        if self._pid != os.getpid():
            # First use in this process: locks and queues are made here, after the fork and
            # after gevent's monkey-patching, so they are the cooperative ones there.
            with _SETUP:
                if self._pid != os.getpid():
                    self._lock, self._queue = threading.Lock(), queue.Queue()
                    self._running = False
                    self._pid = os.getpid()   # last: others see a whole set-up or none
        with self._lock:
            self._queue.put(pending)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="batcher", daemon=True).start()

    def _run(self) -> None:
        """Handle batches until idle; never dies on a database error."""
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._settle(batch)

    def _next_batch(self) -> list[_Pending] | None:
        """Everything queued (up to MAX_BATCH), waiting for the first item; None when idle."""
        try:
            batch = [self._queue.get(timeout=IDLE_SECONDS)]
        except queue.Empty:
            with self._lock:
                if self._queue.empty():
                    self._running = False
                    return None
            return []
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _settle(self, batch: list[_Pending]) -> None:
        """Handle a batch; if that fails, each item alone; always wake every caller."""
        try:
            self._deliver(batch)
        except Exception as error:  # noqa: BLE001 - handed to the callers, never lost
            if len(batch) == 1 or not isinstance(error, ITEM_ERRORS):
                for pending in batch:
                    pending.error = error
            else:
                for pending in batch:
                    try:
                        self._deliver([pending])
                    except Exception as item_error:  # noqa: BLE001 - this caller's error
                        pending.error = item_error
        finally:
            for pending in batch:
                pending.done.set()

    def _deliver(self, batch: list[_Pending]) -> None:
        """Run ``handle`` on the batch's items and hand out the results."""
        metrics.batch_size(getattr(getattr(self._handle, "func", None), "__name__", "other"),
                           len(batch))
        results = self._handle([pending.item for pending in batch])
        for pending, result in zip(batch, results, strict=True):
            pending.result = result


def register_batchers(app: Flask, **handles: Callable[[Engine, list[Any]], list[Any]]) -> None:
    """Give the app a named batcher per ``handle(engine, items) -> results``, bound to the
    app's database engine; a caller waits at most DATABASE_TIMEOUT."""
    with app.app_context():
        engine = db.engine
    bound = app.config["DATABASE_TIMEOUT"]
    app.extensions["neptun_batchers"] = {
        name: Batcher(partial(handle, engine), bound) for name, handle in handles.items()}


def app_batcher(name: str) -> Batcher:
    """The current app's batcher of that name."""
    return current_app.extensions["neptun_batchers"][name]
