"""Bad input at the edges is a 4xx in the one JSON shape, never a 5xx."""

import pytest
from sqlalchemy.engine import make_url
from support.api import assert_error, new_item, new_store

from config.settings import Settings


def test_health_reports_the_database(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "reachable"}


def test_body_over_the_limit_is_413(app, client):
    too_big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post(
        "/store", data=f'{{"name": "{too_big}"}}', content_type="application/json"
    )
    assert_error(response, 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_body_of_another_type_is_415(client, sql, content_type):
    response = client.post("/store", data='{"name": "Books"}', content_type=content_type)
    assert_error(response, 415, "Content-Type: application/json")
    assert sql("SELECT count(*) FROM stores") == [(0,)]


def test_no_body_at_all_is_422(client):
    for response in (client.post("/store"), client.put("/item/1"), client.put("/store/1")):
        assert assert_error(response, 422)["errors"] == {
            "json": ["Send a JSON object in the body."]
        }


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"name": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
        b'{"name": "\xff\xfe"}',
        b"\x00\x01",
        b"",
    ],
    ids=["deep-array", "deep-object", "invalid-utf8", "binary", "empty"],
)
def test_unparseable_or_hostile_json_is_4xx(client, body):
    response = client.post("/store", data=body, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code)


@pytest.mark.sqlite_too
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/store", r'{"name": "\ud800"}'),
        ("/store", r'{"name": "tail \udc00"}'),
        (
            "/register",
            r'{"username": "alice", "email": "a@example.com", "password": "\udfff1234567"}',
        ),
        ("/login", r'{"\ud83d": 1, "username": "alice", "password": "x"}'),
    ],
)
def test_lone_surrogates_are_400_before_the_database_sees_them(client, sql, path, body):
    response = client.post(path, data=body, content_type="application/json")
    assert_error(response, 400)
    assert response.get_json()["errors"] == {
        "json": ["The JSON holds a lone surrogate, which is not text."]
    }
    assert sql("SELECT count(*) FROM stores") == [(0,)]


def test_a_surrogate_pair_is_text(client):
    response = client.post(
        "/store", data=r'{"name": "Books \ud83d\udcda"}', content_type="application/json"
    )
    assert response.status_code == 201
    assert response.get_json()["name"] == "Books \N{BOOKS}"


@pytest.mark.sqlite_too
def test_a_nul_in_a_login_username_is_422(client):
    response = client.post("/login", json={"username": "alice\x00", "password": "x"})
    assert_error(response, 422)


def test_json_that_is_not_an_object_is_422(client):
    for body in ("[]", '"Books"', "42", "null"):
        response = client.post("/store", data=body, content_type="application/json")
        assert_error(response, 422)


@pytest.mark.parametrize(
    ("query", "wrong"),
    [("page=%ff", "page"), ("page=1e9", "page"), ("page=-1", "page"),
     ("page_size=99999999999999999999", "page_size"), ("store_id=%00", "store_id"),
     ("store_id=1&store_id=2", "store_id"), ("page=1&page=x", "page"),
     ("page=" + "9" * 5000, "page")],
)  # fmt: skip
def test_garbage_query_strings_are_422_naming_the_parameter(client, query, wrong):
    body = assert_error(client.get(f"/item?{query}"), 422)
    assert list(body["errors"]["query"]) == [wrong]


def test_unknown_query_parameters_are_422_naming_them_as_unknown_body_fields_are(client):
    new_item(client, new_store(client)["id"])
    body = assert_error(client.get("/item?%zz=1&_=1732500000&page_size=5"), 422)
    assert body["errors"]["query"] == {"%zz": ["Unknown field."], "_": ["Unknown field."]}


def test_huge_description_within_the_body_limit_is_422(client):
    store = new_store(client)
    response = client.post(
        "/item",
        json={"name": "x", "price": 1, "store_id": store["id"], "description": "x" * 20_000},
    )
    assert "description" in assert_error(response, 422)["errors"]["json"]


def test_update_with_a_body_of_another_type_is_415(client):
    item = new_item(client, new_store(client)["id"])
    response = client.put(f"/item/{item['id']}", data="name=x", content_type="text/plain")
    assert_error(response, 415)


def test_overlong_url_is_json_414(client):
    assert_error(client.get("/item?page=" + "1" * 9000), 414, "under 8192 characters")


@pytest.mark.parametrize(
    "given", ["postgres://user:secret@db:5432/stores", "postgresql://user:secret@db:5432/stores"]
)
def test_host_style_database_urls_select_the_faster_driver_psycopg2(given):
    url = make_url(Settings(database_url=given).database_url)
    assert (url.get_dialect().name, url.get_dialect().driver) == ("postgresql", "psycopg2")
    assert (url.username, url.password, url.host, url.database) == (
        "user",
        "secret",
        "db",
        "stores",
    )
