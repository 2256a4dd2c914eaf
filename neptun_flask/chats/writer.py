"""Group commit for chat messages: the inserts of concurrent requests share one transaction.

Every chat request stores two messages (the user's before the upstream call, the reply
before the finish parts), each in a transaction of its own. When many streams start or end
together, a transaction per message is most of their database time: the commit, the
connection checkout and SQLAlchemy's per-statement work. Instead each caller queues its row
and waits; one writer (a thread, which gunicorn's gevent worker makes a greenlet) inserts
everything queued so far with one ``executemany`` in one transaction, then wakes the callers.
Alone, a caller's row is written at once, in a batch of one.

A batch that fails is retried row by row, so one bad row (a chat deleted mid-stream) fails
only its own caller. The writer stops after a few idle seconds and is restarted on demand,
and is created anew in a forked process.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

#: Most rows one transaction takes; more stay queued for the next one.
MAX_BATCH = 200
#: Seconds without work after which the writer thread ends.
IDLE_SECONDS = 5.0


class _Pending:
    """One queued row and the caller waiting for it."""

    __slots__ = ("row", "done", "error")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.done = threading.Event()
        self.error: BaseException | None = None


class MessageWriter:
    """Inserts rows with ``statement`` through ``engine``, batching concurrent callers."""

    def __init__(self, engine: Engine, statement) -> None:
        self._engine = engine
        self._statement = statement
        self._pid: int | None = None
        self._lock = self._queue = None
        self._running = False

    def insert(self, row: dict[str, Any]) -> None:
        """Insert one row; return once it is committed, or raise what its insert raised."""
        pending = _Pending(row)
        self._enqueue(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def _enqueue(self, pending: _Pending) -> None:
        """Queue a row, starting the writer if it is not running (in this process)."""
        if self._pid != os.getpid():
            # First use in this process: locks and queues are made here, after the fork and
            # after gevent's monkey-patching, so they are the cooperative ones there.
            self._pid, self._lock, self._queue = os.getpid(), threading.Lock(), queue.Queue()
            self._running = False
        with self._lock:
            self._queue.put(pending)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="message-writer", daemon=True).start()

    def _run(self) -> None:
        """Write batches until idle; never dies on a database error."""
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._write(batch)

    def _next_batch(self) -> list[_Pending] | None:
        """Everything queued (up to MAX_BATCH), waiting for the first row; None when idle."""
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

    def _write(self, batch: list[_Pending]) -> None:
        """Insert a batch in one transaction; if that fails, each row in its own."""
        try:
            self._transaction(batch)
        except Exception as error:  # noqa: BLE001 - handed to the callers, never lost
            if len(batch) == 1:
                batch[0].error = error
            else:
                for pending in batch:
                    try:
                        self._transaction([pending])
                    except Exception as row_error:  # noqa: BLE001 - this caller's error
                        pending.error = row_error
        finally:
            for pending in batch:
                pending.done.set()

    def _transaction(self, batch: list[_Pending]) -> None:
        """One transaction inserting the batch's rows."""
        with self._engine.begin() as connection:
            connection.execute(self._statement, [pending.row for pending in batch])
