import pytest
from support.api import assert_error, link, new_item, new_store, new_tag, times

from db import db
from models import StoreModel
from rendering.store_document import with_firsts
from schemas import StoreSchema


def test_create_and_get_store(client, sql):
    store = new_store(client, "Books")
    # The client is the admin, user 1: the store is theirs.
    assert store == {
        "id": 1, "name": "Books", "owner_id": 1, **times(sql, "stores", 1),
        "items": [], "items_has_more": False, "items_url": "/store/1/item",
        "tags": [], "tags_has_more": False, "tags_url": "/store/1/tag",
    }  # fmt: skip
    assert client.get(f"/store/{store['id']}").get_json() == store


@pytest.mark.postgres_path
def test_store_nests_its_items_and_tags(client, sql):
    store = new_store(client)
    item = new_item(client, store["id"], "Novel", 12.5, description="Long")
    tag = new_tag(client, store["id"], "fiction")
    link(client, item["id"], tag["id"])

    body = client.get(f"/store/{store['id']}").get_json()

    assert body["items"] == [
        {"id": item["id"], "name": "Novel", "price": 12.5, "description": "Long", "sku": None,
         "store_id": 1, **times(sql, "items", item["id"])}
    ]  # fmt: skip
    assert body["tags"] == [
        {"id": tag["id"], "name": "fiction", "store_id": 1, **times(sql, "tags", tag["id"])}
    ]


@pytest.mark.sqlite_too
def test_duplicate_store_name_is_a_conflict(client):
    new_store(client, "Books")
    assert_error(client.post("/store", json={"name": "Books"}), 409, "pick another name")


def test_rename_store(client):
    store = new_store(client, "Books")
    response = client.put(f"/store/{store['id']}", json={"name": "Comics"})
    assert response.status_code == 200
    assert response.get_json()["name"] == "Comics"
    assert client.get(f"/store/{store['id']}").get_json()["name"] == "Comics"


def test_rename_to_a_taken_name_is_a_conflict(client):
    new_store(client, "Books")
    comics = new_store(client, "Comics")
    assert_error(client.put(f"/store/{comics['id']}", json={"name": "Books"}), 409)
    assert client.get(f"/store/{comics['id']}").get_json()["name"] == "Comics"


def test_missing_store_is_404(client):
    for method in ("get", "delete"):
        assert_error(getattr(client, method)("/store/7"), 404, "Store 7 not found")
    assert_error(client.put("/store/7", json={"name": "X"}), 404)


@pytest.mark.parametrize("query", ["page=0", "page_size=0", "page_size=101", "page=x"])
def test_bad_pagination_is_422(client, query):
    assert_error(client.get(f"/store?{query}"), 422)


@pytest.mark.postgres_path
@pytest.mark.sqlite_too
def test_a_store_reads_exactly_as_its_schema_says(app, client, database, statements):
    # On PostgreSQL the database renders GET /store/<id>; elsewhere StoreSchema does.
    store = new_store(client, 'Café ☕ "quoted" \\ back')
    new_item(client, store["id"], "Free", price=0)
    new_item(client, store["id"], "Dear", price=99999999.99, description="Line\nbreak, ünï")
    new_item(client, store["id"], "Round", price=10)
    new_tag(client, store["id"], "b-tag")
    new_tag(client, store["id"], "a-tag")
    for number in range(12):  # more than a store shows
        new_item(client, store["id"], f"More {number}")
    empty = new_store(client, "Empty")

    rendered = {}
    for store_id in (store["id"], empty["id"]):
        with statements() as sent:
            response = client.get(f"/store/{store_id}")
        with app.app_context():
            model = with_firsts([db.session.get(StoreModel, store_id)])[0]
            assert response.get_json() == StoreSchema().dump(model)
        assert response.mimetype == "application/json"
        assert len(sent) == (3 if database == "sqlite" else 1)
        rendered[store_id] = response.get_json()

    shown = rendered[store["id"]]
    assert [item["price"] for item in shown["items"][:3]] == [0, 99999999.99, 10]
    assert (len(shown["items"]), shown["items_has_more"]) == (10, True)
    assert (len(shown["tags"]), shown["tags_has_more"]) == (2, False)
    assert [tag["name"] for tag in rendered[store["id"]]["tags"]] == ["b-tag", "a-tag"]
    assert rendered[empty["id"]] == {**empty, "items": [], "tags": []}
