"""procrastinate's worker (worker.py, jobs/tasks.py) purges expired stores by itself, and
finishes a purge whose worker was killed in the middle, touching nothing of another store;
replicas share the work. It runs catalogue imports, and sweeps up those whose job was lost."""

import re
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import requests
from sqlalchemy import text
from support.api import new_item, new_store
from support.catalogue import JSONL, json_lines
from support.worker import worker

from db import db
from tools.throwaway_postgres import free_port

ITEMS = 200_000


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def catches(signal_number: int, process: subprocess.Popen) -> bool:
    """Whether the process has a handler of its own for the signal (Linux's SigCgt mask)."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    caught = int(re.search(r"SigCgt:\s+([0-9a-f]+)", status)[1], 16)
    return bool(caught >> (signal_number - 1) & 1)


def test_the_worker_purges_expired_stores_and_finishes_after_being_killed(app, client, sql, engine):
    kept = new_store(client, "Kept")
    kept_item = new_item(client, kept["id"])
    doomed = new_store(client, "Doomed")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO items (name, price, store_id)"
            f" SELECT 'item ' || n, 1, {doomed['id']} FROM generate_series(1, {ITEMS}) n"
        )
    client.delete(f"/store/{doomed['id']}")
    assert client.post(f"/store/{doomed['id']}/purge").status_code == 202
    items_of_doomed = f"SELECT count(*) FROM items WHERE store_id = {doomed['id']}"
    url = app.config["SQLALCHEMY_DATABASE_URI"]

    first = worker(url)
    try:
        wait_for(lambda: sql(items_of_doomed)[0][0] < ITEMS, first, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    left = sql(items_of_doomed)[0][0]
    assert 0 < left < ITEMS, "the worker was not killed mid-purge"

    # Two replicas now, as `docker compose up --scale worker=2` runs them: they share the
    # periodic job and the store's batches, and neither fails.
    replicas = [worker(url), worker(url)]
    try:
        for replica in replicas:
            wait_for(lambda: sql("SELECT count(*) FROM stores") == [(1,)], replica, timeout=60)
        # The purge may end before a replica is up: one still starting dies of SIGTERM
        # instead of stopping, as procrastinate does once it handles the signal.
        for replica in replicas:
            wait_for(partial(catches, signal.SIGTERM, replica), replica, timeout=60)
    finally:
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            replica.wait(timeout=30)
    assert [replica.returncode for replica in replicas] == [0, 0]
    failed = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'"
    assert sql(failed) == [(0,)]

    assert sql(f"SELECT count(*) FROM items WHERE store_id = {doomed['id']}") == [(0,)]
    assert sql("SELECT id FROM items") == [(kept_item["id"],)]
    shown = client.get(f"/store/{kept['id']}").get_json()
    assert [item["id"] for item in shown["items"]] == [kept_item["id"]]


def test_the_worker_runs_imports_and_sweeps_up_one_whose_job_was_lost(app, client, sql):
    store = new_store(client)
    body = json_lines(*({"name": f"item {n}", "price": 1, "tags": ["new"]} for n in range(5000)))
    sent = client.post(f"/store/{store['id']}/item/import", data=body, content_type=JSONL)
    assert sent.status_code == 202
    # An import whose deferral never happened (the API died right after its commit).
    lost = client.post(f"/store/{store['id']}/item/import", data=body, content_type=JSONL)
    with app.app_context():
        db.session.execute(
            text("DELETE FROM procrastinate_jobs WHERE args->>'import_id' = :id"),
            {"id": str(lost.get_json()["id"])},
        )
        db.session.execute(text("UPDATE item_imports SET created_at = now() - interval '1 hour'"))
        db.session.commit()

    port = free_port()
    running = worker(app.config["SQLALCHEMY_DATABASE_URI"], WORKER_METRICS_PORT=str(port))
    try:
        states = "SELECT state FROM item_imports ORDER BY id"
        wait_for(lambda: sql(states) == [("succeeded",), ("succeeded",)], running, timeout=60)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        running.terminate()
        running.wait(timeout=30)
    assert client.get(sent.headers["Location"]).get_json()["items"] == 5000
    assert 'catalogue_imports_total{state="succeeded"} 2.0' in metrics
    assert "catalogue_import_lines_total 10000.0" in metrics
    assert sql("SELECT count(*), count(DISTINCT store_id) FROM items") == [(10_000, 1)]
    assert sql("SELECT count(*) FROM tags") == [(1,)]
