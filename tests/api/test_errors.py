"""Client mistakes are 4xx in the one JSON error shape; nothing answers HTML or a bare 500."""

import pytest
from support.api import assert_error, new_item, new_store


@pytest.mark.parametrize(
    "path",
    ["/nowhere", "/store/0", "/store/-1", "/store/2147483648", "/store/99999999999999999999",
     "/store/abc", "/store/1e9", "/item/0/tag/1", "/item/1/tag/-2", "/tag/2147483648"],
)  # fmt: skip
def test_impossible_ids_and_unknown_routes_are_json_404(client, path):
    assert_error(client.delete(path), 404)
    if "/tag/" not in path.removeprefix("/tag/"):
        assert_error(client.get(path), 404)


def test_largest_possible_id_is_a_plain_not_found(client):
    assert_error(client.get("/store/2147483647"), 404, "Store 2147483647 not found")


def test_wrong_method_is_405_with_allow(client):
    response = client.patch("/store/1")
    assert_error(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
    assert client.post("/tag/1").headers["Allow"] == "DELETE, GET, HEAD, OPTIONS"


def test_malformed_json_is_400(client):
    response = client.post("/store", data='{"name": ', content_type="application/json")
    body = assert_error(response, 400)
    assert body["errors"] == {"json": ["Invalid JSON body."]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 81}, "name"),
        ({"name": "a\u0000b"}, "name"),
        ({"name": 7}, "name"),
        ({"name": None}, "name"),
        ({"name": "ok", "id": 5}, "id"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ],
)
def test_invalid_store_is_422_per_field(client, sql, body, field):
    errors = assert_error(client.post("/store", json=body), 422)["errors"]["json"]
    assert field in errors
    assert sql("SELECT count(*) FROM stores") == [(0,)]


def test_name_of_80_characters_is_fine(client):
    assert new_store(client, "x" * 80)["name"] == "x" * 80


@pytest.mark.sqlite_too
@pytest.mark.parametrize(
    "price",
    [-0.01, 100_000_000, 99999999.995, 1e300, "12.50", True, None, "NaN", "Infinity"],
)
def test_invalid_price_is_422(client, sql, price):
    store = new_store(client)
    # NaN and Infinity are not JSON, but Python's parser reads them: send them raw.
    raw_price = price if price in ("NaN", "Infinity") else f"{price!r}".replace("'", '"')
    raw_price = {"True": "true", "None": "null"}.get(raw_price, raw_price)
    body = f'{{"name": "x", "store_id": {store["id"]}, "price": {raw_price}}}'
    response = client.post("/item", data=body, content_type="application/json")
    assert "price" in assert_error(response, 422)["errors"]["json"]
    assert sql("SELECT count(*) FROM items") == [(0,)]


@pytest.mark.parametrize("store_id", [0, -3, 2**31, "1", 1.5, None])
def test_impossible_store_id_in_body_is_422(client, store_id):
    response = client.post("/item", json={"name": "x", "price": 1, "store_id": store_id})
    assert "store_id" in assert_error(response, 422)["errors"]["json"]


def test_nul_in_description_is_422(client):
    store = new_store(client)
    response = client.post(
        "/item", json={"name": "x", "price": 1, "store_id": store["id"], "description": "\u0000"}
    )
    assert "description" in assert_error(response, 422)["errors"]["json"]


def test_unexpected_database_error_is_json_500_without_sql(app, client, engine, monkeypatch):
    # Tests let exceptions through to pytest; a server answers them.
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    store = new_store(client)
    new_item(client, store["id"])
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE items RENAME TO items_away")
    try:
        response = client.get(f"/store/{store['id']}")
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE items_away RENAME TO items")
    body = assert_error(response, 500)
    assert "SELECT" not in response.get_data(as_text=True)
    assert "items" not in body["message"]
    # The failed transaction was rolled back: the next request is served.
    assert client.get(f"/store/{store['id']}").status_code == 200
