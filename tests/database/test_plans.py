"""The hot reads cost what they return: on PostgreSQL, with a store big enough for the
planner to care, their plans scan neither items nor items_tags sequentially, and no step
reads more than a few pages' worth of rows.

The plans are those auto_explain logs as the statements run, with the actual rows read: it
also sees the statements inside a function (store_document), both the plans a connection
makes for one call and the generic one it may keep for all later calls.
"""

import json
import re

import pytest

BIG_STORE = """
    INSERT INTO stores (id, name) VALUES (1, 'Big'), (2, 'Small'), (3, 'Last');
    INSERT INTO items (name, price, store_id)
        SELECT 'item ' || n, 1, 1 + (n %% 50 = 0)::int FROM generate_series(1, 50000) n;
    INSERT INTO tags (name, store_id) SELECT 'tag ' || n, 1 FROM generate_series(1, 20000) n;
    INSERT INTO items_tags (item_id, tag_id)
        SELECT id, 1 + id %% 2000 FROM items WHERE store_id = 1;
    INSERT INTO items_tags (item_id, tag_id) SELECT 1, id FROM tags WHERE id <> 2;
    -- A store whose few rows come last: found by walking the primary key, they would cost
    -- a scan of everything before them.
    INSERT INTO items (name, price, store_id)
        SELECT 'last ' || n, 1, 3 FROM generate_series(1, 5) n;
    INSERT INTO tags (name, store_id) SELECT 'last ' || n, 3 FROM generate_series(1, 5) n;
    INSERT INTO items_tags (item_id, tag_id)
        SELECT item.id, tag.id FROM items item, tags tag
        WHERE item.store_id = 3 AND tag.store_id = 3;
    -- A deleted store, not yet purged, between two live ones: its rows stay until it
    -- expires, and no read may walk them.
    INSERT INTO stores (id, name, deleted_at, expire_time)
        VALUES (4, 'Deleted', now(), now() + interval '30 days'), (5, 'After', NULL, NULL);
    INSERT INTO items (name, price, store_id)
        SELECT 'deleted ' || n, 1, 4 FROM generate_series(1, 20000) n;
    INSERT INTO items (name, price, store_id) VALUES ('after', 1, 5);
    ANALYZE;
"""
# Statistics that know the big store alone (taken before the small one came, or a sample that
# missed its few rows): store_document's generic plan then takes every item for the
# requested store's, and walking the primary key for the first 11 looks cheapest.
KNOWN_ALONE = """
    INSERT INTO stores (id, name) VALUES (1, 'Big'), (2, 'Small');
    INSERT INTO items (name, price, store_id)
        SELECT 'item ' || n, 1, 1 FROM generate_series(1, 50000) n;
    INSERT INTO tags (name, store_id) SELECT 'tag ' || n, 1 FROM generate_series(1, 20000) n;
    INSERT INTO items_tags (item_id, tag_id) SELECT id, 1 + id %% 20000 FROM items;
    ANALYZE;
    INSERT INTO items (name, price, store_id)
        SELECT 'small ' || n, 1, 2 FROM generate_series(1, 5) n;
    INSERT INTO tags (name, store_id) SELECT 'small ' || n, 2 FROM generate_series(1, 5) n;
"""
# Tables as a new deployment has them, then an import's uncommitted rows into one store.
SMALL = """
    INSERT INTO stores (id, name) VALUES (1, 'Small'), (2, 'Importing');
    INSERT INTO items (name, price, store_id)
        SELECT 'item ' || n, 1, 1 FROM generate_series(1, 5) n;
    INSERT INTO tags (name, store_id) SELECT 'tag ' || n, 1 FROM generate_series(1, 5) n;
    ANALYZE;
"""
IMPORTING = """
    INSERT INTO items (name, price, store_id)
        SELECT 'new ' || n, 1, 2 FROM generate_series(1, 20000) n;
    INSERT INTO tags (name, store_id) SELECT 'new ' || n, 2 FROM generate_series(1, 20000) n;
"""
HOT_READS = [
    "/store", "/store?after=1", "/store/1", "/store/3", "/store/1/item",
    "/store/1/item?after=40000", "/store/3/item", "/store/1/tag", "/store/1/tag?after=1500",
    "/store/3/tag", "/item", "/item?store_id=1&after=30000", "/item?store_id=3", "/item/1",
    "/item/50001", "/tag/1", "/tag/20001", "/tag/2/item", "/tag/2/item?after=30000",
    "/tag/20001/item", "/item/1/tag", "/item/1/tag?after=1000", "/item/50001/tag",
    # From the last item of store 3 on: past the deleted store 4 to store 5.
    "/item?after=50005", "/item?store_id=4", "/store?after=3",
    # The end of store 1's items, with 20,000 rows of other stores after them in id order.
    "/store/1/item?after=49990", "/item?store_id=1&after=49990",
]  # fmt: skip
# The most rows any step of a hot read may touch: pages are at most 100 entries, and each
# nests at most 11 of a collection.
MOST_ROWS = 2_000
# Known limit: in a list, the planner estimates an average number of links per entry, and
# for an entry with far more (item 1 here has 20,000 tags) it reads and sorts all of that
# entry's links, through the index, to keep the first 11. Bounded by that entry's links,
# never by the table; a read of the entry alone (GET /item/1) reads 11 links.
LINKS_OF_ITEM_1 = 20_000
ONE_ENTRY = re.compile(r"/(store|item|tag)/\d+")


