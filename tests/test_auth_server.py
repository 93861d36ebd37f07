"""Auth under the real server: what one worker or instance decides, all of them know."""

import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
from helpers import PASSWORD, bearer_of, run_together, server_env, sign_up

from tools.gunicorn_server import API, gunicorn
from tools.throwaway_postgres import free_port


def me(base_url: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{base_url}/user/me", headers=headers, timeout=30)


@pytest.mark.sqlite_too
@pytest.mark.pgbouncer_too
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
        # Even threads race for the username, odd ones for the email.
        username = "same" if number % 2 == 0 else f"user{number}"
        email = "same@example.com" if number % 2 else f"user{number}@example.com"
        account = {"username": username, "email": email, "password": PASSWORD}
        return requests.post(f"{live_server}/register", json=account, timeout=60).status_code

    statuses = Counter(run_together(16, register))

    assert statuses == {201: 2, 409: 14}  # one winner of each race
    assert sql("SELECT count(*) FROM users WHERE username = 'same'") == [(1,)]
    assert sql("SELECT count(*) FROM users WHERE email = 'same@example.com'") == [(1,)]


@pytest.mark.sqlite_too
@pytest.mark.pgbouncer_too
def test_a_refresh_token_raced_by_eight_clients_is_used_once(live_server, app):
    sign_up(live_server, "alice")
    login = requests.post(
        f"{live_server}/login", json={"username": "alice", "password": PASSWORD}, timeout=30
    ).json()
    headers = bearer_of(login["refresh_token"])

    responses = run_together(
        8, lambda _n: requests.post(f"{live_server}/refresh", headers=headers, timeout=30)
    )

    assert Counter(response.status_code for response in responses) == {200: 1, 401: 7}


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A throwaway Redis server, as docker-compose.yml gives the API for rate limits."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_with_redis_the_login_limit_holds_across_workers_and_instances(database_url, redis_url):
    env = server_env(database_url, RATELIMIT_STORAGE_URI=redis_url, LOGIN_RATE_LIMIT="6/minute")
    wrong = {"username": "alice", "password": "wrong password"}
    with (
        gunicorn(API, env, "--workers", "3") as first,
        gunicorn(API, env, "--workers", "1") as second,
    ):
        sign_up(first.url, "alice")  # one login: 5 attempts left
        statuses = [
            requests.post(f"{server.url}/login", json=wrong, timeout=30).status_code
            for server in (first, second, first, second, first, second)
        ]
    assert statuses == [401] * 5 + [429]


def test_without_redis_logins_still_work_and_are_still_limited(database_url):
    nobody_listens = f"redis://127.0.0.1:{free_port()}"
    env = server_env(
        database_url, RATELIMIT_STORAGE_URI=nobody_listens, LOGIN_RATE_LIMIT="3/minute"
    )
    wrong = {"username": "alice", "password": "wrong password"}
    with gunicorn(API, env, "--workers", "1") as server:
        sign_up(server.url, "alice")  # a login that works: 2 attempts left
        statuses = [
            requests.post(f"{server.url}/login", json=wrong, timeout=30).status_code
            for _ in range(3)
        ]
    assert statuses == [401, 401, 429]


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
