"""Login limits per client address (any emails), per account (any addresses) and per address and
email; the client address behind TRUSTED_PROXIES."""
from __future__ import annotations

import hashlib
import uuid

import redis

from tests.conftest import sign_up

from .helpers import assert_error

PASSWORD = "correct horse"
REDIS = "redis://127.0.0.1:6379/13"


def _login(client, email, address="10.0.0.1", password="bad-guess", **headers):
    return client.post("/api/auth/login", json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address}, headers=headers)


def test_one_address_trying_many_emails_is_limited(app_factory):
    """The per-address limit counts every email an address tries; other addresses pass."""
    client = app_factory(LOGIN_RATE_LIMIT_PER_ADDRESS="3/minute").test_client()
    for number in range(3):
        assert _login(client, f"spray-{number}@example.com").status_code == 401
    blocked = _login(client, "spray-9@example.com")
    assert_error(blocked, 429)
    assert int(blocked.headers["Retry-After"]) > 0
    assert blocked.headers["X-RateLimit-Limit"] == "3"
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Reset" in blocked.headers
    assert _login(client, "spray-9@example.com", address="10.0.0.2").status_code == 401


def test_one_account_tried_from_many_addresses_is_limited(app_factory):
    """The per-account limit counts every address trying one email (normalized); the account's
    owner is refused too until the window ends, other accounts are not."""
    client = app_factory(LOGIN_RATE_LIMIT_PER_ACCOUNT="3/hour").test_client()
    sign_up(client, "target@example.com", PASSWORD)
    for number, email in enumerate(("target@example.com", "TARGET@example.com",
                                    " target@example.com")):
        assert _login(client, email, address=f"10.0.1.{number}").status_code == 401
    blocked = _login(client, "target@example.com", address="10.0.1.200", password=PASSWORD)
    assert_error(blocked, 429)
    assert int(blocked.headers["Retry-After"]) > 0
    assert _login(client, "other@example.com", address="10.0.1.200").status_code == 401


def test_address_and_account_keys_are_bounded_digests(app_factory):
    """In Redis (db 13) the keys hold the email's SHA-256, never the email, whatever its length."""
    app = app_factory(RATELIMIT_STORAGE_URI=REDIS, LOGIN_RATE_LIMIT_PER_ACCOUNT="1/hour")
    email = f"digest-{uuid.uuid4().hex}{'x' * 200}@example.com"
    digest = hashlib.sha256(email.encode()).hexdigest()
    client = app.test_client()
    assert _login(client, email).status_code == 401
    assert_error(_login(client, email, address="10.0.2.1"), 429)
    store = redis.Redis.from_url(REDIS)
    try:
        keys = [key.decode() for key in store.scan_iter(match=f"*{digest}*")]
        assert any("account" in key for key in keys)
        assert all(len(key) < 200 for key in keys)
        assert not list(store.scan_iter(match="*digest-*"))
        store.delete(*keys)
    finally:
        store.close()


def test_forwarded_address_counts_only_behind_trusted_proxies(app_factory):
    """Without TRUSTED_PROXIES, X-Forwarded-For is ignored (the socket's address is limited);
    with TRUSTED_PROXIES=1 the address the proxy appended is the client's."""
    plain = app_factory(LOGIN_RATE_LIMIT_PER_ADDRESS="2/minute").test_client()
    for number in range(2):
        assert _login(plain, f"p{number}@example.com",
                      X_Forwarded_For=f"192.0.2.{number}").status_code == 401
    assert_error(_login(plain, "p9@example.com", X_Forwarded_For="192.0.2.99"), 429)

    proxied = app_factory(LOGIN_RATE_LIMIT_PER_ADDRESS="2/minute",
                          TRUSTED_PROXIES=1).test_client()
    # One proxy: the last address is the one it saw; what the client put before is ignored.
    for number in range(2):
        assert _login(proxied, f"q{number}@example.com", address="10.9.9.9",
                      X_Forwarded_For=f"6.6.6.{number}, 198.51.100.7").status_code == 401
    assert_error(_login(proxied, "q9@example.com", address="10.9.9.9",
                        X_Forwarded_For="198.51.100.7"), 429)
    # Another client behind the same proxy is not limited by the first one's attempts.
    assert _login(proxied, "q9@example.com", address="10.9.9.9",
                  X_Forwarded_For="198.51.100.8").status_code == 401