def rows_touched(plan: dict) -> list[tuple[str, int]]:
    """Each step of a plan (EXPLAIN ANALYZE, JSON) with the rows it read, kept or not."""
    loops = plan.get("Actual Loops", 1)
    read = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
    relation = plan.get("Relation Name") or plan.get("Index Name", "")
    steps = [(f"{plan['Node Type']} {relation}".strip(), read)]
    for child in plan.get("Plans", []):
        steps += rows_touched(child)
    return steps


@pytest.fixture
def big_store(engine):
    with engine.begin() as connection:
        connection.exec_driver_sql(BIG_STORE)


# Every plan, nested ones too, sent to the client as a log message (superuser only: LOAD).
EXPLAIN_AS_RUN = """
    LOAD 'auto_explain';
    SET auto_explain.log_min_duration = 0;
    SET auto_explain.log_analyze = on;
    SET auto_explain.log_nested_statements = on;
    SET auto_explain.log_format = json;
    SET client_min_messages = log;
"""


def log_messages(dbapi_connection) -> list[str]:
    """The list that the connection's log messages will be appended to."""
    messages: list[str] = []
    if hasattr(dbapi_connection, "add_notice_handler"):  # psycopg 3
        dbapi_connection.add_notice_handler(lambda notice: messages.append(notice.message_primary))
    else:  # psycopg2
        dbapi_connection.notices = messages
    return messages


def logged_plans(messages: list[str]) -> list[dict]:
    """The plans in auto_explain's log messages."""
    return [json.loads(message.split("plan:", 1)[1])["Plan"] for message in messages]


def plans_as_run(engine, statement: str, parameters) -> list[dict]:
    """The plans of `statement` and of what it runs inside, with the rows each step read,
    under both of a connection's plan choices for statements in functions."""
    with engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        cursor = dbapi_connection.cursor()
        cursor.execute(EXPLAIN_AS_RUN)
        messages = log_messages(dbapi_connection)
        for mode in ("force_custom_plan", "force_generic_plan"):
            cursor.execute(f"SET plan_cache_mode = {mode}")
            cursor.execute(statement, parameters)
        connection.invalidate()  # auto_explain stays loaded: no other test gets this one
    plans = logged_plans(messages)
    assert plans, statement
    return plans


def too_costly(path: str, step: str, read: int) -> bool:
    if step in ("Seq Scan items", "Seq Scan items_tags"):
        return True
    in_a_list = "items_tags" in step and not ONE_ENTRY.fullmatch(path)
    return read > (LINKS_OF_ITEM_1 + MOST_ROWS if in_a_list else MOST_ROWS)


def test_hot_reads_use_indexes_and_read_only_what_they_return(
    client, engine, statements, big_store
):
    # One test for all the reads: the big store takes seconds to make, a read milliseconds.
    assert costly_steps(client, engine, statements, HOT_READS) == []


def test_a_small_store_reads_its_own_rows_when_the_statistics_know_a_big_one_alone(
    client, engine, statements
):
    with engine.begin() as connection:
        connection.exec_driver_sql(KNOWN_ALONE)
    paths = ["/store/2", "/store/2/item", "/store/2/tag"]
    assert costly_steps(client, engine, statements, paths) == []


def costly_steps(client, engine, statements, paths: list[str]) -> list[tuple]:
    """The steps of the reads of `paths`, in any plan, that read more than they should."""
    failures = []
    for path in paths:
        with statements() as sent:
            assert client.get(path).status_code == 200, path

        reads = [(statement, params) for statement, params in sent if "SELECT" in statement]
        assert reads, path
        for statement, parameters in reads:
            for plan in plans_as_run(engine, statement, parameters):
                steps = rows_touched(plan)
                failures += [
                    (path, step, read, statement, steps)
                    for step, read in steps
                    if too_costly(path, step, read)
                ]
    return failures


def test_a_plan_kept_from_small_tables_reads_by_index_once_an_import_grows_them(engine):
    """A connection keeps the plan it made when the tables were small, and an import's
    uncommitted rows grow them under it: the plan still finds the store's rows by index."""
    with engine.begin() as connection:
        connection.exec_driver_sql(SMALL)
    with engine.connect() as reading, engine.connect() as importing:
        cursor = reading.connection.dbapi_connection.cursor()
        cursor.execute(EXPLAIN_AS_RUN)
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute("SELECT store_document(1)")  # planned now, and kept
        importing.exec_driver_sql(IMPORTING)
        messages = log_messages(reading.connection.dbapi_connection)
        cursor.execute("SELECT store_document(1)")
        document = json.loads(cursor.fetchone()[0])
        importing.rollback()
        reading.invalidate()  # auto_explain stays loaded: no other test gets this one
    steps = [step for plan in logged_plans(messages) for step, _read in rows_touched(plan)]
    assert len(document["items"]) == 5
    assert any(step.startswith("Index") for step in steps), steps
    assert [step for step in steps if step.startswith("Seq Scan")] == []
