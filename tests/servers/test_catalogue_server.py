"""Catalogue files through the real server (gunicorn, 4 workers), straight to PostgreSQL
and through PgBouncer in transaction mode, and on SQLite: the file taken in pieces, the job
deferred, the export streamed from a server-side cursor."""

import contextlib
import json
import socket
import time
from urllib.parse import urlsplit

import pytest
from support.catalogue import JSONL, json_lines
from support.http import server_env

from catalogue.runs import CHUNK_BYTES, run_import
from db import db
from tools.gunicorn_server import API, gunicorn
from tools.throwaway_patroni import wait_for

# Each test on SQLite too, but the one that reads pg_stat_activity.
pytestmark = pytest.mark.pgbouncer_too

# A file of several pieces (catalogue.runs.CHUNK_BYTES), with lines across their seams.
ITEMS = 15_000


@pytest.mark.sqlite_too
def test_a_catalogue_goes_in_and_out_through_the_server(app, live_server, http, sql):
    store = http.post(f"{live_server}/store", json={"name": "Served"}).json()
    items = [
        {"name": f"item {n}", "price": n % 100 + 0.5,
         "description": f"Number {n}." if n % 2 else None,
         "tags": [f"tag {n % 7}", f"tag {n % 5}"] if n % 3 else []}
        for n in range(ITEMS)
    ]  # fmt: skip
    body = json_lines(*items)
    sent = http.post(
        f"{live_server}/store/{store['id']}/item/import", data=body,
        headers={"Content-Type": JSONL}, timeout=120,
    )  # fmt: skip
    assert sent.status_code == 202, sent.text
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            jobs = "SELECT count(*) FROM procrastinate_jobs WHERE args->>'import_id' = :id"
            assert sql(jobs, id=str(sent.json()["id"]))[0][0] >= 1  # deferred by the server
            pieces = -(-len(body) // CHUNK_BYTES)
            assert pieces > 1
            assert sql("SELECT count(*) FROM item_import_chunks") == [(pieces,)]
            assert run_import(sent.json()["id"])  # the worker's part
    status = http.get(f"{live_server}{sent.headers['Location']}").json()
    assert status["state"] == "succeeded", status
    assert (status["items"], status["tags_created"]) == (ITEMS, 7)

    exported = http.get(
        f"{live_server}/store/{store['id']}/item/export", stream=True, timeout=120,
        headers={"Accept": JSONL},
    )  # fmt: skip
    assert exported.status_code == 200
    lines = [json.loads(line) for line in exported.iter_lines()]
    assert [line["name"] for line in lines] == [item["name"] for item in items]
    assert [line["price"] for line in lines] == [item["price"] for item in items]
    assert [line["description"] for line in lines] == [item["description"] for item in items]
    assert [set(line["tags"]) for line in lines] == [set(item["tags"]) for item in items]


def raw_request(url: str, head: str, body: bytes = b"", receive_buffer: int = 0) -> socket.socket:
    """A connection to the server at `url` that sent `head` (the request line and headers,
    without the blank line) and `body`, whatever its Content-Length says."""
    parsed = urlsplit(url)
    connection = socket.socket()
    if receive_buffer:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    connection.connect((parsed.hostname, parsed.port))
    connection.sendall(head.encode() + b"\r\n\r\n" + body)
    return connection


def upload_head(store_id: int, size: int | None, headers: dict[str, str]) -> str:
    length = "Transfer-Encoding: chunked" if size is None else f"Content-Length: {size}"
    lines = [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join([
        f"POST /store/{store_id}/item/import HTTP/1.1", "Host: localhost",
        f"Content-Type: {JSONL}", length, *lines,
    ])  # fmt: skip


@pytest.mark.sqlite_too
def test_a_cut_off_upload_keeps_nothing_and_its_key_serves_the_whole_file(
    app, live_server, http, sql, admin_headers
):
    store = http.post(f"{live_server}/store", json={"name": "Cut"}).json()
    body = json_lines(*({"name": f"item {n}", "price": 1} for n in range(20_000)))
    key = {"Idempotency-Key": "cut-off-upload", **admin_headers}
    chunk = f"{len(body) // 10:x}\r\n".encode() + body[: len(body) // 10] + b"\r\n"
    for size, sent in ((len(body), body[: len(body) // 10]), (None, chunk)):
        with raw_request(live_server, upload_head(store["id"], size, key), sent) as connection:
            connection.shutdown(socket.SHUT_WR)  # the client goes away
            answer = connection.makefile("rb").read()
        assert not answer.startswith(b"HTTP/1.1 2"), answer
        assert sql("SELECT count(*) FROM item_imports") == [(0,)]
        assert sql("SELECT count(*) FROM items") == [(0,)]

    sent = http.post(
        f"{live_server}/store/{store['id']}/item/import", data=body,
        headers={"Content-Type": JSONL, "Idempotency-Key": "cut-off-upload"}, timeout=120,
    )  # fmt: skip
    assert sent.status_code == 202, sent.text
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            assert run_import(sent.json()["id"])
    status = http.get(f"{live_server}{sent.headers['Location']}").json()
    assert (status["state"], status["items"]) == ("succeeded", 20_000), status


def open_transactions(sql) -> list[tuple]:
    """Sessions of this database, other than the asking one, inside a transaction."""
    return sql(
        "SELECT state, query FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
    )


# 12 s of stalls and an export of 12 MB: psycopg2 directly and psycopg through PgBouncer.
# What a driver and PgBouncer change on this way, the upload in pieces and the export from a
# server-side cursor, the round trip above takes on every path; the transactions' ends here
# are the app's own (it spools the rows, then streams them), whichever connection.
@pytest.mark.each_driver_once
def test_no_transaction_waits_on_a_slow_upload_or_a_stalled_export(
    app, database, database_url, http, sql, admin_headers
):
    stall = 3
    env = server_env(database_url, CLIENT_STALL_SECONDS=str(stall))
    with gunicorn(API, env, "--workers", "1") as server:
        store = http.post(f"{server.url}/store", json={"name": "Slow"}).json()
        body = json_lines(*({"name": f"item {n}", "price": 1, "description": "d" * 1_000}
                            for n in range(12_000)))  # fmt: skip
        head = upload_head(store["id"], len(body), admin_headers)
        with raw_request(server.url, head, body[:100_000]) as connection:
            time.sleep(1)  # the server waits for the rest
            assert open_transactions(sql) == []
            connection.sendall(body[100_000:])
            answer = connection.makefile("rb").readline()
        assert answer.startswith(b"HTTP/1.1 202"), answer
        import_id = int(sql("SELECT max(id) FROM item_imports")[0][0])
        with app.app_context():
            assert run_import(import_id)

        # One that stalls past the bound is cut off: 400, nothing kept, the worker freed.
        with raw_request(server.url, head, body[:100_000]) as connection:
            started = time.monotonic()
            answer = connection.makefile("rb").readline()
            assert time.monotonic() - started < stall + 5
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert sql("SELECT count(*) FROM item_imports") == [(1,)]

        head = f"GET /store/{store['id']}/item/export HTTP/1.1\r\nHost: localhost"
        with raw_request(server.url, head, receive_buffer=4096) as connection:
            # The client reads nothing, and the export's transaction ends all the same, once
            # its rows are spooled (under load, past a second).
            wait_for(lambda: open_transactions(sql) == [], "the export's transaction ended", 30)
            started = time.monotonic()
            # The worker is freed within the bound: it serves the next request.
            assert http.get(f"{server.url}/store/{store['id']}", timeout=30).ok
            assert time.monotonic() - started < stall + 5
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while piece := connection.recv(1 << 16):
                    received += piece
        assert len(received) < len(body)  # cut off
