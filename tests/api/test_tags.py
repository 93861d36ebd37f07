import pytest
from support.api import assert_error, link, new_item, new_store, new_tag, times


def test_create_and_get_tag(client, sql):
    store = new_store(client, "Books")
    tag = new_tag(client, store["id"], "fiction")
    assert tag == {
        "id": 1, "name": "fiction", "store_id": store["id"], **times(sql, "tags", 1),
        "store": {"id": store["id"], "name": "Books", "owner_id": 1, **times(sql, "stores", 1)},
        "items": [], "items_has_more": False, "items_url": "/tag/1/item",
    }  # fmt: skip
    assert client.get("/tag/1").get_json() == tag


def test_tags_of_a_store(client):
    books, comics = new_store(client, "Books"), new_store(client, "Comics")
    new_tag(client, books["id"], "fiction")
    new_tag(client, comics["id"], "manga")
    names = [tag["name"] for tag in client.get(f"/store/{books['id']}/tag").get_json()]
    assert names == ["fiction"]


def test_tags_of_a_missing_store_is_404(client):
    assert_error(client.get("/store/4/tag"), 404, "Store 4 not found")
    assert_error(client.post("/store/4/tag", json={"name": "x"}), 404, "Store 4 not found")


@pytest.mark.sqlite_too
def test_tag_name_is_unique_within_its_store_only(client):
    books, comics = new_store(client, "Books"), new_store(client, "Comics")
    new_tag(client, books["id"], "sale")
    new_tag(client, comics["id"], "sale")
    assert_error(client.post(f"/store/{books['id']}/tag", json={"name": "sale"}), 409)


def test_link_and_unlink(client, sql):
    store = new_store(client)
    item, tag = new_item(client, store["id"], "Novel"), new_tag(client, store["id"], "fiction")

    linked = link(client, item["id"], tag["id"])
    assert linked["item"]["name"] == "Novel"
    assert linked["tag"]["name"] == "fiction"
    assert [i["id"] for i in client.get(f"/tag/{tag['id']}").get_json()["items"]] == [item["id"]]

    response = client.delete(f"/item/{item['id']}/tag/{tag['id']}")
    assert response.status_code == 200
    assert response.get_json()["message"] == f"Tag {tag['id']} unlinked from item {item['id']}."
    assert sql("SELECT count(*) FROM items_tags") == [(0,)]


@pytest.mark.sqlite_too
def test_linking_twice_is_a_conflict(client):
    store = new_store(client)
    item, tag = new_item(client, store["id"]), new_tag(client, store["id"])
    link(client, item["id"], tag["id"])
    assert_error(client.post(f"/item/{item['id']}/tag/{tag['id']}"), 409, "linked already")


def test_linking_a_tag_of_another_store_is_a_conflict(client, sql):
    books, comics = new_store(client, "Books"), new_store(client, "Comics")
    item, tag = new_item(client, books["id"]), new_tag(client, comics["id"])
    assert_error(client.post(f"/item/{item['id']}/tag/{tag['id']}"), 409, "item's own store")
    assert sql("SELECT count(*) FROM items_tags") == [(0,)]


def test_link_with_missing_item_or_tag_is_404(client):
    store = new_store(client)
    item, tag = new_item(client, store["id"]), new_tag(client, store["id"])
    assert_error(client.post(f"/item/99/tag/{tag['id']}"), 404, "Item 99 not found")
    assert_error(client.post(f"/item/{item['id']}/tag/99"), 404, "Tag 99 not found")


def test_unlinking_what_is_not_linked_is_404(client):
    store = new_store(client)
    item, tag = new_item(client, store["id"]), new_tag(client, store["id"])
    assert_error(client.delete(f"/item/{item['id']}/tag/{tag['id']}"), 404, "not linked")


@pytest.mark.sqlite_too
def test_deleting_a_linked_tag_is_a_conflict(client, sql):
    store = new_store(client)
    item, tag = new_item(client, store["id"]), new_tag(client, store["id"])
    link(client, item["id"], tag["id"])

    assert_error(client.delete(f"/tag/{tag['id']}"), 409, "unlink them first")
    assert sql("SELECT count(*) FROM tags") == [(1,)]

    client.delete(f"/item/{item['id']}/tag/{tag['id']}")
    response = client.delete(f"/tag/{tag['id']}")
    assert response.status_code == 200
    assert response.get_json() == {"message": f"Tag {tag['id']} deleted."}
    assert sql("SELECT count(*) FROM tags") == [(0,)]
    assert sql("SELECT count(*) FROM items") == [(1,)]


def test_missing_tag_is_404(client):
    assert_error(client.get("/tag/5"), 404, "Tag 5 not found")
    assert_error(client.delete("/tag/5"), 404, "Tag 5 not found")
