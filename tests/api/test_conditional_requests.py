"""ETags, If-None-Match and If-Match (RFC 9110 section 13): clients skip what they have, and
never overwrite what they have not seen."""

import pytest
from support.api import assert_error, change_settings, link, new_item, new_store, new_tag

pytestmark = pytest.mark.sqlite_too


@pytest.fixture
def resources(client) -> dict[str, str]:
    """A store with an item and a tag, linked: the URL of each, and of the caller."""
    store = new_store(client)
    item = new_item(client, store["id"])
    tag = new_tag(client, store["id"])
    link(client, item["id"], tag["id"])
    return {
        "store": f"/store/{store['id']}",
        "item": f"/item/{item['id']}",
        "tag": f"/tag/{tag['id']}",
        "me": "/user/me",
    }


def test_every_single_resource_has_a_strong_etag_of_what_it_shows(client, resources):
    for url in resources.values():
        first, second = client.get(url), client.get(url)
        etag = first.headers["ETag"]
        assert etag.startswith('"'), url  # strong: no W/
        assert etag.endswith('"'), url
        assert second.headers["ETag"] == etag, url


@pytest.mark.parametrize("kind", ["store", "item", "tag", "me"])
def test_if_none_match_with_the_current_etag_is_304_without_a_body(client, resources, kind):
    url = resources[kind]
    etag = client.get(url).headers["ETag"]

    unchanged = client.get(url, headers={"If-None-Match": etag})
    other = client.get(url, headers={"If-None-Match": '"something else"'})

    assert unchanged.status_code == 304
    assert unchanged.get_data() == b""
    assert unchanged.headers["ETag"] == etag
    assert other.status_code == 200
    assert other.headers["ETag"] == etag


def test_lists_are_tagged_and_conditional_too(client, resources):
    listed = client.get("/store")
    assert (
        client.get("/store", headers={"If-None-Match": listed.headers["ETag"]}).status_code == 304
    )


def test_a_writes_answer_carries_the_etag_the_next_read_has(client, resources):
    created = client.post("/store", json={"name": "Music"})
    assert created.headers["ETag"] == client.get(created.headers["Location"]).headers["ETag"]
    tag = client.post("/store/1/tag", json={"name": "new"})
    assert tag.headers["ETag"] == client.get(tag.headers["Location"]).headers["ETag"]
    for url, change in (
        (resources["store"], {"name": "Renamed"}),
        (resources["item"], {"price": 3}),
    ):
        assert client.put(url, json=change).headers["ETag"] == client.get(url).headers["ETag"]


@pytest.mark.parametrize("price", [-0.0, -0.004, -1e-9])
def test_a_price_that_rounds_to_a_negative_zero_is_answered_as_it_is_kept(client, resources, price):
    store_id = int(resources["store"].rsplit("/", 1)[1])
    for written in (
        client.post("/item", json={"name": "Free", "price": price, "store_id": store_id}),
        client.put(resources["item"], json={"price": price}),
    ):
        assert written.status_code in (200, 201), written.get_json()
        url = written.headers.get("Location", resources["item"])
        read = client.get(url)
        assert written.get_json()["price"] == read.get_json()["price"] == 0
        assert str(written.get_json()["price"]) == "0.0"
        assert written.headers["ETag"] == read.headers["ETag"]


def test_a_restore_answers_the_stores_etag(client, resources):
    etag = client.get(resources["store"]).headers["ETag"]
    client.delete(resources["store"])
    restored = client.post(f"{resources['store']}/restore")
    assert restored.headers["ETag"] == etag == client.get(resources["store"]).headers["ETag"]


def test_a_delete_answer_has_no_etag_the_resource_is_gone(client, resources):
    assert "ETag" not in client.delete(resources["item"]).headers


def test_what_a_stores_etag_covers(client, resources):
    """Everything GET /store/<id> shows: its name, and its first items and tags."""
    etags = [client.get(resources["store"]).headers["ETag"]]
    new_item(client, 1, "Second")
    etags.append(client.get(resources["store"]).headers["ETag"])
    client.put(resources["item"], json={"name": "Renamed"})
    etags.append(client.get(resources["store"]).headers["ETag"])
    client.put(resources["store"], json={"name": "Renamed"})
    etags.append(client.get(resources["store"]).headers["ETag"])
    assert len(set(etags)) == 4


