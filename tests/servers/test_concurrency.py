"""Concurrent clients against gunicorn with several workers, on every database and driver,
also through PgBouncer: whatever the interleaving, each answer tells the truth."""

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import text
from support.http import run_together, store_item_and_tag_over_http

from db import db
from jobs import purge as purging

pytestmark = [pytest.mark.sqlite_too, pytest.mark.pgbouncer_too]


def client_like(http: requests.Session) -> requests.Session:
    """A session of its own (one connection per thread), with the same token."""
    session = requests.Session()
    session.headers.update(http.headers)
    return session


def test_writes_racing_a_store_delete_are_all_deleted_or_refused(live_server, http):
    store = http.post(f"{live_server}/store", json={"name": "Doomed"}).json()
    kept = http.post(f"{live_server}/store", json={"name": "Kept"}).json()
    created: dict[str, list[int]] = {"item": [], "tag": []}
    linked: list[str] = []
    statuses: list[int] = []
    deleted: list[dict] = []
    writes_landed = threading.Event()

    def writer(number: int) -> None:
        session = client_like(http)
        for round_number in range(4):
            name = f"{number}.{round_number}"
            item = session.post(
                f"{live_server}/item", json={"name": name, "price": 1, "store_id": store["id"]}
            )
            tag = session.post(f"{live_server}/store/{store['id']}/tag", json={"name": name})
            for kind, response in (("item", item), ("tag", tag)):
                statuses.append(response.status_code)
                if response.status_code == 201:
                    created[kind].append(response.json()["id"])
                    writes_landed.set()
            if item.status_code == tag.status_code == 201:
                pair = f"{item.json()['id']}/tag/{tag.json()['id']}"
                status = session.post(f"{live_server}/item/{pair}").status_code
                statuses.append(status)
                if status == 201:
                    linked.append(pair)

    def deleter(_number: int) -> None:
        # Mid-way through the writes, not before the first one: so that they do race.
        writes_landed.wait(timeout=30)
        response = http.delete(f"{live_server}/store/{store['id']}")
        statuses.append(response.status_code)
        deleted.append(response.json())

    run_together(33, lambda number: deleter(number) if number == 16 else writer(number))

    counts = Counter(statuses)
    assert set(counts) <= {200, 201, 404, 409}, counts
    assert counts[200] == 1  # the delete
    assert created["item"], "no item write raced the delete"
    assert created["tag"], "no tag write raced the delete"
    # Every write that was answered 201 landed before the delete, which counted it and
    # deleted it: nothing was created in a store that was gone.
    counts = {
        "items": len(created["item"]), "tags": len(created["tag"]), "links": len(linked),
        "exact": True,
    }  # fmt: skip
    assert deleted[0]["deleted"] == counts
    for kind, ids in created.items():
        assert {http.get(f"{live_server}/{kind}/{id_}").status_code for id_ in ids} == {404}
    assert http.get(f"{live_server}/store/{kept['id']}").status_code == 200
    # Restored, the store holds exactly the writes answered 201: none slipped in after.
    assert http.post(f"{live_server}/store/{store['id']}/restore").status_code == 200
    for kind, ids in created.items():
        listed = http.get(f"{live_server}/store/{store['id']}/{kind}?page_size=100").json()
        assert sorted(entry["id"] for entry in listed) == sorted(ids)


def test_one_store_name_sixteen_creators_one_winner(live_server, admin_headers):
    responses = run_together(
        16,
        lambda _n: requests.post(
            f"{live_server}/store", json={"name": "Same"}, headers=admin_headers
        ),
    )
    counts = Counter(response.status_code for response in responses)
    assert counts == {201: 1, 409: 15}


