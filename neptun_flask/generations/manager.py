"""The app's generations on this process: the runs it owns, the loop that keeps their shared
state current, and following, stopping, reaping and draining them.

One loop per process and app (a thread; a greenlet under gevent) runs while the process owns
runs. Every ``TICK`` it appends each run's new parts to the shared log (one write for all of
them), checks for stop requests and for detached runs past their grace window; every ``SYNC``
it stores the runs' text so far and their heartbeat (one transaction). Readers of a run on this
process get its parts in memory (``RunReader``); readers elsewhere tail the log.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from functools import partial

import orjson

from ..streaming.parts import finish_part, is_finish, start_part
from ..streaming.reader import LogReader, RunReader
from ..streaming.run import Run, spawn
from .. import metrics
from ..batching import Batcher
from ..models import utcnow
from . import store
from .log import PRESENCE_SECONDS

log = logging.getLogger(__name__)

#: Seconds between appends to the shared log (and stop checks).
TICK = 0.25
#: Seconds between stores of running replies' text and heartbeats (at most 2 s is promised).
SYNC = 1.0
#: A reader elsewhere stops waiting for a generation whose owner has not beaten this long.
ORPHANED_SECONDS = 10 * SYNC

_MANAGERS: "weakref.WeakSet[Generations]" = weakref.WeakSet()
#: Guards each manager's per-process set-up (threads of ``flask run`` may race to it).
_SETUP = threading.Lock()


class Generations:
    """Runs of one app on this process, and the way to any run of the app, anywhere."""

    def __init__(self, engine, shared_log, *, grace: float, reap_seconds: float,
                 retry_seconds: float = 120.0, wait_seconds: float | None = None,
                 time_limit: float = 600.0):
        self._engine = engine
        self.log = shared_log
        # Ends of concurrent runs: their last log batches, then their replies, in one step.
        self._finish = Batcher(self._store_ends, wait_seconds)
        self.grace = grace
        self.reap_seconds = reap_seconds
        self.retry_seconds = retry_seconds
        self.time_limit = time_limit   # a reply's (UPSTREAM_TOTAL_TIMEOUT): bounds log readers
        self._local: dict[int, Run] = {}
        self._unstored: set[Run] = set()
        self._cursors: dict[int, list[int]] = {}   # run id -> [parts appended, batches]
        self._synced: dict[int, int] = {}          # run id -> generated chars stored
        # run id -> its chat (for the logs) and the protocol it was started in (for resumes)
        self._about: dict[int, tuple[int | None, str]] = {}
        self._pid: int | None = None
        self._lock = self._append_lock = None
        self._looping = False
        self._last_reap = 0.0
        _MANAGERS.add(self)

    # Starting and ending runs.

    @staticmethod
    def message_id(generation_id: int | None) -> str:
        """The id a stream announces: its message row's, or a random one when unstored."""
        return f"msg-{generation_id}" if generation_id else f"msg-{uuid.uuid4().hex}"

    def new_run(self, generation_id: int | None, resumable: bool, on_end=None,
                chat_id: int | None = None, protocol: str = "data", **settings) -> Run:
        """A run for a started generation (None: nothing stored, not resumable) of the chat
        ``chat_id``, asked in ``protocol``; ``on_end``, if given, is also told of an unstored
        run's end."""
        if generation_id is not None:
            self._about[generation_id] = (chat_id, protocol)
        return Run(message_id=self.message_id(generation_id), key=generation_id,
                   resumable=resumable and generation_id is not None,
                   on_end=partial(self._ended, after=on_end), **settings)

    def add(self, run: Run) -> None:
        """Own a primed run: start the loop if it is not running, then the run."""
        self._ready()
        with self._lock:
            if run.key is None:
                self._unstored.add(run)
            else:
                self._local[run.key] = run
                self._cursors[run.key] = [0, 0]
                self._synced[run.key] = 0
            if not self._looping:
                self._looping = True
                spawn(self._loop)
        run.start()

    def discard(self, generation_id: int | None) -> None:
        """Forget a generation whose upstream failed before streaming."""
        if generation_id is not None:
            self._about.pop(generation_id, None)
            store.discard(self._engine, generation_id)

    def _ended(self, run: Run, tail: list, after=None) -> None:
        """A run's end (its ``on_end``): the rest of its log and its reply are stored before
        any reader sees the finish part; ``after`` (the maker's hook) is told of every end."""
        try:
            self._end_run(run, tail)
        finally:
            if after is not None:
                after(run, tail)

    def _end_run(self, run: Run, tail: list) -> None:
        """Store a run's end (see ``_ended``)."""
        if run.key is None:
            self._unstored.discard(run)
            _, _, prompt, completion = tail[-1]
            metrics.reply_finished(run.model_id, prompt, completion,
                                   run.seconds_to_first_token(), run.seconds())
            return
        generation_id = run.key
        with self._append_lock:   # the loop no longer touches it: its last batch is ours
            batches = self._claim(run, tail)
            self._local.pop(generation_id, None)
            self._cursors.pop(generation_id, None)
            self._synced.pop(generation_id, None)
        _, _, prompt, completion = tail[-1]
        item = {"row_id": generation_id, "text": run.reply.text, "reason": run.reason,
                "prompt": prompt, "completion": completion,
                "estimated": run.reply.usage_estimated, "model": run.model_id, "log": batches}
        chat_id = self._about.pop(generation_id, (None, None))[0]
        metrics.reply_finished(run.model_id, prompt, completion, run.seconds_to_first_token(),
                               run.seconds())
        try:
            self._finish(item)
            metrics.reply_stored()
        except Exception as error:  # noqa: BLE001 - kept and retried: never dropped
            log.warning("could not store generation %s (%s); retrying for %s s", generation_id,
                        type(error).__name__, self.retry_seconds)
            threading.Thread(target=self._store_later, args=(item, chat_id), name="store-retry",
                             daemon=True).start()

    def _store_ends(self, items: list[dict]) -> list[None]:
        """The batched end of runs: their last log batches (after any append of the loop
        still in flight, so a reader elsewhere gets every batch before the finish part), then
        their replies and statuses in one transaction. A log that fails is logged: the stored
        reply matters more."""
        batches = [batch for item in items for batch in item["log"]]
        try:
            with self._append_lock:
                self.log.append(batches)
            self.log.ended([item["row_id"] for item in items])
        except Exception:  # noqa: BLE001 - see above
            log.exception("could not append the end of %s generations to the log", len(items))
        for item in items:
            item["log"] = []   # a retry stores the reply only
        return store.finish(self._engine, items)

    def _store_later(self, item: dict, chat_id: int | None) -> None:
        """Store a finished reply the database refused, with backoff, for ``retry_seconds``;
        past that the loss is logged as an error (never with the text)."""
        deadline = time.monotonic() + self.retry_seconds
        pause = 0.5
        while time.monotonic() < deadline:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            try:
                self._finish(item)
            except Exception:  # noqa: BLE001 - the database is still away
                pause = min(pause * 2, 10.0)
                continue
            log.info("stored generation %s after a retry", item["row_id"])
            metrics.reply_stored()
            return
        log.error("lost the end of the reply in chat %s (message %s): the database refused it "
                  "for %s s", chat_id, item["row_id"], self.retry_seconds)
        metrics.reply_store_failed()

    def _claim(self, run: Run, tail: list = ()) -> list[tuple[int, int, bytes]]:
        """The run's parts not yet in the log (and ``tail``) as one numbered batch, marked
        appended. Callers hold ``_append_lock`` so batches reach the log in order."""
        cursor = self._cursors.get(run.key)
        if cursor is None:
            return []
        parts = run.parts
        count = len(parts)
        if cursor[0] >= count and not tail:
            return []
        batch = parts[cursor[0]:count] + list(tail)
        cursor[0] = count + len(tail)
        cursor[1] += 1
        return [(run.key, cursor[1], orjson.dumps(batch))]

    # The loop.

    def _ready(self) -> None:
        """Locks made in this process (after a fork, and after gevent patched threading)."""
        if self._pid != os.getpid():
            with _SETUP:
                if self._pid != os.getpid():
                    self._lock, self._append_lock = threading.Lock(), threading.Lock()
                    self._looping = False
                    self._pid = os.getpid()   # last: others see a whole set-up or none

    def _loop(self) -> None:
        """Keep the shared state of this process's runs current while there are any."""
        next_sync = time.monotonic() + SYNC
        rounds = 0
        while True:
            time.sleep(TICK)
            with self._lock:
                if not self._local and not self._unstored:
                    self._looping = False
                    return
            now = time.monotonic()
            rounds += 1
            try:
                # Stop requests every other round: a stop still lands within a second.
                self._tick(sync=now >= next_sync, stops=rounds % 2 == 0)
            except Exception:  # noqa: BLE001 - a database or Redis hiccup must not end the loop
                log.exception("could not update the shared state of running generations")
            if now >= next_sync:
                next_sync = now + SYNC

    def _tick(self, sync: bool, stops: bool = True) -> None:
        """One round: log, text and heartbeat, stop requests (when ``stops``), grace windows,
        the reaper. Each store call is its own short transaction: an SQLite write lock held
        across a Redis round trip (a yield) would let another greenlet's lock wait, a wait in
        C, block the whole process, the lock's holder included."""
        runs = [run for run in list(self._local.values()) if not run.done]
        with self._append_lock:
            self.log.append([batch for run in runs for batch in self._claim(run)])
        ids = [run.key for run in runs]
        if sync:
            store.sync(self._engine, self._unsynced(runs), ids)
        stopped = self.log.stop_requested(ids) if stops else ()
        for generation_id in stopped:
            run = self._local.get(generation_id)
            if run is not None:
                run.cancel("stopped")
        now = time.monotonic()
        for run in runs:
            detached = run.detached_at
            if detached is not None and now - detached > self.grace:
                if self.log.has_reader(run.key):
                    run.detached_at = now
                else:
                    run.cancel("aborted")
        self.maybe_reap()

    def _unsynced(self, runs: list[Run]) -> dict[int, str]:
        """The text of each run that generated more since it was last stored."""
        texts = {}
        for run in runs:
            if self._synced.get(run.key) != run.reply.generated_chars:
                self._synced[run.key] = run.reply.generated_chars
                texts[run.key] = run.reply.text
        return texts

    # Any run of the app, from any request.

    def follow(self, generation_id: int, encoder, environ: dict):
        """A response body reading the generation from its first part, then live."""
        run = self._local.get(generation_id)
        if run is not None:
            return RunReader(run, encoder, environ)
        return LogReader(self._tail(generation_id), encoder, environ, self.time_limit)

    def _tail(self, generation_id: int) -> Iterator[list]:
        """The generation's batches from the shared log, until its finish part (an empty list
        after each empty poll). A generation that ended without one, or whose owner stopped
        beating (its process died), ends with what its message row holds."""
        shared = self.log
        cursor = shared.start
        shared.mark_reader(generation_id)
        checked = time.monotonic()
        sent = False
        ended = None
        while True:
            batches = shared.read(generation_id, cursor)
            for cursor, data in batches:
                parts = orjson.loads(data)
                sent = True
                yield parts
                if parts and is_finish(parts[-1]):
                    return
            if ended is not None:
                yield self._stored_ending(generation_id, ended, sent)
                return
            if not batches:
                yield []
            if time.monotonic() - checked >= PRESENCE_SECONDS:
                checked = time.monotonic()
                shared.mark_reader(generation_id)
                found = store.state(self._engine, generation_id)
                if found is None or found["status"] == store.DONE or _orphaned(found):
                    # Its last batch is appended before its status changes: read once more.
                    ended = found or {"message": "", "finish_reason": "aborted",
                                      "prompt_tokens": 0, "completion_tokens": 0}

    def _stored_ending(self, generation_id: int, ended: dict, sent: bool) -> list:
        """The end of a tail the log did not finish: the stored text if nothing was sent yet,
        and a finish part with the stored (or ``interrupted``) reason."""
        finish = finish_part(ended["finish_reason"] or "interrupted",
                             ended["prompt_tokens"] or 0, ended["completion_tokens"] or 0)
        if sent:
            return [finish]
        head = [start_part(self.message_id(generation_id))]
        return head + ([ended["message"]] if ended["message"] else []) + [finish]

    def running(self, chat_id: int, newest: int | None = None) -> tuple[int, str] | None:
        """The chat's running generation (the newest, if several) and the protocol it was
        started in, or None. ``newest``, the chat's newest message id, answers from memory
        when it is a run of this process (no query)."""
        run = self._local.get(newest) if newest is not None else None
        if run is not None and not run.done:
            return newest, self._about.get(newest, (None, "data"))[1]
        self.maybe_reap()
        found = store.running(self._engine, chat_id)
        return found[0] if found else None

    def stop_chat(self, chat_id: int) -> None:
        """Stop the chat's running generations, here or on their owner's process."""
        for generation_id, _ in store.running(self._engine, chat_id):
            run = self._local.get(generation_id)
            if run is not None:
                run.cancel("stopped")
            else:
                self.log.request_stop(generation_id)

    def maybe_reap(self) -> None:
        """Reap generations whose owner died, at most every quarter of the reap age."""
        now = time.monotonic()
        if now - self._last_reap < min(self.reap_seconds / 4, 15.0):
            return
        self._last_reap = now
        try:
            reaped = store.reap(self._engine, self.reap_seconds)
        except Exception:  # noqa: BLE001 - reaping is retried at the next chance
            log.exception("could not reap stale generations")
            return
        if reaped:
            log.warning("generations %s lost their owner: stored as interrupted", reaped)

    # Shutting down.

    def interrupt_all(self, wait: float) -> None:
        """End every run of this process as ``interrupted``, and wait (bounded) until they are
        stored."""
        for run in list(self._local.values()) + list(self._unstored):
            run.cancel("interrupted")
        deadline = time.monotonic() + wait
        while (self._local or self._unstored) and time.monotonic() < deadline:
            time.sleep(0.05)

    def drain(self, deadline: float) -> None:
        """Let runs finish until ``deadline`` (monotonic), then interrupt the rest."""
        while (self._local or self._unstored) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.interrupt_all(wait=1.0)


def _orphaned(found: dict) -> bool:
    """A running generation whose owner has not beaten for long: its process is gone (the
    reaper will store it as interrupted; a reader need not wait for that)."""
    beat = found["heartbeat_at"]
    return (found["status"] == store.RUNNING and beat is not None
            and (utcnow() - beat).total_seconds() > ORPHANED_SECONDS)


def drain_all(seconds: float) -> None:
    """SIGTERM: let every app's runs on this process finish for ``seconds``, then store the
    rest as interrupted."""
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=manager.drain, args=(deadline,), daemon=True)
               for manager in list(_MANAGERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def interrupt_all(wait: float = 1.0) -> None:
    """The process is exiting: store every run still going as interrupted."""
    for manager in list(_MANAGERS):
        manager.interrupt_all(wait)
