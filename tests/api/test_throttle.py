"""Logins are throttled per account and per client address, sign-ups per client address,
refreshes per login; the counts live in the database."""

import threading
import time
from collections import Counter

import pytest
import requests
from argon2 import PasswordHasher
from sqlalchemy import select
from support import JWT_SECRET, PASSWORD, bearer_of
from support.api import assert_error, change_settings
from support.http import client_at, run_together, server_env, sign_up

from app import create_app
from config.settings import Settings
from models import ThrottleModel
from security.devices import known_device, new_device_cookie
from security.throttle import PRUNE_BATCH, Limit, attempt, client_of
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


@pytest.mark.slow
def test_an_attacker_hammering_an_account_leaves_its_owner_elsewhere_in(anonymous, new_user):
    new_user("alice")
    hammering = [log_in(anonymous, "alice", address="203.0.113.66").status_code for _ in range(40)]
    from_home = log_in(anonymous, "alice", PASSWORD, address="198.51.100.9")

    # After five failures the attacker waits 1 s, then 2, 4, ...: a few more guesses at most
    # (on a slow machine a wait can pass during an attempt's password check).
    assert hammering[:5] == [401] * 5
    assert hammering.count(429) >= 30
    assert from_home.status_code == 200  # at once: the attacker's count is the attacker's


def test_a_right_password_clears_the_clients_wait_for_the_account(anonymous, new_user):
    new_user("alice")
    assert [log_in(anonymous, "alice").status_code for _ in range(5)] == [401] * 5
    time.sleep(1)  # the wait after the fifth failure
    assert log_in(anonymous, "alice", PASSWORD).status_code == 200
    # Forgiven: five attempts again.
    assert [log_in(anonymous, "alice").status_code for _ in range(5)] == [401] * 5


def test_a_known_device_gets_in_while_many_addresses_guess_the_account(
    app, anonymous, new_user, monkeypatch
):
    # Few attempts per account from new clients, so that few addresses use them up.
    monkeypatch.setitem(
        app.extensions["throttle_limits"], "login-account", Limit("login-account", 6)
    )
    new_user("alice")
    owners_phone = app.test_client()
    assert log_in(owners_phone, "alice", PASSWORD, address="198.51.100.9").status_code == 200
    device_cookie = owners_phone.get_cookie("device", path="/login")
    assert device_cookie.http_only
    assert device_cookie.same_site == "Strict"

    # An attacker rotating addresses, with a device cookie of another account too.
    new_user("mallory")
    assert log_in(anonymous, "mallory", PASSWORD, address="203.0.113.1").status_code == 200
    spray = [log_in(anonymous, "alice", address=f"203.0.113.{n}").status_code for n in range(2, 9)]
    new_laptop = log_in(app.test_client(), "alice", PASSWORD, address="192.0.2.200")
    phone_elsewhere = log_in(owners_phone, "alice", PASSWORD, address="192.0.2.201")

    assert spray == [401] * 6 + [429]  # the account's allowance for new clients is spent
    assert_error(new_laptop, 429)  # OWASP's trade: new clients wait, known ones do not
    assert phone_elsewhere.status_code == 200


def test_a_login_refreshed_too_often_waits_for_the_hour(app, anonymous, new_user, monkeypatch):
    monkeypatch.setitem(
        app.extensions["throttle_limits"], "refresh-family", Limit("refresh-family", 3)
    )
    new_user("alice")
    login = log_in(anonymous, "alice", PASSWORD).get_json()
    other_login = log_in(anonymous, "alice", PASSWORD).get_json()

    def refresh(tokens: dict):
        return anonymous.post("/refresh", headers=bearer_of(tokens["refresh_token"]))

    answers = []
    for _ in range(3):
        answers.append(refresh(login))
        login = answers[-1].get_json()
    refused = refresh(login)

    assert [answer.status_code for answer in answers] == [200] * 3
    assert_error(refused, 429, "Too many refreshes of this login")
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600
    assert refresh(other_login).status_code == 200  # a login of its own
    # Refused, not used: the token works once the hour is over, and its login meanwhile.
    assert anonymous.get("/user/me", headers=bearer_of(login["access_token"])).status_code == 200


