"""Catalogue files at size, and beside other work: a round trip of 100,000 items in both
formats, `flask import-items` / `flask export-items`, a delete of the store while its import
runs, and two imports into one store at once."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import psycopg2
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy import text
from support.api import new_store
from support.catalogue import CSV, JSONL, imported, json_lines, send_file

from app import create_app
from catalogue.exporting import ESCAPED
from catalogue.lines import FORMULA_STARTS, unescaped
from catalogue.runs import GAVE_UP, MAX_ATTEMPTS, STORE_GONE, run_abandoned_imports, run_import
from config.settings import Settings
from db import db

ITEMS = 100_000
# Past what a size changes on the way (catalogue.importing's batches of 20,000 items,
# catalogue.exporting's fetches of 10,000 and its 1 MB in memory before a file), in a third
# of the time.
FEWER_ITEMS = 30_000
TAGS = 50


def numbers(first: int, last: int) -> str:
    """A table of the numbers from `first` to `last`, in either database."""
    return (
        f"(WITH RECURSIVE s(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM s"
        f" WHERE n < {last}) SELECT n FROM s) numbers"
    )


def seed_catalogue(engine, store_id: int, items: int) -> None:
    """`items` items, every other one described, each linked to two of TAGS tags, one of
    which has a "|" and a "\\" in its name."""
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO tags (name, store_id) SELECT 'tag ' || n"
            f" || CASE n WHEN 3 THEN ' a|b\\c' ELSE '' END, :store FROM {numbers(0, TAGS - 1)}",
            "INSERT INTO items (name, price, description, store_id)"
            " SELECT 'item ' || n, (n % 1000) + 0.25,"
            " CASE WHEN n % 2 = 1 THEN 'About \"item\" ' || n || ', in full' END, :store"
            f" FROM {numbers(1, items)}",
            "INSERT INTO items_tags (item_id, tag_id) SELECT i.id, t.id FROM items i"
            " JOIN tags t ON t.store_id = i.store_id"
            " AND t.id - (SELECT min(id) FROM tags WHERE store_id = :store)"
            f" IN (i.id % {TAGS}, (i.id + 1) % {TAGS}) WHERE i.store_id = :store",
        ):
            connection.execute(text(statement), {"store": store_id})


def catalogue(sql, store_id: int) -> list[tuple]:
    """The store's items with their tag names, comparable across stores. One join, not a
    subquery per item: just after an import, whose tables have no statistics yet, those
    took 40 s at 100,000 items on PostgreSQL."""
    return sql(
        "SELECT i.name, i.price, i.description, count(it.tag_id),"
        " min(t.name) || '/' || max(t.name)"
        " FROM items i LEFT JOIN items_tags it ON it.item_id = i.id"
        " LEFT JOIN tags t ON t.id = it.tag_id"
        " WHERE i.store_id = :store GROUP BY i.id ORDER BY i.id",
        store=store_id,
    )


# Each driver's COPY is tested at a smaller size (tests/api/test_catalogue.py). Each database
# and each format takes 100,000 items once (JSON lines on PostgreSQL, CSV on SQLite); the other
# two pairs FEWER_ITEMS, what the format's lines and the database's statements do the same.
@pytest.mark.slow
@pytest.mark.sqlite_too
@pytest.mark.one_driver
@pytest.mark.parametrize("media_type", [JSONL, CSV])
def test_a_store_of_100_000_items_exported_and_imported_is_the_same(
    app, client, engine, sql, database, media_type
):
    items = ITEMS if (database == "sqlite") == (media_type == CSV) else FEWER_ITEMS
    original = new_store(client)
    seed_catalogue(engine, original["id"], items)
    with client.get(
        f"/store/{original['id']}/item/export", headers={"Accept": media_type}
    ) as response:
        exported = response.get_data()
    copy = new_store(client, "Copy")

    status = imported(app, client, copy["id"], exported, media_type)

    assert status["state"] == "succeeded", status
    assert (status["items"], status["tags_created"], status["links"]) == (items, TAGS, 2 * items)
    assert catalogue(sql, copy["id"]) == catalogue(sql, original["id"])


@pytest.mark.sqlite_too
def test_the_commands_import_and_export_files(app, client, sql, tmp_path):
    store = new_store(client)
    source = tmp_path / "in.csv"
    source.write_text("name,price,tags\nNovel,9.99,fiction|paperback\nPen,1,\n")
    runner = app.test_cli_runner()

    result = runner.invoke(args=["import-items", str(store["id"]), str(source)])
    assert result.exit_code == 0, result.output
    assert "Imported 2 items into store 1, 2 new tags, 2 links." in result.output

    out = tmp_path / "out.jsonl"
    result = runner.invoke(args=["export-items", str(store["id"]), str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\n") == 2
    assert '"tags":["fiction","paperback"]' in out.read_text().replace(" ", "")

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "x", "price": -1}\n')
    result = runner.invoke(args=["import-items", str(store["id"]), str(bad)])
    assert result.exit_code == 1
    assert "line 1:" in result.output
    assert sql("SELECT count(*) FROM items") == [(2,)]


@pytest.mark.postgres_path
@pytest.mark.pgbouncer_too
def test_on_postgresql_the_import_waits_for_the_worker_as_a_job(client, sql):
    store = new_store(client)
    response = send_file(client, store["id"], json_lines({"name": "a", "price": 1}))
    assert response.get_json()["state"] == "queued"
    jobs = (
        "SELECT args->>'import_id' FROM procrastinate_jobs WHERE task_name = :task"
        " ORDER BY id DESC LIMIT 1"
    )
    assert sql(jobs, task="jobs.tasks.import_catalogue") == [(str(response.get_json()["id"]),)]
    assert sql("SELECT count(*) FROM item_import_chunks") == [(1,)]


def taken(client, store_id: int, lines: int) -> int:
    """An import of `lines` lines (each with a tag of its own) sent and kept, not yet run;
    its id."""
    items = ({"name": f"item {n}", "price": 1, "tags": [f"t{n}"]} for n in range(lines))
    response = send_file(client, store_id, json_lines(*items))
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def test_a_store_deleted_while_its_import_runs_makes_it_fail_with_nothing_left(
    app, client, sql, engine
):
    store = new_store(client)
    import_id = taken(client, store["id"], 40_000)
    with engine.connect() as blocker:
        # Holds the import's last look at its store until the delete is in.
        blocker.exec_driver_sql("BEGIN")
        blocker.exec_driver_sql(f"SELECT 1 FROM stores WHERE id = {store['id']} FOR NO KEY UPDATE")
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(run_in, app, import_id)
            wait_until(lambda: sql("SELECT lines_read FROM item_imports")[0][0] > 0)
            blocker.exec_driver_sql(
                "UPDATE stores SET deleted_at = now(), expire_time = now()"
                f" WHERE id = {store['id']}"
            )
            blocker.exec_driver_sql("COMMIT")
            # Its error, if it failed; a generous bound, as a loaded machine imports slowly.
            running.result(timeout=300)

    assert sql("SELECT state, message FROM item_imports") == [("failed", STORE_GONE)]
    assert sql("SELECT count(*) FROM items") == [(0,)]
    assert sql("SELECT count(*) FROM tags") == [(0,)]
    assert sql("SELECT count(*) FROM item_import_chunks") == [(0,)]


def test_two_imports_into_one_store_creating_the_same_tags_both_finish(app, client, sql):
    store = new_store(client)
    first, second = (taken(client, store["id"], 20_000) for _ in range(2))
    runs = [threading.Thread(target=run_in, args=(app, each)) for each in (first, second)]
    for each in runs:
        each.start()
    for each in runs:
        each.join(120)
    assert sql("SELECT state FROM item_imports ORDER BY id") == [("succeeded",), ("succeeded",)]
    assert sql("SELECT count(*), count(DISTINCT name) FROM items") == [(40_000, 20_000)]
    assert sql("SELECT count(*) FROM tags") == [(20_000,)]
    assert sql("SELECT count(*) FROM items_tags") == [(40_000,)]


def run_in(app: Flask, import_id: int) -> None:
    with app.app_context():
        assert run_import(import_id)
        db.session.remove()


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


DRIVER_ERRORS = (psycopg.Error, psycopg2.Error)


def test_an_import_ending_on_database_errors_is_run_again_then_given_up(
    app, client, sql, engine, database_url
):
    import_id = taken(client, new_store(client)["id"], lines=10)
    impatient = Settings(database_url=database_url, database_statement_timeout_ms=300)
    with engine.connect() as blocker:
        # Its rows wait for this lock past the statement timeout: a database error each run.
        blocker.exec_driver_sql("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        for _ in range(MAX_ATTEMPTS):
            # COPY runs on the driver's own cursor: its error, not SQLAlchemy's.
            with create_app(impatient, TESTING=True).app_context(), pytest.raises(DRIVER_ERRORS):
                run_import(import_id)
        blocker.rollback()
    assert sql("SELECT state, attempts FROM item_imports") == [("running", MAX_ATTEMPTS)]

    # The sweep's next run gives it up instead of failing a fourth time, and forever:
    # counted as failed, with no rate of lines, as it read none.
    def failed_imports() -> float:
        return REGISTRY.get_sample_value("catalogue_imports_total", {"state": "failed"}) or 0

    before, rate = failed_imports(), REGISTRY.get_sample_value("catalogue_import_lines_per_second")
    with app.app_context():
        assert run_import(import_id)
    assert failed_imports() == before + 1
    assert REGISTRY.get_sample_value("catalogue_import_lines_per_second") == rate
    assert sql("SELECT state, message FROM item_imports") == [("failed", GAVE_UP)]
    assert sql("SELECT count(*) FROM items") == [(0,)]
    assert sql("SELECT count(*) FROM item_import_chunks") == [(0,)]


def test_an_import_ending_on_an_error_leaves_the_sweep_to_run_the_others(
    client, sql, engine, database_url
):
    stuck, fine = new_store(client, "Stuck")["id"], new_store(client, "Fine")["id"]
    taken(client, stuck, lines=10)
    taken(client, fine, lines=10)
    with engine.begin() as connection:  # their jobs lost long ago
        connection.execute(text("UPDATE item_imports SET created_at = now() - interval '1 hour'"))
    impatient = Settings(database_url=database_url, database_statement_timeout_ms=300)
    with engine.connect() as blocker:
        # The stuck import's rows wait for its store past the statement timeout.
        blocker.execute(text("SELECT 1 FROM stores WHERE id = :id FOR UPDATE"), {"id": stuck})
        with create_app(impatient, TESTING=True).app_context():
            assert run_abandoned_imports() == 1
        blocker.rollback()
    assert sql("SELECT store_id, state, attempts FROM item_imports ORDER BY id") == [
        (stuck, "running", 1), (fine, "succeeded", 1),
    ]  # fmt: skip


# Texts that start with quotes and formulas' characters often; any text the database holds
# (no NUL, no lone surrogate: an item's refused).
STORABLE = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
CELL_TEXTS = st.tuples(st.text("'=+-@\t\r", max_size=4), st.text(STORABLE)).map("".join)


@pytest.mark.sqlite_too
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(CELL_TEXTS)
def test_the_exports_escaping_of_a_cell_is_undone_by_the_import_and_no_cell_starts_a_formula(
    engine, text_of_a_cell
):
    escaped = text(f"SELECT {ESCAPED.format(':cell')}")
    with engine.connect() as connection:
        cell = connection.scalar(escaped, {"cell": text_of_a_cell})
    assert cell[:1] not in FORMULA_STARTS
    assert unescaped(cell) == text_of_a_cell
