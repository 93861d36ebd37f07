"""What items carry besides their name, price and description: a sku, unique among the
store's items; and on stores, items and tags, the times they were created and last changed,
set by the database, in every representation; the items changed since a time, for clients
that sync."""

import csv
import io
import json
import re
import time
from urllib.parse import quote

import pytest
from sqlalchemy import event, text
from support.api import assert_error, new_item, new_store, new_tag, times
from support.catalogue import CSV, JSONL, imported, json_lines

from catalogue.runs import TAKEN_MEANWHILE
from db import db

pytestmark = pytest.mark.sqlite_too

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def wait_a_tick() -> None:
    """Past the clock's resolution (SQLite's: a millisecond)."""
    time.sleep(0.005)


def test_an_items_sku_is_kept_and_shown(client):
    store = new_store(client)
    item = new_item(client, store["id"], sku="BK-1")
    assert item["sku"] == "BK-1"
    assert client.get(f"/item/{item['id']}").get_json()["sku"] == "BK-1"
    assert client.get(f"/store/{store['id']}").get_json()["items"][0]["sku"] == "BK-1"
    changed = client.put(f"/item/{item['id']}", json={"sku": None})
    assert changed.get_json()["sku"] is None


def test_a_sku_is_up_to_64_characters(client):
    store = new_store(client)
    assert new_item(client, store["id"], sku="x" * 64)["sku"] == "x" * 64
    body = {"name": "A", "price": 1, "store_id": store["id"], "sku": "x" * 65}
    assert_error(client.post("/item", json=body), 422)


def test_a_sku_taken_in_the_store_is_a_409_naming_it_and_free_in_another(client, sql):
    books, comics = new_store(client, "Books"), new_store(client, "Comics")
    new_item(client, books["id"], sku="A-1")
    body = {"name": "B", "price": 1, "store_id": books["id"], "sku": "A-1"}
    assert_error(client.post("/item", json=body), 409, "'A-1'")
    assert new_item(client, comics["id"], sku="A-1")["sku"] == "A-1"
    # Any number of items have none.
    new_item(client, books["id"])
    new_item(client, books["id"])
    assert sql("SELECT count(*) FROM items WHERE sku IS NULL") == [(2,)]


def test_a_sku_taken_by_put_is_a_409_naming_it_not_a_500(client, sql):
    store = new_store(client)
    new_item(client, store["id"], sku="A-1")
    other = new_item(client, store["id"], sku="A-2")
    assert_error(client.put(f"/item/{other['id']}", json={"sku": "A-1"}), 409, "'A-1'")
    assert sql("SELECT sku FROM items ORDER BY id") == [("A-1",), ("A-2",)]


def test_a_sku_clash_of_an_item_deleted_meanwhile_is_a_404_not_a_500(app, client, sql, engine):
    # A DELETE waiting on the PUT's lock commits once the clash rolls the PUT back: here, at
    # that very moment.
    store = new_store(client)
    new_item(client, store["id"], sku="A-1")
    other = new_item(client, store["id"], sku="A-2")

    def delete_it(_session, _transaction) -> None:
        committed(engine, "DELETE FROM items WHERE id = :id", id=other["id"])

    with app.app_context():
        event.listen(db.session, "after_soft_rollback", delete_it, once=True)
    try:
        answer = client.put(f"/item/{other['id']}", json={"sku": "A-1"})
    finally:
        with app.app_context():
            if event.contains(db.session, "after_soft_rollback", delete_it):
                event.remove(db.session, "after_soft_rollback", delete_it)
    assert_error(answer, 404, f"Item {other['id']} not found")
    assert sql("SELECT sku FROM items ORDER BY id") == [("A-1",)]


