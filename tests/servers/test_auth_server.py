"""Auth under the real server: what one worker or instance decides, all of them know."""

import time
from collections import Counter

import pytest
import requests
from support import PASSWORD, bearer_of
from support.http import client_at, run_together, server_env, sign_up

from tools.gunicorn_server import API, gunicorn


def me(base_url: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{base_url}/user/me", headers=headers, timeout=30)


# The two tests of what other instances and restarts know (their servers take seconds to
# start): on SQLite, psycopg2 directly and psycopg through PgBouncer. They prove that the
# state is the database's, not a process's; what a driver or PgBouncer changes in the
# statements that keep it, the in-process tests take on every path (tests/api/test_auth.py,
# test_throttle.py), and the races below take it over HTTP.
@pytest.mark.sqlite_too
@pytest.mark.each_driver_once
def test_a_revoked_token_is_refused_by_every_worker_other_instances_and_after_restarts(
    live_server, database_url
):
    revoked, kept = sign_up(live_server, "alice"), sign_up(live_server, "bob")
    assert requests.post(f"{live_server}/logout", headers=revoked).status_code == 200

    # New connections spread over the four workers of the server that revoked it.
    assert {me(live_server, revoked).status_code for _ in range(20)} == {401}
    for _start in ("another instance", "the same, restarted"):
        with gunicorn(API, server_env(database_url), "--workers", "2") as other:
            assert me(other.url, kept).status_code == 200
            refused = me(other.url, revoked)
            assert refused.status_code == 401
            assert "revoked" in refused.json()["message"]


@pytest.mark.sqlite_too
@pytest.mark.pgbouncer_too
def test_concurrent_registrations_of_one_name_or_email_make_one_user(live_server, app, sql):
    def register(number: int) -> int:
        # Even threads race for the username, odd ones for the email; each one is a client
        # of its own address, as sign-ups are limited per address.
        username = "same" if number % 2 == 0 else f"user{number}"
        email = "same@example.com" if number % 2 else f"user{number}@example.com"
        account = {"username": username, "email": email, "password": PASSWORD}
        client = client_at(f"127.0.0.{number + 2}")
        return client.post(f"{live_server}/register", json=account, timeout=60).status_code

    statuses = Counter(run_together(16, register))

    assert statuses == {201: 2, 409: 14}  # one winner of each race
    assert sql("SELECT count(*) FROM users WHERE username = 'same'") == [(1,)]
    assert sql("SELECT count(*) FROM users WHERE email = 'same@example.com'") == [(1,)]


@pytest.mark.sqlite_too
@pytest.mark.pgbouncer_too
def test_a_refresh_token_raced_by_eight_clients_is_used_once_then_its_family_revoked(
    live_server, app
):
    sign_up(live_server, "alice")
    login = requests.post(
        f"{live_server}/login", json={"username": "alice", "password": PASSWORD}, timeout=30
    ).json()
    headers = bearer_of(login["refresh_token"])

    responses = run_together(
        8, lambda _n: requests.post(f"{live_server}/refresh", headers=headers, timeout=30)
    )

    assert Counter(response.status_code for response in responses) == {200: 1, 401: 7}
    # Used more than once: every worker now refuses every token of that login, the
    # winner's new ones too (RFC 9700 4.14.2); another login's tokens still work.
    (winner,) = [response.json() for response in responses if response.status_code == 200]
    other_login = sign_up(live_server, "bob")
    for _ in range(8):
        assert me(live_server, bearer_of(winner["access_token"])).status_code == 401
        again = requests.post(
            f"{live_server}/refresh", headers=bearer_of(winner["refresh_token"]), timeout=30
        )
        assert again.status_code == 401
        assert me(live_server, other_login).status_code == 200


@pytest.mark.sqlite_too
@pytest.mark.each_driver_once  # as the revoked token's test above
def test_the_login_throttle_holds_across_workers_instances_and_restarts(live_server, database_url):
    sign_up(live_server, "alice")  # a good login: the account has its 5 attempts

    def log_in_at(url: str, password: str = "wrong password") -> requests.Response:
        body = {"username": "alice", "password": password}
        return requests.post(f"{url}/login", json=body, timeout=30)

    with gunicorn(API, server_env(database_url), "--workers", "2") as other:
        answers = [log_in_at(url) for url in [live_server, other.url] * 3]
    assert [answer.status_code for answer in answers] == [401] * 5 + [429]
    assert answers[-1].headers["Retry-After"] == "1"

    time.sleep(1)
    with gunicorn(API, server_env(database_url), "--workers", "1") as restarted:
        sixth = log_in_at(restarted.url)
        refused = log_in_at(restarted.url, PASSWORD)  # even the right password waits
    # The restarted server counted on from the sixth attempt: the wait doubled.
    assert sixth.status_code == 401
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2"


@pytest.mark.sqlite_too
@pytest.mark.pgbouncer_too
def test_two_admins_deleting_each_other_at_once_leave_one(live_server, new_user, bearer, sql):
    admins = [new_user("ann", role="admin"), new_user("bea", role="admin")]
    headers = [bearer(admin) for admin in admins]

    def delete_the_other(number: int) -> int:
        other = admins[1 - number]
        url = f"{live_server}/user/{other.id}"
        return requests.delete(url, headers=headers[number], timeout=30).status_code

    statuses = sorted(run_together(2, delete_the_other))

    # The loser sees the winner's delete: 409 (last admin), or 401 if its token was
    # checked after its own user was gone.
    assert statuses in ([200, 401], [200, 409]), statuses
    assert sql("SELECT count(*) FROM users WHERE role = 'admin'") == [(1,)]