def test_racing_link_unlink_and_deletes_of_one_item(live_server, http, sql):
    _store, item, tag = store_item_and_tag_over_http(http, live_server, "Race")
    pair = f"{live_server}/item/{item['id']}/tag/{tag['id']}"

    def link_or_unlink(number: int) -> list[int]:
        session = client_like(http)
        method = session.post if number % 2 else session.delete
        return [method(pair).status_code for _ in range(10)]

    link_statuses = Counter(s for batch in run_together(16, link_or_unlink) for s in batch)
    assert set(link_statuses) <= {200, 201, 404, 409}, link_statuses
    # Each 201 added the link and each 200 removed it: what is left is their difference.
    links = sql("SELECT count(*) FROM items_tags")[0][0]
    assert link_statuses[201] - link_statuses[200] == links
    tags_shown = http.get(f"{live_server}/item/{item['id']}").json()["tags"]
    assert [shown["id"] for shown in tags_shown] == [tag["id"]] * links

    deletes = run_together(
        16, lambda _n: requests.delete(f"{live_server}/item/{item['id']}", headers=http.headers)
    )
    assert Counter(r.status_code for r in deletes) == {200: 1, 404: 15}
    assert sql("SELECT count(*) FROM items") == [(0,)]
    assert http.get(f"{live_server}/tag/{tag['id']}").json()["items"] == []


def test_updates_racing_deletes_of_one_item_get_200_or_404(live_server, http, sql):
    store = http.post(f"{live_server}/store", json={"name": "Churn"}).json()
    for round_number in range(20):
        item = http.post(
            f"{live_server}/item", json={"name": "Churn", "price": 1, "store_id": store["id"]}
        ).json()
        url = f"{live_server}/item/{item['id']}"

        def put_or_delete(number: int, url: str = url, round_number: int = round_number):
            session = client_like(http)
            if number % 2:
                return "delete", session.delete(url).status_code
            return "put", session.put(url, json={"price": round_number}).status_code

        answers = Counter(run_together(4, put_or_delete))
        assert answers[("delete", 200)] == answers[("delete", 404)] == 1, answers
        assert set(answers) <= {("delete", 200), ("delete", 404), ("put", 200), ("put", 404)}
    assert sql("SELECT count(*) FROM items") == [(0,)]


def test_a_tag_delete_racing_a_link_either_refuses_or_wins(live_server, http, sql):
    store = http.post(f"{live_server}/store", json={"name": "Tags"}).json()
    item = http.post(
        f"{live_server}/item", json={"name": "Lamp", "price": 1, "store_id": store["id"]}
    ).json()
    for round_number in range(20):
        tag = http.post(
            f"{live_server}/store/{store['id']}/tag", json={"name": f"tag {round_number}"}
        ).json()

        def delete_or_link(number: int, tag_id: int = tag["id"]) -> int:
            session = client_like(http)
            if number:
                return session.post(f"{live_server}/item/{item['id']}/tag/{tag_id}").status_code
            return session.delete(f"{live_server}/tag/{tag_id}").status_code

        deleted, linked = run_together(2, delete_or_link)
        # Never both: a link made after the delete's check would be cascaded away unseen.
        assert (deleted, linked) in {(200, 404), (409, 201)}, (deleted, linked)
        links = sql("SELECT count(*) FROM items_tags WHERE tag_id = :t", t=tag["id"])
        assert links == [(1 if linked == 201 else 0,)]


def store_with_children(http, base: str, name: str, items: int = 5) -> dict:
    store = http.post(f"{base}/store", json={"name": name}).json()
    tag = http.post(f"{base}/store/{store['id']}/tag", json={"name": "tag"}).json()
    for n in range(items):
        item = http.post(
            f"{base}/item", json={"name": f"{n}", "price": 1, "store_id": store["id"]}
        ).json()
        assert http.post(f"{base}/item/{item['id']}/tag/{tag['id']}").status_code == 201
    return store


