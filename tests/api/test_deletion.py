"""A deleted store: gone from every read and write at once, restorable whole until it
expires, then purged in batches by `flask purge-deleted`."""

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.api import assert_error, change_settings, link, new_item, new_store, new_tag, purge
from support.http import server_env

import resources.store
from jobs import purge as purging

ROOT = Path(__file__).resolve().parents[2]


def filled_store(client, name: str = "Doomed") -> dict:
    """A store with two items, each linked to both of its two tags; its ids."""
    store = new_store(client, name)
    items = [new_item(client, store["id"], f"{name} {n}", description=f"#{n}") for n in (1, 2)]
    tags = [new_tag(client, store["id"], f"{name} tag {n}") for n in (1, 2)]
    for item in items:
        for tag in tags:
            link(client, item["id"], tag["id"])
    return {
        "store": store["id"],
        "items": [item["id"] for item in items],
        "tags": [tag["id"] for tag in tags],
    }


def everything_shown(client, ids: dict) -> dict:
    """What the API shows of the store and all it holds."""
    store = ids["store"]
    return {
        "store": client.get(f"/store/{store}").get_json(),
        "items": client.get(f"/store/{store}/item").get_json(),
        "tags": client.get(f"/store/{store}/tag").get_json(),
        "item links": [client.get(f"/item/{item}/tag").get_json() for item in ids["items"]],
        "tag links": [client.get(f"/tag/{tag}/item").get_json() for tag in ids["tags"]],
    }


@pytest.mark.sqlite_too
def test_a_deleted_store_is_gone_from_every_read_and_write(client):
    ids = filled_store(client)
    store, (item, other_item), (tag, _) = ids["store"], ids["items"], ids["tags"]
    client.delete(f"/item/{other_item}/tag/{tag}")
    kept = new_store(client, "Kept")

    answer = client.delete(f"/store/{store}").get_json()

    assert answer["deleted_by"] is not None
    assert answer["name"] == "Doomed"
    deleted_at = datetime.fromisoformat(answer["deleted_at"])
    assert datetime.fromisoformat(answer["expire_time"]) - deleted_at == timedelta(days=30)
    for path in (
        f"/store/{store}",
        f"/store/{store}/item",
        f"/store/{store}/tag",
        f"/item/{item}",
        f"/item/{item}/tag",
        f"/tag/{tag}",
        f"/tag/{tag}/item",
    ):
        assert_error(client.get(path), 404)
    for path, query in (("/store", ""), ("/item", ""), ("/item", f"store_id={store}")):
        listed = client.get(f"{path}?{query}").get_json()
        assert store not in {entry.get("store", entry).get("id") for entry in listed}, path
    assert [entry["id"] for entry in client.get("/store").get_json()] == [kept["id"]]
    writes = [
        client.put(f"/store/{store}", json={"name": "Revived"}),
        client.delete(f"/store/{store}"),
        client.post("/item", json={"name": "x", "price": 1, "store_id": store}),
        client.put(f"/item/{item}", json={"price": 2}),
        client.delete(f"/item/{item}"),
        client.post(f"/store/{store}/tag", json={"name": "new"}),
        client.delete(f"/tag/{tag}"),
        client.post(f"/item/{other_item}/tag/{tag}"),
        client.delete(f"/item/{item}/tag/{tag}"),
    ]
    for response in writes:
        assert_error(response, 404)


@pytest.mark.sqlite_too
def test_a_restored_store_is_back_exactly_as_it_was(client, sql):
    ids = filled_store(client)
    before = everything_shown(client, ids)
    rows = "SELECT id, name, price, description, store_id FROM items ORDER BY id"
    rows_before = sql(rows)
    assert client.delete(f"/store/{ids['store']}").status_code == 200

    restored = client.post(f"/store/{ids['store']}/restore")

    assert restored.status_code == 200
    assert restored.get_json() == before["store"]
    assert everything_shown(client, ids) == before
    assert sql(rows) == rows_before
    assert sql("SELECT deleted_at, expire_time, deleted_by FROM stores") == [(None, None, None)]


