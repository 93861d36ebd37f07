"""A store belongs to the user who made it: only they, or an admin, change it and what is in
it. Tried over HTTP against the real server by another user, with every row checked after."""

import pytest
import requests
from support.http import sign_up

pytestmark = [pytest.mark.sqlite_too, pytest.mark.pgbouncer_too]

EVERY_ROW = """
    SELECT 'store', id, name, owner_id, NULL FROM stores
    UNION ALL SELECT 'item', id, name, store_id, price FROM items
    UNION ALL SELECT 'tag', id, name, store_id, NULL FROM tags
    UNION ALL SELECT 'link', item_id, NULL, tag_id, NULL FROM items_tags
    ORDER BY 1, 2, 4
"""


def arrange_a_store(base: str, headers: dict[str, str]) -> dict[str, int]:
    """A store with two items and a tag, the first item linked to it; their ids."""
    with requests.Session() as http:
        http.headers.update(headers)
        store = http.post(f"{base}/store", json={"name": "Alice's"}).json()
        items = [
            http.post(f"{base}/item", json={"name": n, "price": 1, "store_id": store["id"]}).json()
            for n in ("Lamp", "Desk")
        ]
        tag = http.post(f"{base}/store/{store['id']}/tag", json={"name": "light"}).json()
        assert http.post(f"{base}/item/{items[0]['id']}/tag/{tag['id']}").status_code == 201
        unlinked_tag = http.post(f"{base}/store/{store['id']}/tag", json={"name": "spare"}).json()
    return {
        "store": store["id"], "item": items[0]["id"], "unlinked_item": items[1]["id"],
        "tag": tag["id"], "unlinked_tag": unlinked_tag["id"],
    }  # fmt: skip


def every_write(ids: dict[str, int]) -> list[tuple[str, str, dict | None]]:
    """Each write on the store or on what is in it (method, path, body), in an order in which
    the owner can make them all."""
    store, item, tag = ids["store"], ids["item"], ids["tag"]
    return [
        ("PUT", f"/store/{store}", {"name": "Renamed"}),
        ("POST", "/item", {"name": "Chair", "price": 1, "store_id": store}),
        ("PUT", f"/item/{item}", {"price": 0}),
        ("POST", f"/store/{store}/tag", {"name": "new"}),
        ("POST", f"/item/{ids['unlinked_item']}/tag/{tag}", None),
        ("DELETE", f"/item/{item}/tag/{tag}", None),
        ("DELETE", f"/tag/{ids['unlinked_tag']}", None),
        ("DELETE", f"/item/{item}", None),
        ("DELETE", f"/store/{store}", None),
        ("POST", f"/store/{store}/restore", None),
        ("DELETE", f"/store/{store}", None),
    ]


def test_another_user_can_change_nothing_in_a_store(live_server, sql):
    alice, bob = sign_up(live_server, "alice"), sign_up(live_server, "bob")
    ids = arrange_a_store(live_server, alice)
    before = sql(EVERY_ROW)
    assert sql("SELECT owner_id FROM stores") == [(1,)]  # alice, the first user

    for method, path, body in every_write(ids):
        response = requests.request(method, live_server + path, json=body, headers=bob, timeout=30)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["message"].startswith("Only the store's owner or an admin")

    assert sql(EVERY_ROW) == before


def test_the_owner_and_an_admin_can_change_everything(live_server, new_user, bearer, sql):
    alice = sign_up(live_server, "alice")
    admin = bearer(new_user("root", role="admin"))
    for headers in (alice, admin):
        ids = arrange_a_store(live_server, alice)
        for method, path, body in every_write(ids):
            response = requests.request(
                method, live_server + path, json=body, headers=headers, timeout=30
            )
            assert response.status_code in (200, 201), (method, path, response.text)
    assert sql("SELECT count(*) FROM stores WHERE deleted_at IS NULL") == [(0,)]


def test_a_deleted_users_stores_stay_for_the_admins_alone(live_server, new_user, bearer, sql):
    alice = sign_up(live_server, "alice")
    ids = arrange_a_store(live_server, alice)
    admin = bearer(new_user("root", role="admin"))
    me = requests.get(f"{live_server}/user/me", headers=alice, timeout=30).json()

    assert requests.delete(f"{live_server}/user/{me['id']}", headers=admin).status_code == 200

    store = requests.get(f"{live_server}/store/{ids['store']}", timeout=30).json()
    assert store["owner_id"] is None
    assert len(store["items"]) == 2  # nothing deleted, nothing handed to anyone
    bob = sign_up(live_server, "bob")
    rename = {"name": "Orphan"}
    url = f"{live_server}/store/{ids['store']}"
    assert requests.put(url, json=rename, headers=bob, timeout=30).status_code == 403
    assert requests.put(url, json=rename, headers=admin, timeout=30).status_code == 200


def test_any_user_may_open_a_store_of_their_own(live_server):
    bob = sign_up(live_server, "bob")
    me = requests.get(f"{live_server}/user/me", headers=bob, timeout=30).json()
    store = requests.post(f"{live_server}/store", json={"name": "Bob's"}, headers=bob).json()
    assert store["owner_id"] == me["id"]
