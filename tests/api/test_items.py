import pytest
from support.api import assert_error, link, new_item, new_store, new_tag, times


def test_create_item_answers_it_with_its_store_and_tags(client, sql):
    store = new_store(client, "Books")
    item = new_item(client, store["id"], "Novel", 12.99)
    assert item == {
        "id": 1, "name": "Novel", "price": 12.99, "description": None, "sku": None,
        "store_id": store["id"], **times(sql, "items", 1),
        "store": {"id": store["id"], "name": "Books", "owner_id": 1, **times(sql, "stores", 1)},
        "tags": [], "tags_has_more": False, "tags_url": "/item/1/tag",
    }  # fmt: skip
    assert client.get("/item/1").get_json() == item


def test_item_nests_its_tags(client, sql):
    store = new_store(client)
    item = new_item(client, store["id"])
    tag = new_tag(client, store["id"], "fiction")
    link(client, item["id"], tag["id"])
    assert client.get(f"/item/{item['id']}").get_json()["tags"] == [
        {
            "id": tag["id"],
            "name": "fiction",
            "store_id": store["id"],
            **times(sql, "tags", tag["id"]),
        }
    ]


@pytest.mark.sqlite_too
def test_item_for_a_missing_store_is_404_naming_the_store(client, sql):
    response = client.post("/item", json={"name": "A", "price": 1, "store_id": 5})
    assert_error(response, 404, "Store 5 not found.")
    assert sql("SELECT count(*) FROM items") == [(0,)]


def test_price_keeps_two_decimals_and_is_a_number(client):
    store = new_store(client)
    item = new_item(client, store["id"], price=99999999.99)
    assert item["price"] == 99999999.99
    assert new_item(client, store["id"], price=0)["price"] == 0


@pytest.mark.sqlite_too
@pytest.mark.parametrize(("sent", "stored"), [(1.005, 1.01), (2.004, 2.0), (1.5e-109, 0)])
def test_price_is_rounded_to_cents(client, sql, sent, stored):
    item = new_item(client, new_store(client)["id"], price=sent)
    assert item["price"] == stored
    assert [float(price) for (price,) in sql("SELECT price FROM items")] == [stored]


def test_update_item_changes_only_the_given_fields(client):
    store = new_store(client)
    item = new_item(client, store["id"], "Novel", 10, description="Old")

    response = client.put(f"/item/{item['id']}", json={"price": 8.5})

    assert response.status_code == 200
    body = client.get(f"/item/{item['id']}").get_json()
    assert (body["name"], body["price"], body["description"]) == ("Novel", 8.5, "Old")
    assert response.get_json() == body


def test_update_with_no_fields_changes_nothing(client):
    item = new_item(client, new_store(client)["id"])
    response = client.put(f"/item/{item['id']}", json={})
    assert response.status_code == 200
    assert response.get_json() == item


def test_update_cannot_move_an_item_to_another_store(client):
    item = new_item(client, new_store(client)["id"])
    other = new_store(client, "Other")
    body = assert_error(client.put(f"/item/{item['id']}", json={"store_id": other["id"]}), 422)
    assert "store_id" in body["errors"]["json"]


def test_update_missing_item_is_404_and_creates_nothing(client, sql):
    assert_error(client.put("/item/3", json={"name": "X"}), 404, "Item 3 not found")
    assert sql("SELECT count(*) FROM items") == [(0,)]


@pytest.mark.sqlite_too
def test_delete_item_keeps_its_store_and_tags(client, sql):
    store = new_store(client)
    item = new_item(client, store["id"])
    tag = new_tag(client, store["id"])
    link(client, item["id"], tag["id"])

    response = client.delete(f"/item/{item['id']}")

    assert response.status_code == 200
    assert response.get_json() == {"message": f"Item {item['id']} deleted."}
    assert sql("SELECT count(*) FROM items") == [(0,)]
    assert sql("SELECT count(*) FROM items_tags") == [(0,)]
    assert sql("SELECT id FROM stores") == [(store["id"],)]
    assert sql("SELECT id FROM tags") == [(tag["id"],)]
    assert_error(client.delete(f"/item/{item['id']}"), 404)


def test_item_list_filters_by_store_and_paginates(client):
    books, comics = new_store(client, "Books"), new_store(client, "Comics")
    for number in range(3):
        new_item(client, books["id"], f"Book {number}")
        new_item(client, comics["id"], f"Comic {number}")

    everything = client.get("/item")
    comics_only = client.get(f"/item?store_id={comics['id']}&page_size=2")

    assert len(everything.get_json()) == 6
    assert [i["name"] for i in comics_only.get_json()] == ["Comic 0", "Comic 1"]
    next_page = client.get(comics_only.headers["Link"].split(">")[0].strip("<"))
    assert [i["name"] for i in next_page.get_json()] == ["Comic 2"]
    assert "Link" not in next_page.headers
    assert client.get("/item?store_id=99").get_json() == []


@pytest.mark.parametrize("store_id", ["0", "-1", "x", "2147483648"])
def test_item_list_rejects_impossible_store_ids(client, store_id):
    body = assert_error(client.get(f"/item?store_id={store_id}"), 422)
    assert "store_id" in body["errors"]["query"]