@pytest.mark.sqlite_too
def test_a_deleted_stores_name_is_free_at_once_and_its_restore_then_needs_another(client):
    ids = filled_store(client, "Books")
    client.delete(f"/store/{ids['store']}")
    successor = new_store(client, "Books")

    assert_error(
        client.post(f"/store/{ids['store']}/restore"), 409, f"Store {successor['id']} is named"
    )
    assert_error(
        client.post(f"/store/{ids['store']}/restore", json={"name": ""}), 422
    )  # validated like any name
    renamed = client.post(f"/store/{ids['store']}/restore", json={"name": "Old books"})
    assert renamed.status_code == 200
    assert (renamed.get_json()["name"], len(renamed.get_json()["items"])) == ("Old books", 2)


@pytest.mark.sqlite_too
def test_restore_refuses_live_purged_and_expired_stores(client):
    live = new_store(client, "Live")
    assert_error(client.post(f"/store/{live['id']}/restore"), 409, "is not deleted")
    assert_error(client.post("/store/999999/restore"), 404)
    doomed = new_store(client, "Doomed")
    client.delete(f"/store/{doomed['id']}")
    assert client.post(f"/store/{doomed['id']}/purge").status_code == 202
    assert_error(client.post(f"/store/{doomed['id']}/restore"), 404)  # expired, not yet purged


@pytest.mark.sqlite_too
def test_who_may_delete_list_restore_and_purge(anonymous, new_user, bearer):
    owner, other = new_user("olga"), new_user("bob")
    admin = bearer(new_user("root", role="admin"))
    store = anonymous.post("/store", json={"name": "Olga's"}, headers=bearer(owner)).get_json()
    path = f"/store/{store['id']}"
    assert anonymous.delete(path, headers=bearer(owner)).status_code == 200

    assert_error(anonymous.post(f"{path}/restore", headers=bearer(other)), 403)
    assert_error(anonymous.post(f"{path}/restore", headers=bearer(owner, fresh=False)), 401)
    assert_error(anonymous.post(f"{path}/purge", headers=bearer(owner)), 403, "Only an admin")
    assert_error(anonymous.post(f"{path}/purge", headers=bearer(owner, fresh=False)), 401)
    assert_error(anonymous.get("/store/deleted"), 401)
    listed = {
        who: [entry["id"] for entry in anonymous.get("/store/deleted", headers=headers).json]
        for who, headers in (("owner", bearer(owner)), ("other", bearer(other)), ("admin", admin))
    }
    assert listed == {"owner": [store["id"]], "other": [], "admin": [store["id"]]}
    assert anonymous.post(f"{path}/restore", headers=bearer(owner)).status_code == 200
    assert anonymous.get("/store/deleted", headers=admin).json == []


@pytest.mark.sqlite_too
def test_deleted_stores_list_newest_first_page_by_page(client):
    stores = [new_store(client, f"Store {n}")["id"] for n in range(5)]
    for store in stores:
        client.delete(f"/store/{store}")

    first = client.get("/store/deleted?page_size=3")
    second = client.get(first.headers["Link"].split(">")[0].removeprefix("<"))

    assert [entry["id"] for entry in first.json] == stores[::-1][:3]
    assert [entry["id"] for entry in second.json] == stores[::-1][3:]
    assert "Link" not in second.headers
    assert set(first.json[0]) >= {"deleted_at", "expire_time", "deleted_by", "name"}


@pytest.mark.sqlite_too
def test_counts_of_a_big_store_stop_at_a_bound(client, monkeypatch):
    monkeypatch.setattr(resources.store, "COUNTED_UP_TO", 2)
    store = new_store(client)
    for n in range(3):
        new_item(client, store["id"], f"item {n}")

    answer = client.delete(f"/store/{store['id']}").get_json()

    assert answer["deleted"] == {"items": 2, "tags": 0, "links": 0, "exact": False}
    assert "with at least 2 items" in answer["message"]


@pytest.mark.postgres_path
@pytest.mark.sqlite_too
def test_purge_goes_in_batches_and_a_cut_off_purge_is_finished_by_the_next(
    app, client, sql, monkeypatch
):
    monkeypatch.setattr(purging, "BATCH_ROWS", 2)
    doomed, kept = filled_store(client, "Doomed"), filled_store(client, "Kept")
    new_item(client, doomed["store"], "a fifth item")
    client.delete(f"/store/{doomed['store']}")
    client.post(f"/store/{doomed['store']}/purge")
    items = "SELECT count(*) FROM items WHERE store_id = :store"

    # A worker killed after its first batch: that batch is gone, committed.
    with app.app_context():
        assert purging.purge_batch(
            purging.ItemModel, doomed["store"], purging.expired(datetime.now(UTC))
        )
    assert sql(items, store=doomed["store"]) == [(1,)]

    assert purge(app) == [doomed["store"]]
    assert sql("SELECT count(*) FROM stores") == [(1,)]
    assert sql("SELECT count(*) FROM items") == [(2,)]
    assert sql("SELECT count(*) FROM items_tags") == [(4,)]
    assert everything_shown(client, kept)["store"]["name"] == "Kept"
    assert purge(app) == []


