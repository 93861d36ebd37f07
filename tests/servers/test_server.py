"""The real server: gunicorn, several workers, PostgreSQL, over HTTP."""

import pytest
import requests
from support.api import purge
from support.http import store_item_and_tag_over_http

pytestmark = [pytest.mark.sqlite_too, pytest.mark.pgbouncer_too]


def test_cascading_delete_through_gunicorn(app, live_server, http, sql):
    store, item, tag = store_item_and_tag_over_http(http, live_server, "Live")
    assert http.post(f"{live_server}/item/{item['id']}/tag/{tag['id']}").status_code == 201

    response = http.delete(f"{live_server}/store/{store['id']}")

    assert response.status_code == 200
    assert response.json()["deleted"] == {"items": 1, "tags": 1, "links": 1, "exact": True}
    assert http.get(f"{live_server}/item/{item['id']}").status_code == 404
    assert http.post(f"{live_server}/store/{store['id']}/purge").status_code == 202
    assert purge(app) == [store["id"]]
    assert sql("SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM items_tags)") == [(0,)]


def test_store_reads_stay_right_once_connections_keep_their_plans(live_server, http):
    # On PostgreSQL store_document keeps a generic plan after 5 calls on a connection (and
    # psycopg 3 would prepare the call after 5 runs, which PgBouncer cannot carry): 40 reads
    # over 4 workers, two stores in turn, each answer its own store.
    stores = [store_item_and_tag_over_http(http, live_server, name) for name in ("One", "Two")]
    for _ in range(20):
        for store, item, tag in stores:
            shown = requests.get(f"{live_server}/store/{store['id']}").json()
            assert shown["name"] == store["name"]
            for collection, only_entry in (("items", item), ("tags", tag)):
                entries = [(entry["id"], entry["store_id"]) for entry in shown[collection]]
                assert entries == [(only_entry["id"], store["id"])], collection


def test_errors_over_http_are_json(live_server, app):
    not_found = requests.get(f"{live_server}/no/such/page")
    wrong_method = requests.patch(f"{live_server}/store")
    assert (not_found.status_code, not_found.headers["Content-Type"]) == (404, "application/json")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert wrong_method.json()["code"] == 405


def test_swagger_ui_is_served_with_its_own_assets(live_server, app):
    page = requests.get(f"{live_server}/swagger-ui")
    assert page.status_code == 200
    assert "/swagger-ui-assets/swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another host
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert requests.get(f"{live_server}/swagger-ui-assets/{asset}").status_code == 200
