"""Reads cost a constant number of SQL statements, however many rows they return or nest."""

import pytest
from sqlalchemy import event
from support.api import link, new_item, new_store, new_tag

READS = [
    "/store",
    "/store/1",
    "/store/1/item",
    "/store/1/tag",
    "/item",
    "/item?store_id=1",
    "/item/1",
    "/tag/1",
    "/tag/1/item",
    "/item/1/tag",
]


def grow(client, store_id: int, items: int, tags: int, prefix: str = "") -> None:
    """Add items to a store, each linked to every one of its new tags."""
    tag_ids = [new_tag(client, store_id, f"{prefix}tag {n}")["id"] for n in range(tags)]
    for number in range(items):
        item = new_item(client, store_id, f"{prefix}item {number}")
        for tag_id in tag_ids:
            link(client, item["id"], tag_id)


def statements_per_read(client, statements) -> dict[str, int]:
    counts = {}
    for path in READS:
        with statements() as sent:
            assert client.get(path).status_code == 200, path
        counts[path] = len(sent)
    return counts


@pytest.mark.sqlite_too
def test_reads_send_at_most_three_statements_whatever_the_size(client, statements):
    grow(client, new_store(client, "First")["id"], items=1, tags=1)
    small = statements_per_read(client, statements)

    grow(client, 1, items=12, tags=4, prefix="more ")
    for number in range(5):
        grow(client, new_store(client, f"Store {number}")["id"], items=12, tags=4)
    large = statements_per_read(client, statements)

    assert large == small
    assert max(large.values()) <= 3, large


def test_an_empty_page_past_the_end_still_stays_within_three(client, statements):
    grow(client, new_store(client)["id"], items=2, tags=1)
    for path in ("/store?page=5", "/store/1/item?page=5", "/store/1/tag?page=5", "/item?page=9"):
        with statements() as sent:
            assert client.get(path).get_json() == []
        assert len(sent) <= 3, path


def test_store_items_are_paginated_and_404_for_a_missing_store(client):
    grow(client, new_store(client)["id"], items=25, tags=0)
    page = client.get("/store/1/item?page=2&page_size=10").get_json()
    assert [item["name"] for item in page] == [f"item {n}" for n in range(10, 20)]
    assert client.get("/store/9/item").status_code == 404


def test_a_store_with_its_etag_is_one_statement_on_postgresql(client, statements):
    """PostgreSQL renders GET /store/<id> whole; its ETag (a hash of those bytes) and a
    304 add no statement."""
    grow(client, new_store(client)["id"], items=12, tags=2)
    with statements() as read:
        etag = client.get("/store/1").headers["ETag"]
    with statements() as unchanged:
        assert client.get("/store/1", headers={"If-None-Match": etag}).status_code == 304
    for sent in (read, unchanged):
        assert len(sent) == 1
        assert "store_document" in sent[0][0]


def test_a_store_is_read_by_the_drivers_own_sql_compiled_by_nothing(client, every_engine):
    """GET /store/<id>'s one statement reaches the driver as written (exec_driver_sql):
    SQLAlchemy compiles nothing for the hottest read, yet its events still see it."""
    store_id = new_store(client)["id"]
    seen = []

    def keep(_conn, _cursor, statement, _parameters, context, _executemany) -> None:
        seen.append((statement, context.compiled))

    for engine in every_engine:
        event.listen(engine, "before_cursor_execute", keep)
    try:
        assert client.get(f"/store/{store_id}").status_code == 200
    finally:
        for engine in every_engine:
            event.remove(engine, "before_cursor_execute", keep)
    assert seen == [("SELECT store_document(%(store_id)s)", None)]