def test_past_the_first_ten_items_adding_one_keeps_the_stores_etag(client, resources):
    for n in range(10):
        new_item(client, 1, f"item {n}")
    before = client.get(resources["store"]).headers["ETag"]
    new_item(client, 1, "the twelfth")
    assert client.get(resources["store"]).headers["ETag"] == before


CHANGES = {
    "put store": ("put", "store", {"name": "Changed"}),
    "delete store": ("delete", "store", None),
    "put item": ("put", "item", {"price": 1}),
    "delete item": ("delete", "item", None),
    "delete tag": ("delete", "tag", None),
}
# A change by someone else to what GET shows of each.
MEANWHILE = {
    "store": lambda client: new_item(client, 1, "Another"),
    "item": lambda client: client.put("/item/1", json={"description": "changed"}),
    "tag": lambda client: link(client, 1, 1),
}


def change(client, name: str, resources: dict, **headers: str):
    method, kind, body = CHANGES[name]
    return getattr(client, method)(resources[kind], json=body, headers=headers)


@pytest.mark.parametrize("name", CHANGES)
def test_if_match_with_a_stale_etag_is_412_and_changes_nothing(client, resources, name):
    kind = CHANGES[name][1]
    client.delete("/item/1/tag/1")
    stale = client.get(resources[kind]).headers["ETag"]
    MEANWHILE[kind](client)
    before = client.get(resources[kind])

    refused = change(client, name, resources, **{"If-Match": stale})

    assert_error(refused, 412, "changed since")
    assert refused.headers["ETag"] == before.headers["ETag"] != stale
    assert client.get(resources[kind]).get_data() == before.get_data()


@pytest.mark.parametrize("name", CHANGES)
def test_if_match_with_the_current_etag_goes_through(client, resources, name):
    client.delete("/item/1/tag/1")
    current = client.get(resources[CHANGES[name][1]]).headers["ETag"]
    assert change(client, name, resources, **{"If-Match": current}).status_code == 200


def test_if_match_star_and_weak_etags(client, resources):
    current = client.get(resources["item"]).headers["ETag"]
    # A weak ETag never matches strongly: a write needs the exact representation.
    assert_error(
        client.put(resources["item"], json={"price": 2}, headers={"If-Match": f"W/{current}"}), 412
    )
    assert (
        client.put(resources["item"], json={"price": 2}, headers={"If-Match": "*"}).status_code
        == 200
    )
    assert client.put(resources["item"], json={"price": 3}).status_code == 200


def test_if_match_is_checked_after_who_may_change_it(
    client, resources, anonymous, new_user, bearer
):
    other = bearer(new_user("mallory"))
    refused = anonymous.put(
        resources["item"], json={"price": 1}, headers={**other, "If-Match": '"stale"'}
    )
    assert_error(refused, 403)
    assert_error(client.put("/item/99", json={"price": 1}, headers={"If-Match": '"x"'}), 404)


def test_required_if_match_refuses_blind_changes(client, resources, app, monkeypatch):
    change_settings(monkeypatch, app, require_if_match=True)
    for name in ("put item", "put store", "delete item"):
        assert_error(change(client, name, resources), 428, "If-Match")
    current = client.get(resources["item"]).headers["ETag"]
    assert change(client, "put item", resources, **{"If-Match": current}).status_code == 200
    # What takes no If-Match is not refused: creating, linking, reading.
    assert client.post("/store", json={"name": "Free"}).status_code == 201
    assert client.delete(f"{resources['item']}/tag/1").status_code == 200


def test_required_if_match_still_asks_for_a_token_first(anonymous, resources, app, monkeypatch):
    change_settings(monkeypatch, app, require_if_match=True)
    assert_error(anonymous.put(resources["item"], json={"price": 1}), 401)
