"""Concurrent clients against gunicorn with several workers; invariants checked in SQL."""

import threading
from collections import Counter

import requests
from helpers import run_together, store_item_and_tag_over_http

ORPHANS = """
    SELECT (SELECT count(*) FROM items WHERE store_id NOT IN (SELECT id FROM stores))
         + (SELECT count(*) FROM tags WHERE store_id NOT IN (SELECT id FROM stores))
         + (SELECT count(*) FROM items_tags WHERE item_id NOT IN (SELECT id FROM items)
                                               OR tag_id NOT IN (SELECT id FROM tags))
"""


def test_writes_racing_a_store_delete_leave_nothing_behind(live_server, http, sql):
    store = http.post(f"{live_server}/store", json={"name": "Doomed"}).json()
    kept = http.post(f"{live_server}/store", json={"name": "Kept"}).json()
    statuses: list[int] = []
    writes_landed = threading.Event()

    def writer(number: int) -> None:
        session = requests.Session()
        session.headers.update(http.headers)
        for round_number in range(4):
            item = session.post(
                f"{live_server}/item",
                json={"name": f"item {number}.{round_number}", "price": 1, "store_id": store["id"]},
            )
            tag = session.post(
                f"{live_server}/store/{store['id']}/tag",
                json={"name": f"tag {number}.{round_number}"},
            )
            statuses.extend([item.status_code, tag.status_code])
            if 201 in (item.status_code, tag.status_code):
                writes_landed.set()
            if item.status_code == tag.status_code == 201:
                statuses.append(
                    session.post(
                        f"{live_server}/item/{item.json()['id']}/tag/{tag.json()['id']}"
                    ).status_code
                )

    def deleter(_number: int) -> None:
        # Mid-way through the writes, not before the first one: so that they do race.
        writes_landed.wait(timeout=30)
        statuses.append(http.delete(f"{live_server}/store/{store['id']}").status_code)

    run_together(33, lambda number: deleter(number) if number == 16 else writer(number))

    counts = Counter(statuses)
    assert not [status for status in counts if status >= 500], counts
    # A POST /item for a store that is gone names store_id in a 422 (see the items API).
    assert set(counts) <= {200, 201, 404, 409, 422}, counts
    assert counts[200] == 1  # the delete
    assert counts[201] > 0  # writes did race it
    leftovers = sql(
        "SELECT (SELECT count(*) FROM items WHERE store_id = :s)"
        " + (SELECT count(*) FROM tags WHERE store_id = :s)",
        s=store["id"],
    )
    assert leftovers == [(0,)]
    assert sql(ORPHANS) == [(0,)]
    assert http.get(f"{live_server}/store/{kept['id']}").status_code == 200


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
        session = requests.Session()
        session.headers.update(http.headers)
        method = session.post if number % 2 else session.delete
        return [method(pair).status_code for _ in range(10)]

    link_statuses = Counter(s for batch in run_together(16, link_or_unlink) for s in batch)
    assert set(link_statuses) <= {200, 201, 404, 409}, link_statuses
    assert sql("SELECT count(*) FROM items_tags") in ([(0,)], [(1,)])

    deletes = run_together(
        16, lambda _n: requests.delete(f"{live_server}/item/{item['id']}", headers=http.headers)
    )
    assert Counter(r.status_code for r in deletes) == {200: 1, 404: 15}
    assert sql("SELECT count(*) FROM items") == [(0,)]
    assert sql(ORPHANS) == [(0,)]
    assert sql("SELECT count(*) FROM tags") == [(1,)]