def test_times_are_set_by_the_database_and_shown_everywhere_alike(client, sql):
    store = new_store(client)
    item = new_item(client, store["id"])
    tag = new_tag(client, store["id"])
    shown = {
        "stores": [store, client.get(f"/store/{store['id']}").get_json()],
        "items": [item, client.get(f"/item/{item['id']}").get_json(),
                  client.get(f"/store/{store['id']}").get_json()["items"][0]],
        "tags": [tag, client.get(f"/tag/{tag['id']}").get_json(),
                 client.get(f"/store/{store['id']}").get_json()["tags"][0]],
    }  # fmt: skip
    for table, representations in shown.items():
        row = times(sql, table, 1)
        assert TIMESTAMP.match(row["created_at"])
        assert row["created_at"] == row["updated_at"]
        for representation in representations:
            assert {key: representation[key] for key in row} == row


def test_updated_at_moves_on_every_change_and_only_then(client, sql, engine):
    store = new_store(client)
    item = new_item(client, store["id"])
    wait_a_tick()
    changed = client.put(f"/item/{item['id']}", json={"price": 2}).get_json()
    assert changed["created_at"] == item["created_at"] < changed["updated_at"]
    assert times(sql, "items", item["id"]) == {
        "created_at": changed["created_at"],
        "updated_at": changed["updated_at"],
    }
    # The same values again change nothing.
    assert client.put(f"/item/{item['id']}", json={"price": 2}).get_json() == changed
    wait_a_tick()
    # An UPDATE the ORM never saw, as any SQL client sends it: the database sets it still.
    committed(engine, "UPDATE items SET name = 'Renamed'")
    assert times(sql, "items", item["id"])["updated_at"] > changed["updated_at"]
    wait_a_tick()
    renamed = client.put(f"/store/{store['id']}", json={"name": "Other"}).get_json()
    assert renamed["updated_at"] > store["updated_at"]
    assert times(sql, "stores", store["id"])["updated_at"] == renamed["updated_at"]


def committed(engine, statement: str, **params) -> None:
    """Run `statement` in a transaction of its own, committed: plain SQL, past the ORM."""
    with engine.begin() as connection:
        connection.execute(text(statement), params)


def test_an_export_holds_sku_and_times_and_imports_again(app, client, sql):
    store = new_store(client)
    new_item(client, store["id"], "Novel", 9.5, sku="N-1")
    item = times(sql, "items", 1)
    for media_type in (JSONL, CSV):
        exported = client.get(f"/store/{store['id']}/item/export", headers={"Accept": media_type})
        body = exported.get_data()
        if media_type == JSONL:
            assert json.loads(body) == {
                "name": "Novel", "price": 9.5, "description": None, "sku": "N-1", **item,
                "tags": [],
            }  # fmt: skip
        else:
            (row,) = csv.DictReader(io.StringIO(body.decode()))
            assert float(row.pop("price")) == 9.5
            assert row == {"name": "Novel", "description": "", "sku": "N-1", **item, "tags": ""}
        copy = new_store(client, f"Copy {media_type}")
        status = imported(app, client, copy["id"], body, media_type)
        assert status["state"] == "succeeded", status
        again = client.get(f"/store/{copy['id']}").get_json()["items"][0]
        assert again["sku"] == "N-1"
        # Its times are the import's, not the file's.
        assert again["created_at"] > item["created_at"]


def test_an_import_with_a_sku_twice_or_taken_names_the_lines_and_writes_nothing(app, client, sql):
    store = new_store(client)
    new_item(client, store["id"], sku="TAKEN")
    body = json_lines(
        {"name": "A", "price": 1, "sku": "X"},
        {"name": "B", "price": 1, "sku": "X"},
        {"name": "C", "price": 1, "sku": "TAKEN"},
        {"name": "D", "price": 1},
    )
    status = imported(app, client, store["id"], body)
    assert status["state"] == "failed"
    assert status["errors"] == [
        {"line": 2, "errors": {"sku": ["'X' is on line 1 too."]}},
        {"line": 3, "errors": {"sku": ["Item 1 of the store has the sku 'TAKEN'."]}},
    ]
    assert sql("SELECT count(*) FROM items") == [(1,)]


