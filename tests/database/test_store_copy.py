"""One store copied from a restored copy of the database into the live one (backups/store_copy):
the copy is a second database on the suite's server, holding what the live one had once."""

import json
from collections.abc import Iterator

import psycopg
import pytest
from conftest import migrated_app
from sqlalchemy import make_url

from backups.store_copy import StoreNotInCopyError, copy_store
from db import db

pytestmark = pytest.mark.one_driver

STORE_ROWS = {
    "stores": "SELECT id, name, owner_id, deleted_at, created_at, updated_at FROM stores"
    " WHERE id = %(store)s",
    "items": "SELECT id, name, price, description, sku, created_at, updated_at FROM items"
    " WHERE store_id = %(store)s ORDER BY id",
    "tags": "SELECT id, name, created_at FROM tags WHERE store_id = %(store)s ORDER BY id",
    "items_tags": "SELECT item_id, tag_id FROM items_tags JOIN items ON items.id = item_id"
    " WHERE store_id = %(store)s ORDER BY 1, 2",
}


def connect(url) -> psycopg.Connection:
    return psycopg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
    )


@pytest.fixture
def live(app) -> Iterator[psycopg.Connection]:
    with app.app_context():
        url = db.engine.url
    with connect(url) as connection:
        yield connection


@pytest.fixture
def copy(new_database) -> Iterator[psycopg.Connection]:
    """A migrated database holding store 7 as it was: 5 items (one without a sku), 2 tags, 3
    links, owned by user 1."""
    migrated_app(new_database.set(drivername="postgresql+psycopg").render_as_string(False))
    with connect(new_database) as connection:
        connection.execute(
            "INSERT INTO users (id, username, email, password_hash) VALUES"
            " (1, 'owner', 'owner@example.com', '!')"
        )
        connection.execute("INSERT INTO stores (id, name, owner_id) VALUES (7, 'Lamps', 1)")
        connection.execute(
            "INSERT INTO items (id, name, price, sku, description, store_id)"
            " SELECT n, 'lamp ' || n, n + 0.5, CASE WHEN n < 15 THEN 'L-' || n END,"
            " E'tab\\there\\nnewline', 7 FROM generate_series(11, 15) n"
        )
        connection.execute(
            "INSERT INTO tags (id, name, store_id) VALUES (3, 'new', 7), (4, 'sale', 7)"
        )
        connection.execute("INSERT INTO items_tags VALUES (11, 3), (12, 3), (12, 4)")
        yield connection


def rows(connection: psycopg.Connection, store_id: int) -> dict[str, list[tuple]]:
    return {
        table: connection.execute(query, {"store": store_id}).fetchall()
        for table, query in STORE_ROWS.items()
    }


def test_a_purged_store_comes_back_whole_under_its_own_ids(copy, live):
    live.execute(
        "INSERT INTO users (id, username, email, password_hash) VALUES"
        " (1, 'owner', 'owner@example.com', '!')"
    )
    copy.execute("UPDATE stores SET deleted_at = now(), expire_time = now() WHERE id = 7")
    streamed = []

    copied = copy_store(copy, live, 7, progress=streamed.append)

    assert (copied.store_id, copied.name, copied.owner_dropped) == (7, "Lamps", False)
    assert copied.rows == {"items": 5, "tags": 2, "items_tags": 3}
    assert copied.renumbered == {"items": [], "tags": []}
    assert sum(streamed) == 10
    expected = rows(copy, 7)
    expected["stores"] = [(7, "Lamps", 1, None, *expected["stores"][0][4:])]  # live again
    assert rows(live, 7) == expected
    # One event says it came back, with what came with it, as GET /store/7 shows it.
    [(data, counts)] = live.execute(
        "SELECT data, counts FROM events WHERE type = 'store.restored' AND store_id = 7"
    ).fetchall()
    assert json.loads(counts) == {"items": 5, "tags": 2, "links": 3, "exact": True}
    assert json.loads(data)["name"] == "Lamps"
    assert len(json.loads(data)["items"]) == 5
    # The sequences hand out ids past those copied.
    new_item = live.execute(
        "INSERT INTO items (name, price, store_id) VALUES ('more', 1, 7) RETURNING id"
    ).fetchone()
    assert new_item[0] > 15


def test_ids_taken_since_get_new_ones_and_the_links_follow(copy, live):
    live.execute("INSERT INTO stores (id, name) VALUES (7, 'Other')")
    live.execute("INSERT INTO items (id, name, price, store_id) VALUES (12, 'taken', 1, 7)")
    live.execute("INSERT INTO tags (id, name, store_id) VALUES (4, 'taken', 7)")
    for table in ("stores", "items", "tags"):
        live.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 100)")

    copied = copy_store(copy, live, 7)

    assert copied.store_id == 101
    assert copied.renumbered == {"stores": [(7, 101)], "items": [(12, 101)], "tags": [(4, 101)]}
    assert copied.owner_dropped  # user 1 is not in the live database
    before, now = rows(copy, 7), rows(live, 101)
    items = {item[0]: item[1:] for item in now["items"]}
    assert {item[0]: item[1:] for item in before["items"]} == {
        {101: 12}.get(item_id, item_id): rest for item_id, rest in items.items()
    }
    assert now["items_tags"] == sorted(
        ({12: 101}.get(item, item), {4: 101}.get(tag, tag)) for item, tag in before["items_tags"]
    )
    assert rows(live, 7)["items"][0][1] == "taken"  # the live rows untouched


def test_a_name_taken_by_a_live_store_refuses_all_unless_renamed(copy, live):
    live.execute("INSERT INTO stores (id, name) VALUES (1, 'Lamps')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        copy_store(copy, live, 7)
    assert live.execute("SELECT count(*) FROM items").fetchone() == (0,)
    assert copy_store(copy, live, 7, name="Lamps (restored)").name == "Lamps (restored)"
    assert live.execute("SELECT name FROM stores WHERE id = 7").fetchone() == ("Lamps (restored)",)


def test_a_copy_from_before_a_migration_brings_what_it_had(copy, live):
    copy.execute("DROP INDEX uq_items_store_id_sku")
    copy.execute("ALTER TABLE items DROP COLUMN sku")
    copy_store(copy, live, 7)
    assert live.execute("SELECT count(*), count(sku) FROM items").fetchone() == (5, 0)


def test_a_store_the_copy_never_had_is_named(copy, live):
    with pytest.raises(StoreNotInCopyError):
        copy_store(copy, live, 8)
