import pytest

from cli.seed import seed_command


def counts(sql) -> tuple:
    return sql(
        "SELECT (SELECT count(*) FROM stores), (SELECT count(*) FROM items),"
        " (SELECT count(*) FROM tags), (SELECT count(*) FROM items_tags)"
    )[0]


@pytest.mark.sqlite_too
def test_seed_fills_the_database_and_can_run_twice(app, sql):
    runner = app.test_cli_runner()
    arguments = ["--stores", "3", "--items-per-store", "12", "--tags-per-store", "4"]

    first = runner.invoke(seed_command, arguments)
    second = runner.invoke(seed_command, arguments)

    assert first.exit_code == 0, first.output
    assert "Created 3 stores; 0 existed already." in first.output
    assert "Created 0 stores; 3 existed already." in second.output
    assert counts(sql) == (3, 36, 12, 36)
    # A store's event, with the counts of what it holds; none a child.
    assert (
        sql("SELECT type, counts FROM events ORDER BY id")
        == [("store.created", '{"items":12,"tags":4,"links":12}')] * 3
    )
    # Every link joins an item and a tag of the same store.
    assert sql(
        "SELECT count(*) FROM items_tags JOIN items ON items.id = item_id"
        " JOIN tags ON tags.id = tag_id WHERE items.store_id <> tags.store_id"
    ) == [(0,)]


def test_seed_batches_large_stores(app, sql, monkeypatch):
    monkeypatch.setattr("cli.seed.BATCH_SIZE", 7)
    result = app.test_cli_runner().invoke(
        seed_command, ["--stores", "1", "--items-per-store", "30", "--tags-per-store", "0"]
    )
    assert result.exit_code == 0, result.output
    assert counts(sql) == (1, 30, 0, 0)
    assert sql("SELECT min(name), max(id) - min(id) FROM items") == [("Item 1", 29)]


def test_only_if_empty_leaves_an_existing_database_alone(app, client, sql):
    client.post("/store", json={"name": "Mine"})
    result = app.test_cli_runner().invoke(seed_command, ["--only-if-empty"])
    assert "not seeding" in result.output
    assert counts(sql) == (1, 0, 0, 0)