@pytest.mark.postgres_path
@pytest.mark.sqlite_too
def test_stores_purge_only_once_expired_and_those_of_deleted_users_too(
    app, anonymous, new_user, bearer, sql, monkeypatch
):
    change_settings(monkeypatch, app, deleted_store_retention_days=0.5 / 86400)  # half a second
    admin = bearer(new_user("root", role="admin"))
    owner = new_user("olga")
    store = anonymous.post("/store", json={"name": "Olga's"}, headers=bearer(owner)).get_json()
    anonymous.delete(f"/store/{store['id']}", headers=bearer(owner))
    assert anonymous.delete(f"/user/{owner.id}", headers=admin).status_code == 200
    young = anonymous.post("/store", json={"name": "Young"}, headers=admin).get_json()
    change_settings(monkeypatch, app, deleted_store_retention_days=30)
    anonymous.delete(f"/store/{young['id']}", headers=admin)

    time.sleep(0.6)

    assert purge(app) == [store["id"]]
    assert sql("SELECT id FROM stores") == [(young["id"],)]


def test_a_write_waiting_on_a_delete_in_progress_sees_the_store_deleted(client, engine, sql):
    """The write's share lock waits for the delete's transaction, then reads the row again:
    404, not an item in a deleted store."""
    store = new_store(client)
    answers = []
    with engine.connect() as deleting:
        deleting.exec_driver_sql(f"SELECT id FROM stores WHERE id = {store['id']} FOR UPDATE")
        deleting.exec_driver_sql(
            f"UPDATE stores SET deleted_at = now(), expire_time = now() + interval '1 day' "
            f"WHERE id = {store['id']}"
        )
        body = {"name": "late", "price": 1, "store_id": store["id"]}
        writer = threading.Thread(target=lambda: answers.append(client.post("/item", json=body)))
        writer.start()
        writer.join(timeout=1)
        assert writer.is_alive(), "the write did not wait for the delete"
        deleting.commit()
    writer.join(timeout=10)

    assert_error(answers[0], 404)
    assert sql("SELECT count(*) FROM items") == [(0,)]


@pytest.mark.sqlite_too
def test_the_item_list_goes_store_by_store_past_deleted_stores(client):
    first, doomed, last = (new_store(client, name)["id"] for name in ("First", "Doomed", "Last"))
    # Ids interleaved across the stores, so that store order is not id order.
    items = {store: [] for store in (first, doomed, last)}
    for n in range(3):
        for store in (last, doomed, first):
            items[store].append(new_item(client, store, f"{store}.{n}")["id"])
    client.delete(f"/store/{doomed}")

    pages = []
    url = "/item?page_size=2"
    while url:
        response = client.get(url)
        pages.append([item["id"] for item in response.get_json()])
        url = response.headers.get("Link", "").partition(">")[0].removeprefix("<")

    assert [item for page in pages for item in page] == items[first] + items[last]
    assert pages[1] == [items[first][2], items[last][0]]  # a page spans two stores
    client.delete(f"/item/{items[first][2]}")
    assert_error(client.get(f"/item?after={items[first][2]}"), 404, "not found (deleted since?)")


@pytest.mark.slow
@pytest.mark.sqlite_too
def test_purge_deleted_every_few_seconds_purges_what_expires_meanwhile(client, database_url, sql):
    """What `make run` runs beside the server: no operator has to remember cron."""
    looping = subprocess.Popen(
        [sys.executable, "-m", "flask", "purge-deleted", "--every", "0.2"],
        cwd=ROOT, env={**os.environ, **server_env(database_url, FLASK_APP="app:create_app")},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        store = new_store(client)
        client.delete(f"/store/{store['id']}")
        client.post(f"/store/{store['id']}/purge")
        deadline = time.monotonic() + 30
        while sql("SELECT count(*) FROM stores") != [(0,)]:
            assert looping.poll() is None, looping.stderr.read().decode()
            assert time.monotonic() < deadline, "not purged within 30 s"
            time.sleep(0.05)
    finally:
        looping.terminate()
        looping.wait(timeout=30)
