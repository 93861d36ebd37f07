"""Retries and concurrent edits against gunicorn with 4 workers, on every database and
driver, also through PgBouncer: a retried POST writes once, and of two edits made from the
same read, one is refused."""

import json
import socket
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import text
from support.http import metric_total, run_together

from web.idempotency import REPLAYED

pytestmark = [pytest.mark.sqlite_too, pytest.mark.pgbouncer_too]


def send_and_hang_up(base_url: str, path: str, body: dict, headers: dict[str, str]) -> None:
    """Send a POST and close the connection at once, before any answer: as a client whose
    connection drops, or whose timeout is shorter than the request."""
    address = urlsplit(base_url)
    data = json.dumps(body).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {address.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection((address.hostname, address.port)) as connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)


def post_until_answered(
    http: requests.Session, url: str, **kwargs
) -> tuple[requests.Response, int]:
    """POST, and again after Retry-After while the request with the key still runs; the
    answer and how many POSTs it took."""
    for tries in range(1, 101):
        response = http.post(url, **kwargs)
        if response.status_code != 409:
            return response, tries
        time.sleep(float(response.headers["Retry-After"]))
    raise AssertionError("still running after 100 tries")


def server_counts(base_url: str) -> tuple[float, float]:
    """From the workers' /metrics: POST /item requests answered, database connections in use."""
    exposed = requests.get(f"{base_url}/metrics", timeout=10).text
    posts = metric_total(exposed, "http_requests_total", method="POST", route="/item")
    return posts, metric_total(exposed, "db_connections_in_use")


def wait_until_server_counts(base_url: str, expected: tuple[float, float]) -> None:
    deadline = time.monotonic() + 30
    while (counts := server_counts(base_url)) != expected:
        assert time.monotonic() < deadline, (counts, expected)
        time.sleep(0.1)


def test_a_client_that_hangs_up_and_retries_writes_once(live_server, http, sql):
    store = http.post(f"{live_server}/store", json={"name": "Flaky"}).json()
    body = {"name": "Once", "price": 3, "store_id": store["id"]}
    key = {"Idempotency-Key": "hang-up", **http.headers}
    posts_before, _ = server_counts(live_server)
    for _ in range(5):
        send_and_hang_up(live_server, "/item", body, key)

    answer, tries = post_until_answered(http, f"{live_server}/item", json=body, headers=key)

    assert answer.status_code == 201
    assert answer.headers[REPLAYED] == "true"
    assert sql("SELECT id FROM items WHERE name = 'Once'") == [(answer.json()["id"],)]
    # Hung-up requests can still be running; the next test's TRUNCATE would deadlock with
    # one that reads the keys after it has read the users.
    wait_until_server_counts(live_server, (posts_before + 5 + tries, 0))


def test_eight_clients_racing_with_one_key_write_once(live_server, http, sql):
    store = http.post(f"{live_server}/store", json={"name": "Race"}).json()
    body = {"name": "Raced", "price": 3, "store_id": store["id"]}

    def post(_number: int) -> requests.Response:
        return requests.post(
            f"{live_server}/item",
            json=body,
            headers={**http.headers, "Idempotency-Key": "racing"},
            timeout=30,
        )

    answers = run_together(8, post)

    statuses = Counter(
        (a.status_code, a.headers.get(REPLAYED)) for a in answers if a.status_code != 409
    )
    assert statuses[(201, None)] == 1, statuses
    assert set(statuses) <= {(201, None), (201, "true")}
    for refused in (a for a in answers if a.status_code == 409):
        assert refused.headers["Retry-After"]
    [(item_id,)] = sql("SELECT id FROM items WHERE name = 'Raced'")
    assert {a.json()["id"] for a in answers if a.status_code == 201} == {item_id}


def test_a_key_reused_after_it_expired_runs_again(live_server, http, sql, engine):
    store = http.post(f"{live_server}/store", json={"name": "Old"}).json()
    body = {"name": "Twice", "price": 3, "store_id": store["id"]}
    key = {"Idempotency-Key": "expiring"}
    first = http.post(f"{live_server}/item", json=body, headers=key)
    with engine.begin() as connection:
        connection.execute(text("UPDATE idempotency_keys SET expires_at = 0"))

    second = http.post(f"{live_server}/item", json=body, headers=key)

    assert (first.status_code, second.status_code) == (201, 201)
    assert REPLAYED not in second.headers
    assert len(sql("SELECT id FROM items WHERE name = 'Twice'")) == 2


@pytest.mark.parametrize("kind", ["store", "item"])
def test_of_eight_edits_from_one_read_one_lands(live_server, http, sql, kind):
    store = http.post(f"{live_server}/store", json={"name": "Edited"}).json()
    item = http.post(
        f"{live_server}/item", json={"name": "Edited", "price": 1, "store_id": store["id"]}
    ).json()
    url = f"{live_server}/{kind}/{(store if kind == 'store' else item)['id']}"
    for round_number in range(3):
        read = http.get(url)

        def edit(
            number: int, etag: str = read.headers["ETag"], round_number: int = round_number
        ) -> requests.Response:
            return requests.put(
                url,
                json={"name": f"edit {round_number}.{number}"},
                headers={**http.headers, "If-Match": etag},
                timeout=30,
            )

        answers = run_together(8, edit)

        assert Counter(a.status_code for a in answers) == {200: 1, 412: 7}
        [landed] = [a for a in answers if a.status_code == 200]
        current = http.get(url)
        assert current.json()["name"] == landed.json()["name"]
        # Every refusal names the ETag of what is there now, the winner's answer.
        for refused in (a for a in answers if a.status_code == 412):
            assert refused.headers["ETag"] == landed.headers["ETag"] == current.headers["ETag"]
