"""Password hashing with argon2id, off the event loop.

argon2 is CPU-bound for tens of milliseconds per call at the production cost. Under gevent a
call on the hub's thread would stall every other greenlet of the worker (every stream, every
health check) for that long, and a burst of logins for seconds. So hashing and verifying run in
a small bounded pool of real threads (argon2's C code releases the GIL): gevent's ThreadPool
under gevent, where the calling greenlet waits cooperatively, else a
``concurrent.futures.ThreadPoolExecutor``. The bound also bounds memory: each call at the
default cost holds 64 MiB.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# "low" exists for the test suite only: hashing at production cost would dominate its run time.
_COSTS = {
    "default": {},
    "low": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1},
}
#: Concurrent hashes per process: half the machine's cores (at least 1, at most 4). One hash at
#: the default cost already runs 4 lanes in threads of its own, and the rest of the cores are
#: left to the event loop.
POOL_SIZE = max(1, min(4, (os.cpu_count() or 2) // 2))

_pool_lock = threading.Lock()
_pool = None
_pool_pid: int | None = None


@lru_cache(maxsize=None)
def _hasher(cost: str) -> PasswordHasher:
    """One PasswordHasher per cost setting."""
    return PasswordHasher(**_COSTS.get(cost, {}))


def _under_gevent() -> bool:
    """Whether gevent patched threading in this process (a gunicorn gevent worker)."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("threading")


def _run(function, *args):
    """``function(*args)`` on a thread of the process's hashing pool; the caller waits (a
    greenlet yields to the hub meanwhile). The pool is made per process (after a fork)."""
    global _pool, _pool_pid
    pid = os.getpid()
    if _pool_pid != pid:
        with _pool_lock:
            if _pool_pid != pid:
                if _under_gevent():
                    from gevent.threadpool import ThreadPool
                    _pool = ThreadPool(POOL_SIZE)
                else:
                    _pool = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="password-hash")
                _pool_pid = pid
    pool = _pool
    if isinstance(pool, ThreadPoolExecutor):
        return pool.submit(function, *args).result()
    return pool.apply(function, args)


@lru_cache(maxsize=None)
def _dummy_hash(cost: str) -> str:
    """A hash to verify against when the email is unknown, so both paths cost the same."""
    return _run(_hasher(cost).hash, "not-a-real-password")


def hash_password(password: str, cost: str = "default") -> str:
    """Hash a password for storage (in the hashing pool)."""
    return _run(_hasher(cost).hash, password)


def verify_password(stored_hash: str | None, password: str, cost: str = "default") -> bool:
    """Check a password (in the hashing pool); with no stored hash, spend the same time and
    return False."""
    hasher = _hasher(cost)
    target = stored_hash or _dummy_hash(cost)
    try:
        return _run(hasher.verify, target, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
