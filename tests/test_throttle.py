"""Logins are throttled per account and per client address, sign-ups per client address;
the counts live in the database."""

import time
from collections import Counter

import pytest
import requests
from helpers import PASSWORD, assert_error, client_at, run_together, server_env, sign_up

from models import ThrottleModel
from throttle import Limit
from tools.gunicorn_server import API, gunicorn

pytestmark = pytest.mark.sqlite_too

WRONG = "wrong password"


def log_in(client, username: str, password: str = WRONG, address: str = "192.0.2.1"):
    return client.post(
        "/login",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def register(client, username: str, address: str = "192.0.2.1"):
    account = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    return client.post("/register", json=account, environ_base={"REMOTE_ADDR": address})


def test_the_account_delay_grows_from_one_second_and_never_locks_for_good():
    limit = Limit("test", allowed=5, max_wait=900)
    row = ThrottleModel(key="test:x", hits=0, window_ends_at=0.0, blocked_until=0.0)
    waits = []
    for _ in range(16):
        limit.count(row, now=1000.0)
        waits.append(max(row.blocked_until - 1000.0, 0))
    assert waits == [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]


def test_an_address_limit_waits_until_its_window_ends():
    limit = Limit("test", allowed=3, window=3600)
    row = ThrottleModel(key="test:x", hits=0, window_ends_at=0.0, blocked_until=0.0)
    for now in (100.0, 200.0, 300.0):
        limit.count(row, now)
    assert row.blocked_until == 3700.0  # the window opened at the first hit
    limit.count(row, now=3700.0)  # a new window
    assert (row.hits, row.window_ends_at) == (1, 7300.0)


def test_after_five_wrong_passwords_an_account_waits_wherever_it_is_tried(anonymous, new_user):
    new_user("alice")
    assert [log_in(anonymous, "alice").status_code for _ in range(5)] == [401] * 5

    from_elsewhere = log_in(anonymous, "alice", PASSWORD, address="198.51.100.9")
    other_account = log_in(anonymous, "bob")

    assert_error(from_elsewhere, 429, "Too many login attempts")
    assert from_elsewhere.headers["Retry-After"] == "1"
    assert other_account.status_code == 401
    time.sleep(1)
    assert log_in(anonymous, "alice", PASSWORD).status_code == 200
    # A good password forgives the account: five attempts again.
    assert [log_in(anonymous, "alice").status_code for _ in range(5)] == [401] * 5


def test_an_address_trying_many_accounts_waits_for_the_hour(anonymous, app):
    allowed = app.config["LOGIN_ATTEMPTS_PER_ADDRESS"]
    statuses = [log_in(anonymous, f"user{n}").status_code for n in range(allowed)]
    refused = log_in(anonymous, "one-more")

    assert statuses == [401] * allowed
    assert_error(refused, 429, "from your address")
    assert 3590 <= int(refused.headers["Retry-After"]) <= 3600
    assert log_in(anonymous, "one-more", address="198.51.100.9").status_code == 401


def test_sign_ups_are_limited_per_address(anonymous, app, sql):
    allowed = app.config["REGISTRATIONS_PER_ADDRESS"]
    statuses = [register(anonymous, f"user{n}").status_code for n in range(allowed)]
    refused = register(anonymous, "one-more")

    assert statuses == [201] * allowed
    assert_error(refused, 429, "Too many sign-ups")
    assert int(refused.headers["Retry-After"]) > 3500
    assert register(anonymous, "one-more", address="198.51.100.9").status_code == 201
    assert sql("SELECT count(*) FROM users") == [(allowed + 1,)]


@pytest.mark.pgbouncer_too
def test_concurrent_guesses_of_one_account_get_exactly_five_tries(live_server):
    sign_up(live_server, "alice")
    body = {"username": "alice", "password": WRONG}

    def guess(number: int) -> int:
        client = client_at(f"127.0.0.{number + 2}")  # from 16 addresses: only the account limits
        return client.post(f"{live_server}/login", json=body, timeout=30).status_code

    assert Counter(run_together(16, guess)) == {401: 5, 429: 11}


def test_keys_are_built_from_validated_bounded_input(anonymous, sql):
    too_long = log_in(anonymous, "a" * 100_000)
    assert_error(too_long, 422)
    assert sql("SELECT count(*) FROM throttles") == [(0,)]
    log_in(anonymous, "alice")
    assert sql("SELECT key FROM throttles ORDER BY key") == [
        ("login-account:alice",),
        ("login-address:192.0.2.1",),
    ]


@pytest.mark.parametrize("trusted", [0, 1])
def test_the_client_address_is_the_proxys_only_when_it_is_trusted(database_url, trusted):
    env = server_env(database_url, TRUSTED_PROXIES=str(trusted))
    with gunicorn(API, env, "--workers", "1") as server:
        answers = [
            requests.post(
                f"{server.url}/register",
                json={"username": f"user{n}", "email": f"u{n}@example.com", "password": PASSWORD},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
                timeout=30,
            ).status_code
            for n in range(11)
        ]
    # Trusted, each forwarded address is a client of its own. Untrusted (the default),
    # X-Forwarded-For is ignored: the forged addresses are one client, whose 11th sign-up waits.
    expected = [201] * 11 if trusted else [201] * 10 + [429]
    assert answers == expected
