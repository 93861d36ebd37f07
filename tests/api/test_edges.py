"""Bad input at the edges is a 4xx in the one JSON shape, never a 5xx."""

import logging
import re
from typing import NamedTuple

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


class JsonOperation(NamedTuple):
    method: str
    path: str  # with its ids filled in
    needs_token: bool
    fields: dict[str, str | None]  # name: JSON type


def json_operations(client) -> list[JsonOperation]:
    """Each operation of the app's own spec that takes a JSON body."""
    spec = client.get("/openapi.json").get_json()
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            content = (
                operation.get("requestBody", {}).get("content", {})
                if method != "parameters"
                else {}
            )
            if "application/json" not in content:
                continue
            reference = content["application/json"]["schema"]["$ref"]
            schema = spec["components"]["schemas"][reference.rsplit("/", 1)[1]]
            url = re.sub(r"\{\w+\}", "1", path)
            found.append(
                JsonOperation(
                    method,
                    url,
                    bool(operation.get("security")),
                    {name: field.get("type") for name, field in schema["properties"].items()},
                )
            )
    return found


@pytest.fixture
def no_error_logged(caplog):
    yield
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


HUGE = "9" * 5000  # past Python's int() limit of 4,300 digits


@pytest.mark.sqlite_too
@pytest.mark.parametrize("number", [HUGE, f"-{HUGE}", f"[{HUGE}]"])
def test_an_integer_too_long_for_python_is_400_on_every_json_endpoint(
    client, anonymous, no_error_logged, number
):
    operations = json_operations(client)
    assert {"/login", "/register", "/store", "/item"} <= {each.path for each in operations}
    body = f'{{"name": {number}, "price": 1}}'
    for operation in operations:
        for caller in (client,) if operation.needs_token else (client, anonymous):
            response = caller.open(
                operation.path, method=operation.method, data=body, content_type="application/json"
            )
            errors = assert_error(response, 400)["errors"]
            assert errors == {"json": ["Integers in JSON have at most 4,300 digits."]}, operation


@pytest.mark.sqlite_too
@pytest.mark.parametrize("value", [int(HUGE[:4000]), 1e400, -1e400, HUGE, "1e400"])
def test_huge_or_infinite_numbers_in_any_field_are_422_naming_it(client, no_error_logged, value):
    """Every field of every JSON body given a number no column holds (Python's json reads
    1e400 as infinity); and every numeric field given one spelt as a string."""
    for operation in json_operations(client):
        for name, kind in operation.fields.items():
            if isinstance(value, str) and kind not in ("integer", "number"):
                continue
            response = client.open(operation.path, method=operation.method, json={name: value})
            errors = assert_error(response, 422)["errors"]["json"]
            assert name in errors, (operation, name)


@pytest.mark.sqlite_too
@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (f"/store?page={HUGE[:4000]}", {}, 400),
        (f"/store?after={HUGE[:4000]}", {}, 422),
        (f"/item?page_size={HUGE[:4000]}", {}, 422),
        (f"/store/{HUGE[:4000]}", {}, 404),
        ("/store/1", {"If-None-Match": HUGE[:4000]}, 404),
    ],
)
def test_huge_numbers_in_urls_and_headers_are_4xx(client, no_error_logged, path, headers, status):
    assert_error(client.get(path, headers=headers), status)


@pytest.mark.sqlite_too
def test_huge_numbers_in_write_headers_are_4xx(client, no_error_logged):
    store = new_store(client)
    keyed = client.post("/store", json={"name": "x"}, headers={"Idempotency-Key": HUGE[:4000]})
    assert_error(keyed, 400)
    stale = client.put(f"/store/{store['id']}", json={"name": "x"}, headers={"If-Match": HUGE})
    assert_error(stale, 412)


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