def test_a_device_cookie_is_signed_and_bound_to_its_account(app, anonymous, new_user):
    new_user("alice")
    with app.test_request_context():
        alices = new_device_cookie("alice")
        assert known_device(alices, "alice")
        assert known_device(alices, "bob") is None
        assert known_device(alices[:-2] + "xx", "alice") is None
        assert known_device("garbage", "alice") is None


def test_an_address_trying_many_accounts_waits_for_the_hour(anonymous, app):
    allowed = app.extensions["settings"].login_attempts_per_address
    started = time.monotonic()
    statuses = [log_in(anonymous, f"user{n}").status_code for n in range(allowed)]
    refused = log_in(anonymous, "one-more")
    elapsed = time.monotonic() - started

    assert statuses == [401] * allowed
    assert_error(refused, 429, "from your address")
    # The hour began at the first attempt, however long the thirty took.
    assert 3600 - elapsed - 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert log_in(anonymous, "one-more", address="198.51.100.9").status_code == 401


def test_sign_ups_are_limited_per_address(anonymous, app, sql):
    allowed = app.extensions["settings"].registrations_per_address
    statuses = [register(anonymous, f"user{n}").status_code for n in range(allowed)]
    refused = register(anonymous, "one-more")

    assert statuses == [201] * allowed
    assert_error(refused, 429, "Too many sign-ups")
    assert int(refused.headers["Retry-After"]) > 3500
    assert register(anonymous, "one-more", address="198.51.100.9").status_code == 201
    assert sql("SELECT count(*) FROM users") == [(allowed + 1,)]


@pytest.mark.slow
@pytest.mark.pgbouncer_too
def test_concurrent_guesses_of_one_account_get_exactly_its_allowance(database_url):
    # The account's hourly allowance for new clients (a window: no timing in the count),
    # spent by 16 clients guessing at once, from 16 addresses.
    env = server_env(database_url, LOGIN_ATTEMPTS_PER_ACCOUNT_FROM_NEW_CLIENTS="5")
    with gunicorn(API, env, "--workers", "4") as server:
        sign_up(server.url, "alice")
        body = {"username": "alice", "password": WRONG}

        def guess(number: int) -> int:
            client = client_at(f"127.0.0.{number + 2}")
            return client.post(f"{server.url}/login", json=body, timeout=60).status_code

        assert Counter(run_together(16, guess)) == {401: 5, 429: 11}


