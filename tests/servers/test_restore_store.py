"""`flask restore-store` from a real pgBackRest repository (tools/throwaway_backups.py) into
the live database it backs up: a purged store comes back as it was."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import migrated_app

from tools.throwaway_backups import ThrowawayBackups, connect, throwaway_backups
from tools.throwaway_postgres import throwaway_postgres


@pytest.fixture(scope="module")
def backed_up() -> Iterator[tuple]:
    """The app on a cluster archiving into a repository, with a full backup of a store of 3
    items (one with a newline in its description), 2 tags and 2 links."""
    with throwaway_postgres() as cluster, throwaway_backups(cluster) as backups:
        app = migrated_app(cluster.url("psycopg2"))
        with connect(cluster) as db:
            (store_id,) = db.execute(
                "INSERT INTO stores (name) VALUES ('Lamps') RETURNING id"
            ).fetchone()
            db.execute(
                "INSERT INTO items (name, price, sku, description, store_id)"
                " SELECT 'lamp ' || n, n, 'L-' || n, E'two\\nlines', %s"
                " FROM generate_series(1, 3) n",
                (store_id,),
            )
            db.execute("INSERT INTO tags (name, store_id) VALUES ('new', %s), ('sale', %s)",
                       (store_id, store_id))  # fmt: skip
            db.execute("INSERT INTO items_tags SELECT min(items.id), tags.id FROM items, tags"
                       " GROUP BY tags.id")  # fmt: skip
        backups.backup("full")
        yield app, cluster, backups, store_id


def restore_store(app, backups: ThrowawayBackups, *args: str):
    environment = {"PGBACKREST_CONFIG": str(backups.config), "PGBACKREST_STANZA": "main"}
    return app.test_cli_runner().invoke(args=["restore-store", *args], env=environment)


def test_a_purged_store_comes_back_as_it_was(backed_up):
    app, cluster, backups, store_id = backed_up
    client = app.test_client()
    before = client.get(f"/store/{store_id}").get_json()
    items_before = client.get(f"/store/{store_id}/item").get_json()
    # pgBackRest restores to a time after the backup's stop, in whole seconds.
    time.sleep(1.1)
    at = datetime.now(UTC)
    time.sleep(0.1)
    with connect(cluster) as db:
        db.execute("DELETE FROM stores WHERE id = %s", (store_id,))  # what the purge does
    backups.check()
    assert client.get(f"/store/{store_id}").status_code == 404

    restored = restore_store(app, backups, str(store_id), "--at", at.isoformat())

    assert restored.exit_code == 0, restored.output
    assert f"Store {store_id} is back as store {store_id} ('Lamps')" in restored.output
    assert "3 items, 2 tags, 2 items_tags" in restored.output
    assert client.get(f"/store/{store_id}").get_json() == before
    assert client.get(f"/store/{store_id}/item").get_json() == items_before


def test_a_time_before_any_backup_is_refused_saying_why(backed_up):
    app, _cluster, backups, store_id = backed_up
    refused = restore_store(app, backups, str(store_id), "--at", "2000-01-01T00:00:00Z")
    assert refused.exit_code == 1
    assert "pgBackRest could not restore to 2000-01-01 00:00:00+00:00" in refused.output


def test_a_time_the_archive_does_not_reach_yet_is_refused_saying_why(backed_up):
    app, _cluster, backups, store_id = backed_up
    later = datetime.now(UTC) + timedelta(hours=1)
    refused = restore_store(app, backups, str(store_id), "--at", later.isoformat())
    assert refused.exit_code == 1, refused.output
    assert "recovery ended before configured recovery target was reached" in refused.output
