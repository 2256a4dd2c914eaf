"""Password hashing with argon2id."""
from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# "low" exists for the test suite only: hashing at production cost would dominate its run time.
_COSTS = {
    "default": {},
    "low": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1},
}


@lru_cache(maxsize=None)
def _hasher(cost: str) -> PasswordHasher:
    """One PasswordHasher per cost setting."""
    return PasswordHasher(**_COSTS.get(cost, {}))


@lru_cache(maxsize=None)
def _dummy_hash(cost: str) -> str:
    """A hash to verify against when the email is unknown, so both paths cost the same."""
    return _hasher(cost).hash("not-a-real-password")


def hash_password(password: str, cost: str = "default") -> str:
    """Hash a password for storage."""
    return _hasher(cost).hash(password)


def verify_password(stored_hash: str | None, password: str, cost: str = "default") -> bool:
    """Check a password; with no stored hash, spend the same time and return False."""
    try:
        return _hasher(cost).verify(stored_hash or _dummy_hash(cost), password) and \
            stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
