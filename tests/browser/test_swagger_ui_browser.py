"""Swagger UI in a real browser: it renders offline, a user can run a cascading delete,
import a small catalogue file, and reads its writes when GETs go to a lagging replica."""

import json
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import sync_playwright
from support import PASSWORD
from support.http import server_env, sign_up
from support.replication import Replication

from catalogue.runs import run_import
from tools.gunicorn_server import API, gunicorn

# Debian's Chromium (`make test` installs it), never a browser Playwright would download.
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def page():
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )  # fmt: skip
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


def operation(page, method: str, path: str):
    return page.locator(f".opblock-{method}").filter(
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
    )


def try_it_out(
    page,
    method: str,
    path: str,
    body: dict | str | None = None,
    screenshot: Path | None = None,
    media_type: str | None = None,
    **parameters,
) -> dict:
    """Open an operation, fill it in like a user, execute it and read the live response.
    A `body` given as text is sent as it is, as `media_type` (picked in the body's menu)."""
    block = operation(page, method, path)
    block.locator(".opblock-summary").click()
    block.locator(".try-out__btn").click()
    for name, value in parameters.items():
        block.locator(f'tr[data-param-name="{name}"] input').fill(str(value))
    if media_type is not None:
        block.locator(".body-param-content-type select").select_option(media_type)
    if body is not None:
        text = body if isinstance(body, str) else json.dumps(body)
        block.locator("textarea.body-param__text").fill(text)
    block.locator(".execute").click()
    live = block.locator(".live-responses-table .response")
    live.wait_for()
    status = int(live.locator(".response-col_status").inner_text().strip())
    payload = json.loads(live.locator(".response-col_description pre").first.inner_text())
    if screenshot:
        live.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot))
    block.locator(".opblock-summary").click()  # fold it again
    return {"status": status, "body": payload}


def authorize(page, access_token: str) -> None:
    """Paste a token into the Authorize dialog, as a user does after logging in."""
    page.locator(".auth-wrapper .authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.locator("input").fill(access_token)
    dialog.locator(".auth-btn-wrapper .authorize").click()
    dialog.locator(".auth-btn-wrapper .btn-done").click()


def test_user_runs_a_cascading_delete_from_swagger_ui(live_server, app, new_user, page, artifacts):
    new_user("admin", role="admin")  # as `flask create-admin admin` would make
    requested_hosts = set()
    page.on("request", lambda request: requested_hosts.add(urlsplit(request.url).hostname))

    page.goto(f"{live_server}/swagger-ui")
    page.locator(".opblock-tag-section").first.wait_for()
    groups = {tag.strip().lower() for tag in page.locator(".opblock-tag span").all_inner_texts()}
    assert {"stores", "items", "tags", "users", "health"} <= groups

    login = try_it_out(page, "post", "/login", {"username": "admin", "password": PASSWORD})
    assert login["status"] == 200
    authorize(page, login["body"]["access_token"])

    store = try_it_out(page, "post", "/store", {"name": "From the browser"})
    assert store["status"] == 201
    store_id = store["body"]["id"]
    # With an Idempotency-Key typed into its field; retried with it: one item (the delete
    # below counts 1).
    lamp, key = {"name": "Lamp", "price": 20, "store_id": store_id}, {"Idempotency-Key": "lamp-1"}
    item = try_it_out(page, "post", "/item", lamp, **key)
    assert item["status"] == 201
    token = {"Authorization": f"Bearer {login['body']['access_token']}"}
    again = requests.post(
        f"{live_server}/item",
        data=json.dumps(lamp),
        headers={**token, **key, "Content-Type": "application/json"},
        timeout=10,
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == item["body"]["id"]

    deleted = try_it_out(
        page,
        "delete",
        "/store/{store_id}",
        screenshot=artifacts / "swagger-ui.png",
        store_id=store_id,
    )

    assert deleted["status"] == 200
    assert deleted["body"]["deleted"] == {"items": 1, "tags": 0, "links": 0, "exact": True}
    assert deleted["body"]["message"].startswith(f"Store {store_id} deleted with 1 items")
    assert requests.get(f"{live_server}/item/{item['body']['id']}").status_code == 404

    restored = try_it_out(
        page, "post", "/store/{store_id}/restore", {"name": "Restored"}, store_id=store_id
    )

    assert restored["status"] == 200
    assert restored["body"]["name"] == "Restored"
    assert requests.get(f"{live_server}/item/{item['body']['id']}").status_code == 200
    assert requested_hosts == {"127.0.0.1"}


def test_user_imports_a_small_csv_file_from_swagger_ui(live_server, app, new_user, page):
    new_user("admin", role="admin")
    page.goto(f"{live_server}/swagger-ui")
    page.locator(".opblock-tag-section").first.wait_for()
    login = try_it_out(page, "post", "/login", {"username": "admin", "password": PASSWORD})
    authorize(page, login["body"]["access_token"])
    store = try_it_out(page, "post", "/store", {"name": "Imported in the browser"})
    store_id = store["body"]["id"]

    catalogue = "name,price,tags\nNovel,9.99,fiction|paperback\nPen,1,\n"
    taken = try_it_out(
        page, "post", "/store/{store_id}/item/import", catalogue, media_type="text/csv",
        store_id=store_id,
    )  # fmt: skip
    assert taken["status"] == 202, taken
    assert taken["body"]["media_type"] == "text/csv"
    with app.app_context():  # the worker's part
        assert run_import(taken["body"]["id"])

    status = try_it_out(page, "get", "/import/{import_id}", import_id=taken["body"]["id"])
    assert status["body"]["state"] == "succeeded", status
    assert (status["body"]["items"], status["body"]["links"]) == (2, 2)
    exported = requests.get(f"{live_server}/store/{store_id}/item/export", timeout=10)
    assert [json.loads(line)["name"] for line in exported.text.splitlines()] == ["Novel", "Pen"]


def test_swagger_ui_reads_its_writes_from_a_lagging_replica(page):
    """Swagger UI sends no token with a public GET: the cookie of its write has it read the
    primary while the replica (its replay paused) lacks the store."""
    with ExitStack() as stack:
        replication = Replication(stack)
        primary, replica = replication.urls("psycopg2")
        env = server_env(
            primary, DATABASE_REPLICA_URLS=replica, DATABASE_REPLICA_MAX_LAG_SECONDS="30"
        )
        server = stack.enter_context(gunicorn(API, env, "--workers", "1"))
        headers = sign_up(server.url, "owner")
        requests.get(f"{server.url}/store", timeout=10)  # the checks start
        page.goto(f"{server.url}/swagger-ui")
        page.locator(".opblock-tag-section").first.wait_for()
        authorize(page, headers["Authorization"].removeprefix("Bearer "))
        with replication.replay_paused():
            store = try_it_out(page, "post", "/store", {"name": "From the browser"})
            assert store["status"] == 201
            path = f"{server.url}/store/{store['body']['id']}"
            assert requests.get(path, timeout=10).status_code == 404  # not on the replica

            found = try_it_out(page, "get", "/store/{store_id}", store_id=store["body"]["id"])

            assert found["status"] == 200
            assert found["body"]["name"] == "From the browser"
