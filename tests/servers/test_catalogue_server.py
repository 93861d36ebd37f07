"""Catalogue files through the real server (gunicorn, 4 workers), straight to PostgreSQL
and through PgBouncer in transaction mode, and on SQLite: the file taken in pieces, the job
deferred, the export streamed from a server-side cursor."""

import json

import pytest
from support.catalogue import JSONL, json_lines

from catalogue.runs import CHUNK_BYTES, run_import
from db import db

pytestmark = [pytest.mark.sqlite_too, pytest.mark.pgbouncer_too]

# A file of several pieces (catalogue.runs.CHUNK_BYTES), with lines across their seams.
ITEMS = 15_000


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
