"""DELETE /store/<id> hides the store with its items, tags and links at once; its purge
removes them all from the database, and nothing else."""

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from support.api import assert_error, link, new_item, new_store, new_tag, purge


def fill_store(client, name: str, items: int, tags: int) -> dict:
    store = new_store(client, name)
    item_ids = [new_item(client, store["id"], f"{name} item {n}")["id"] for n in range(items)]
    tag_ids = [new_tag(client, store["id"], f"{name} tag {n}")["id"] for n in range(tags)]
    for item_id in item_ids:
        for tag_id in tag_ids:
            link(client, item_id, tag_id)
    return store


def rows_of_store(sql, store_id: int) -> dict[str, int]:
    counts = sql(
        """
        SELECT (SELECT count(*) FROM stores WHERE id = :store),
               (SELECT count(*) FROM items WHERE store_id = :store),
               (SELECT count(*) FROM tags WHERE store_id = :store),
               (SELECT count(*) FROM items_tags
                 WHERE item_id IN (SELECT id FROM items WHERE store_id = :store)
                    OR tag_id IN (SELECT id FROM tags WHERE store_id = :store))
        """,
        store=store_id,
    )[0]
    return dict(zip(["stores", "items", "tags", "links"], counts, strict=True))


@pytest.mark.postgres_path
@pytest.mark.sqlite_too
def test_delete_store_removes_its_items_tags_and_links(app, client, sql):
    doomed = fill_store(client, "Doomed", items=3, tags=2)
    kept = fill_store(client, "Kept", items=2, tags=2)
    assert rows_of_store(sql, doomed["id"]) == {"stores": 1, "items": 3, "tags": 2, "links": 6}

    response = client.delete(f"/store/{doomed['id']}")

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["deleted"] == {"items": 3, "tags": 2, "links": 6, "exact": True}
    assert answer["message"].startswith(f"Store {doomed['id']} deleted with 3 items and 2 tags")
    # Kept until it expires, for a restore.
    assert rows_of_store(sql, doomed["id"]) == {"stores": 1, "items": 3, "tags": 2, "links": 6}

    assert client.post(f"/store/{doomed['id']}/purge").status_code == 202
    assert purge(app) == [doomed["id"]]

    assert rows_of_store(sql, doomed["id"]) == {"stores": 0, "items": 0, "tags": 0, "links": 0}
    assert rows_of_store(sql, kept["id"]) == {"stores": 1, "items": 2, "tags": 2, "links": 4}
    # What the API shows agrees: the kept store whole, its items still linked.
    shown = client.get(f"/store/{kept['id']}").get_json()
    assert (len(shown["items"]), len(shown["tags"])) == (2, 2)
    for item in shown["items"]:
        assert len(client.get(f"/item/{item['id']}").get_json()["tags"]) == 2
    assert_error(client.get(f"/store/{doomed['id']}"), 404)
    assert_error(client.delete(f"/store/{doomed['id']}"), 404)


@pytest.mark.sqlite_too
def test_delete_empty_store(client):
    store = new_store(client)
    response = client.delete(f"/store/{store['id']}")
    assert response.get_json()["deleted"] == {"items": 0, "tags": 0, "links": 0, "exact": True}


@pytest.mark.postgres_path
@pytest.mark.sqlite_too
def test_database_itself_cascades_a_raw_delete(client, sql, engine):
    """The database, not the ORM, is the last line of defence."""
    store = fill_store(client, "Raw", items=2, tags=1)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DELETE FROM stores WHERE id = {store['id']}")
    assert rows_of_store(sql, store["id"]) == {"stores": 0, "items": 0, "tags": 0, "links": 0}


@pytest.mark.sqlite_too
def test_database_refuses_children_of_missing_parents(engine):
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"), engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO items (name, price, store_id) VALUES ('x', 1, 42)")


@pytest.mark.sqlite_too
def test_store_delete_loads_no_children(client, statements):
    store = fill_store(client, "Big", items=30, tags=3)
    with statements() as sent:
        client.delete(f"/store/{store['id']}")
    # Check the token, lock the store, count its children and their links (up to a bound),
    # mark it deleted: whatever their number.
    writes_and_reads = [
        statement
        for statement, _ in sent
        if statement.lstrip().upper().startswith(("SELECT", "DELETE", "UPDATE"))
    ]
    assert len(writes_and_reads) == 4
    assert all(
        statement.lstrip().upper().startswith("SELECT")
        for statement, _ in sent
        if "items_tags" in statement
    )
    assert not any(statement.lstrip().upper().startswith("DELETE") for statement, _ in sent)


@pytest.mark.sqlite_too
def test_migrations_declare_on_delete_cascade(engine):
    inspector = inspect(engine)
    foreign_keys = {
        (table, key["constrained_columns"][0]): key["options"].get("ondelete")
        for table in ("items", "tags", "items_tags")
        for key in inspector.get_foreign_keys(table)
    }
    assert foreign_keys == {
        ("items", "store_id"): "CASCADE",
        ("tags", "store_id"): "CASCADE",
        ("items_tags", "item_id"): "CASCADE",
        ("items_tags", "tag_id"): "CASCADE",
    }