SNATCHER = {
    "postgresql": (
        "CREATE FUNCTION snatch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF pg_trigger_depth() = 1 THEN INSERT INTO items (name, price, store_id, sku)"
        " VALUES ('Snatcher', 1, NEW.store_id, NEW.sku); END IF; RETURN NEW; END $$",
        "CREATE TRIGGER snatch BEFORE INSERT ON items FOR EACH ROW"
        " WHEN (NEW.sku IS NOT NULL) EXECUTE FUNCTION snatch()",
    ),
    "sqlite": (
        "CREATE TRIGGER snatch BEFORE INSERT ON items FOR EACH ROW"
        " WHEN NEW.sku IS NOT NULL AND NEW.name != 'Snatcher' BEGIN"
        " INSERT INTO items (name, price, store_id, sku)"
        " VALUES ('Snatcher', 1, NEW.store_id, NEW.sku); END",
    ),
}
UNSNATCHER = {
    "postgresql": ("DROP TRIGGER snatch ON items", "DROP FUNCTION snatch()"),
    "sqlite": ("DROP TRIGGER snatch",),
}


def test_a_sku_taken_while_the_import_writes_fails_it_with_nothing_written(
    app, client, sql, engine
):
    """Another item takes the file's sku between the import's check and its write: the
    unique index decides, and the import fails (not a fault retried until given up)."""
    store = new_store(client)
    for statement in SNATCHER[engine.dialect.name]:
        committed(engine, statement)
    try:
        status = imported(
            app, client, store["id"], json_lines({"name": "A", "price": 1, "sku": "X"})
        )
    finally:
        for statement in UNSNATCHER[engine.dialect.name]:
            committed(engine, statement)
    assert (status["state"], status["message"]) == ("failed", TAKEN_MEANWHILE)
    assert sql("SELECT count(*) FROM items") == [(0,)]


def items_changed_after(client, url: str) -> list[dict]:
    """Every item of the list, page by page, following the Link header."""
    seen = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.get_json()
        seen += response.get_json()
        link = response.headers.get("Link")
        url = link[link.index("<") + 1 : link.index(">")] if link else None
    return seen


@pytest.mark.parametrize("listing", ["/item", "/store/{store}/item", "/item?store_id={store}"])
def test_updated_after_walks_the_changes_in_order_missing_none_at_equal_times(
    client, sql, engine, listing
):
    store, other = new_store(client, "Books"), new_store(client, "Comics")
    for number in range(5):
        new_item(client, store["id"], f"Item {number}")
    new_item(client, other["id"])
    # Five items changed by one statement, at one time, in other orders than their ids'.
    committed(engine, "UPDATE items SET price = 2 WHERE store_id = :store", store=store["id"])
    since = times(sql, "items", 1)["created_at"]
    wait_a_tick()
    client.put("/item/3", json={"name": "Changed last"})

    url = listing.format(store=store["id"])
    joiner = "&" if "?" in url else "?"
    seen = items_changed_after(client, f"{url}{joiner}updated_after={since}&page_size=2")

    # Item 6, of the other store, changed before them.
    assert [item["id"] for item in seen] == ([6] if url == "/item" else []) + [1, 2, 4, 5, 3]
    keys = [(item["updated_at"], item["id"]) for item in seen]
    assert keys == sorted(keys)
    assert all(item["updated_at"] > since for item in seen)


def test_updated_after_leaves_out_deleted_stores_and_takes_offsets(client):
    store = new_store(client)
    new_item(client, store["id"])
    before = "2000-01-01T00:00:00+02:00"
    assert len(client.get(f"/item?updated_after={before.replace('+', '%2B')}").get_json()) == 1
    client.delete(f"/store/{store['id']}")
    assert client.get(f"/item?updated_after={before.replace('+', '%2B')}").get_json() == []


def test_a_malformed_updated_after_says_what_is_wrong(client):
    store = new_store(client)
    for url in ("/item", f"/store/{store['id']}/item"):
        for malformed in ("yesterday", "9999-12-31T20:00:00-05:00"):  # past 9999 in UTC
            error = assert_error(client.get(f"{url}?updated_after={quote(malformed)}"), 422)
            assert "updated_after" in error["errors"]["query"]