class SlowOnTheFifthHasher(PasswordHasher):
    """Argon2 on a busy machine: the fifth check takes 1.5 s."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def verify(self, hash, password) -> bool:
        self.checks += 1
        if self.checks == 5:
            time.sleep(1.5)
        return super().verify(hash, password)


def test_a_wait_counts_from_the_answer_not_from_the_attempt(database_url, new_user):
    new_user("alice")
    app = create_app(
        Settings(database_url=database_url),
        TESTING=True,
        JWT_SECRET_KEY=JWT_SECRET,
        PASSWORD_HASHER=SlowOnTheFifthHasher(),
    )
    client = app.test_client()
    statuses = [log_in(client, "alice").status_code for _ in range(6)]
    # The 1 s wait after the fifth failure began when it was answered, not 1.5 s earlier.
    assert statuses == [401] * 5 + [429]


def test_keys_are_built_from_validated_bounded_input(anonymous, sql):
    too_long = log_in(anonymous, "a" * 100_000)
    assert_error(too_long, 422)
    assert sql("SELECT count(*) FROM throttles") == [(0,)]
    log_in(anonymous, "alice")
    assert sql("SELECT key FROM throttles ORDER BY key") == [
        ("login-account-client:alice 192.0.2.1",),
        ("login-account:alice",),
        ("login-address:192.0.2.1",),
    ]


def test_an_ipv6_client_is_its_whole_network(app, anonymous, monkeypatch):
    monkeypatch.setitem(
        app.extensions["throttle_limits"], "login-address", Limit("login-address", 5)
    )
    # One subscriber's /64: a new address for every username.
    spray = [
        log_in(anonymous, f"user{n}", address=f"2001:db8:1:2::{n:x}").status_code
        for n in range(1, 7)
    ]
    next_network = log_in(anonymous, "user99", address="2001:db8:1:3::1")

    assert spray == [401] * 5 + [429]
    assert next_network.status_code == 401


@pytest.mark.parametrize(
    ("address", "prefix", "client"),
    [
        ("192.0.2.7", 64, "192.0.2.7"),
        ("::ffff:192.0.2.7", 64, "192.0.2.7"),  # IPv4 on a dual-stack socket
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("", 64, ""),  # a Unix socket's peer
    ],
)
def test_addresses_are_grouped_into_clients(app, monkeypatch, address, prefix, client):
    change_settings(monkeypatch, app, ipv6_client_prefix=prefix)
    with app.app_context():
        assert client_of(address) == client


def test_a_refused_attempt_writes_nothing_and_waits_for_no_lock(anonymous, engine, sql):
    assert [log_in(anonymous, "alice").status_code for _ in range(6)] == [401] * 5 + [429]
    before = sql("SELECT * FROM throttles ORDER BY key")

    # Someone holds the account's row (on SQLite, whose transactions begin IMMEDIATE: the
    # database's write lock).
    with engine.connect() as holder:
        holder.execute(select(ThrottleModel).with_for_update())
        started = time.monotonic()
        refused = log_in(anonymous, "alice")
        waited = time.monotonic() - started
        holder.rollback()

    assert_error(refused, 429)
    assert waited < 10  # not the lock's 30 s timeout: it read, and wrote nothing
    assert sql("SELECT * FROM throttles ORDER BY key") == before


def test_a_right_login_gives_back_its_hit_and_the_wait_it_caused(
    app, anonymous, new_user, monkeypatch
):
    monkeypatch.setitem(
        app.extensions["throttle_limits"], "login-address", Limit("login-address", 3)
    )
    new_user("alice")
    assert [log_in(anonymous, f"user{n}").status_code for n in range(2)] == [401, 401]
    # The third attempt reaches the address's limit, and is right.
    assert log_in(anonymous, "alice", PASSWORD).status_code == 200
    assert log_in(anonymous, "user3").status_code == 401  # not made to wait by it
    assert_error(log_in(anonymous, "user4"), 429)


def test_attempts_racing_a_pruner_never_fail(app, engine):
    """Whatever deletes throttle rows meanwhile (an over-eager cron, prune-expired), an
    attempt counts: it never errs."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def prune_everything() -> None:
        with engine.connect() as pruner:
            while not stop.is_set():
                pruner.exec_driver_sql("DELETE FROM throttles")
                pruner.commit()

    def attempts(number: int) -> None:
        limit = Limit("race", allowed=1_000)
        for n in range(30):
            with app.test_request_context(method="POST"):
                try:
                    attempt((limit, f"{number}-{n % 3}"), refusal="wait")
                except Exception as error:
                    errors.append(error)

    pruner = threading.Thread(target=prune_everything)
    pruner.start()
    try:
        run_together(6, attempts)
    finally:
        stop.set()
        pruner.join()
    assert errors == []


def test_the_table_stays_small_without_cron(app, engine, sql):
    """100,000 usernames tried more than an hour ago leave 100,000 rows that count nothing:
    attempts as they come remove them, PRUNE_BATCH at a time."""
    hour_ago = time.time() - 3601
    with engine.begin() as connection:
        connection.execute(
            ThrottleModel.__table__.insert(),
            [
                {"key": f"login-account:user{n}", "hits": 1, "window_ends_at": hour_ago,
                 "blocked_until": 0.0}
                for n in range(100_000)
            ],
        )  # fmt: skip
    limit = Limit("now", allowed=1_000)
    for n in range(100_000 // PRUNE_BATCH):
        with app.test_request_context(method="POST"):
            attempt((limit, f"client{n % 7}"), refusal="wait")

    assert sql("SELECT count(*) FROM throttles") == [(7,)]  # only the counts still running


@pytest.mark.slow
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
