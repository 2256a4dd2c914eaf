"""The batcher: concurrent callers share one handle call, failures stay with their item, the
runner ends when idle and starts again, and a forked process gets its own runner."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from neptun_flask import batching
from neptun_flask.batching import Batcher, BatchTimeout


def run_concurrently(batcher: Batcher, items: list) -> dict:
    """Call the batcher from one thread per item; return item -> result or exception."""
    outcomes: dict = {}

    def call(item):
        try:
            outcomes[item] = batcher(item)
        except Exception as error:  # noqa: BLE001 - recorded for the assertions
            outcomes[item] = error

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "a caller was never woken"
    return outcomes


class GatedDouble:
    """A handle that doubles items and holds its first call until released, so that the
    callers arriving meanwhile queue up for the next batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.first_call = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_call.set()
            assert self.release.wait(10)
        return [item * 2 for item in items]


def test_callers_waiting_meanwhile_share_one_call():
    handle = GatedDouble()
    batcher = Batcher(handle)
    first = threading.Thread(target=batcher, args=(0,))
    first.start()
    assert handle.first_call.wait(10)
    waiting = threading.Thread(target=lambda: outcomes.update(run_concurrently(batcher,
                                                                              range(1, 21))))
    outcomes: dict = {}
    waiting.start()
    time.sleep(0.3)  # the 20 callers queue while the first batch is being handled
    handle.release.set()
    waiting.join(10)
    first.join(10)
    assert outcomes == {item: item * 2 for item in range(1, 21)}
    assert handle.batches[0] == [0]
    assert sorted(handle.batches[1]) == list(range(1, 21)), "one call for all who waited"
    assert len(handle.batches) == 2


def test_a_failing_item_fails_only_its_own_caller():
    calls: list[list[int]] = []

    def handle(items):
        calls.append(list(items))
        if 13 in items:
            raise IntegrityError("INSERT", None, ValueError("unlucky"))
        return [-item for item in items]

    outcomes = run_concurrently(Batcher(handle), list(range(10, 16)))
    assert isinstance(outcomes.pop(13), IntegrityError)
    assert outcomes == {item: -item for item in (10, 11, 12, 14, 15)}
    assert [13] in calls, "a failed batch is retried item by item"


def test_a_database_away_fails_the_whole_batch_at_once():
    """An error not about one item (the connection, the pool) is every caller's at once: no
    item-by-item retries against a database that is away."""
    calls: list[list[int]] = []

    def handle(items):
        calls.append(list(items))
        raise OperationalError("SELECT", None, ConnectionError("gone"))

    outcomes = run_concurrently(Batcher(handle), list(range(6)))
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes.values())
    assert sum(len(call) for call in calls) == 6, "each item was tried once"


def test_a_caller_waits_at_most_its_bound():
    """A batch stuck on the database: its caller gives up after the bound (503 upstream)."""
    release = threading.Event()

    def handle(items):
        release.wait(5)
        return items

    started = time.monotonic()
    with pytest.raises(BatchTimeout):
        Batcher(handle, wait_seconds=0.2)(1)
    assert time.monotonic() - started < 1.0
    release.set()


def test_a_result_list_of_the_wrong_length_is_an_error():
    with pytest.raises(ValueError):
        Batcher(lambda items: [])(1)


def test_runner_ends_when_idle_and_starts_again(monkeypatch):
    monkeypatch.setattr(batching, "IDLE_SECONDS", 0.05)
    batcher = Batcher(lambda items: [item + 1 for item in items])
    assert batcher(1) == 2
    deadline = time.monotonic() + 5
    while batcher._running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not batcher._running, "the runner ended"
    assert batcher(2) == 3, "and a new one serves the next call"


def test_a_forked_process_starts_its_own_runner():
    batcher = Batcher(lambda items: items)
    assert batcher("a") == "a"
    queue_before = batcher._queue
    batcher._pid = -1  # what a fork looks like: the pid differs from the one that built it
    assert batcher("b") == "b"
    assert batcher._queue is not queue_before
