"""The hot reads use indexes: their plans on PostgreSQL, read with EXPLAIN, scan neither
items nor items_tags sequentially, on a store big enough for the planner to care."""

import pytest
from sqlalchemy import event

BIG_STORE = """
    INSERT INTO stores (id, name) VALUES (1, 'Big'), (2, 'Small');
    INSERT INTO items (name, price, store_id)
        SELECT 'item ' || n, 1, 1 + (n %% 50 = 0)::int FROM generate_series(1, 50000) n;
    INSERT INTO tags (name, store_id) SELECT 'tag ' || n, 1 FROM generate_series(1, 2000) n;
    INSERT INTO items_tags (item_id, tag_id)
        SELECT id, 1 + id %% 2000 FROM items WHERE store_id = 1;
    INSERT INTO items_tags (item_id, tag_id) SELECT 1, id FROM tags WHERE id <> 2;
    ANALYZE;
"""
HOT_READS = [
    "/store", "/store?after=1", "/store/1", "/store/1/item", "/store/1/item?after=40000",
    "/store/1/tag", "/store/1/tag?after=1500", "/item", "/item?store_id=1&after=30000",
    "/item/1", "/tag/1", "/tag/2/item", "/tag/2/item?after=30000", "/item/1/tag",
    "/item/1/tag?after=1000",
]  # fmt: skip


@pytest.fixture
def big_store(engine):
    with engine.begin() as connection:
        connection.exec_driver_sql(BIG_STORE)


@pytest.mark.parametrize("path", HOT_READS)
def test_hot_reads_scan_no_link_or_item_table(client, engine, big_store, path):
    sent: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, *_args) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)

    reads = [(statement, parameters) for statement, parameters in sent if "SELECT" in statement]
    assert reads, path
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        for statement, parameters in reads:
            cursor.execute("EXPLAIN " + statement, parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            for table in ("items", "items_tags"):
                assert f"Seq Scan on {table} " not in plan, f"{path}\n{statement}\n{plan}"