def rows_of(sql, store_id: int) -> tuple:
    """The store's own row's state, and how many items, tags and links it holds."""
    return sql(
        """
        SELECT (SELECT count(*) FROM stores WHERE id = :s AND deleted_at IS NULL),
               (SELECT count(*) FROM stores WHERE id = :s AND deleted_at IS NOT NULL),
               (SELECT count(*) FROM items WHERE store_id = :s),
               (SELECT count(*) FROM tags WHERE store_id = :s),
               (SELECT count(*) FROM items_tags
                 WHERE item_id IN (SELECT id FROM items WHERE store_id = :s))
        """,
        s=store_id,
    )[0]


def test_racing_restores_one_wins(live_server, http, sql):
    store = store_with_children(http, live_server, "Twice")
    assert http.delete(f"{live_server}/store/{store['id']}").status_code == 200

    restores = run_together(
        8, lambda _n: client_like(http).post(f"{live_server}/store/{store['id']}/restore")
    )

    assert Counter(r.status_code for r in restores) == {200: 1, 409: 7}
    assert rows_of(sql, store["id"]) == (1, 0, 5, 1, 5)


def test_delete_restore_and_a_new_store_taking_the_name_leave_no_half_state(live_server, http, sql):
    for round_number in range(5):
        name = f"Contested {round_number}"
        store = store_with_children(http, live_server, name, items=3)
        assert http.delete(f"{live_server}/store/{store['id']}").status_code == 200
        path = f"{live_server}/store/{store['id']}"

        def contend(number: int, path: str = path, name: str = name) -> tuple[str, int]:
            session = client_like(http)
            kind = ("restore", "create", "delete")[number % 3]
            if kind == "restore":
                return kind, session.post(f"{path}/restore").status_code
            if kind == "create":
                return kind, session.post(f"{live_server}/store", json={"name": name}).status_code
            return kind, session.delete(path).status_code

        answers = Counter(run_together(9, contend))

        assert {status for _kind, status in answers} <= {200, 201, 404, 409}, answers
        live, deleted, items, tags, links = rows_of(sql, store["id"])
        # Whole, live or deleted: never some of its rows without the others.
        assert (live + deleted, items, tags, links) == (1, 3, 1, 3), answers
        named = sql("SELECT count(*) FROM stores WHERE name = :n AND deleted_at IS NULL", n=name)
        assert named == [(1,)] or (named == [(0,)] and not answers[("create", 201)]), answers
        assert answers[("restore", 200)] <= 1 + answers[("delete", 200)], answers


def test_a_restore_racing_the_purge_gets_the_store_whole_or_nothing(
    app, live_server, http, sql, monkeypatch
):
    monkeypatch.setattr(purging, "BATCH_ROWS", 2)  # a purge of many short transactions
    for round_number in range(5):
        store = store_with_children(http, live_server, f"Expiring {round_number}", items=6)
        assert http.delete(f"{live_server}/store/{store['id']}").status_code == 200
        # Expiring about now (a little before, a little after), with two restores and the
        # purge racing around that moment.
        sql_update = "UPDATE stores SET expire_time = :t WHERE id = :s"
        expiry = datetime.now(UTC) + timedelta(milliseconds=25 * (round_number - 1))
        with app.app_context(), db.engine.begin() as connection:
            connection.execute(text(sql_update), {"t": expiry, "s": store["id"]})

        def restore_or_purge(number: int, store_id: int = store["id"], expiry=expiry) -> int:
            if number:
                return client_like(http).post(f"{live_server}/store/{store_id}/restore").status_code
            with app.app_context():
                # Until one purge began past the expiry, however late this thread started
                # (under load it began past it, and no purge ran at all).
                while True:
                    began = datetime.now(UTC)
                    purging.purge_expired()
                    if began > expiry + timedelta(milliseconds=100):
                        return 0

        restored = run_together(3, restore_or_purge)[1:]

        assert set(restored) <= {200, 404, 409}, restored  # 409: the other restore won
        state = rows_of(sql, store["id"])
        if 200 in restored:
            assert (restored.count(200), state) == (1, (1, 0, 6, 1, 6))
        else:
            assert state == (0, 0, 0, 0, 0)
