"""Webhook endpoints: made, read, changed and deleted by their owner alone; the secret shown
once; a URL that names an address events may not go to refused when it is made."""

from collections import Counter

import pytest
from sqlalchemy import text
from support.api import assert_error, change_settings, created, new_store, signed_in
from support.http import run_together

URL = "https://hooks.example.com/stores"


def new_webhook(client, **fields) -> dict:
    return created(client.post("/webhooks", json={"url": URL, **fields}))


@pytest.mark.sqlite_too
def test_a_webhook_is_made_with_a_secret_shown_once(client):
    response = client.post("/webhooks", json={"url": URL, "event_types": ["store.created"]})
    webhook = created(response)
    assert webhook["secret"].startswith("whsec_")
    assert response.headers["Location"] == f"/webhooks/{webhook['id']}"
    shown = {key: value for key, value in webhook.items() if key != "secret"}
    assert shown["enabled"] is True
    assert shown["disabled_reason"] is None
    assert shown["store_id"] is None
    assert client.get(f"/webhooks/{webhook['id']}").get_json() == shown
    assert client.get("/webhooks").get_json() == [shown]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://user:secret@10.0.0.5/hook", "private"),
        ("http://[::ffff:c0a8:101]/hook", "private"),
        ("http://2130706433/hook", "loopback"),
        ("http://0x7f000001/hook", "loopback"),
        ("http://127\u30020\u30020\u30021/hook", "loopback"),
        ("http://[64:ff9b:1::a9fe:a9fe]/", "cloud metadata"),
    ],
)
def test_a_url_naming_an_address_events_may_not_go_to_is_refused(client, url, why):
    body = assert_error(client.post("/webhooks", json={"url": url}), 422)
    [message] = body["errors"]["json"]["url"]
    assert why in message
    assert "public addresses only" in message
    assert client.get("/webhooks").get_json() == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://hooks.example.com/"},
        {"url": "not a url"},
        {"url": URL, "event_types": ["store.exploded"]},
        {"url": "https://hooks.example.com/" + "a" * 2048},
        {"url": URL, "store_id": 0},
        {"url": "https://hooks.example.com:99999/"},
        {"url": "https://hooks.example.com:0/"},
    ],
)
def test_what_is_not_a_webhook_is_refused_saying_what_to_fix(client, body):
    errors = assert_error(client.post("/webhooks", json=body), 422)["errors"]["json"]
    assert set(errors) <= set(body)


def test_a_webhook_is_its_owners_alone(app, client, new_user, bearer):
    alice = signed_in(app, bearer(new_user("alice")))
    bob = signed_in(app, bearer(new_user("bob")))
    hook = new_webhook(alice)
    path = f"/webhooks/{hook['id']}"
    assert_error(bob.get(path), 404, f"Webhook {hook['id']} not found")
    assert_error(bob.patch(path, json={"url": URL + "/bob"}), 404)
    assert_error(bob.delete(path), 404)
    assert_error(bob.get(f"{path}/deliveries"), 404)
    assert bob.get("/webhooks").get_json() == []
    new_webhook(bob)
    assert [each["id"] for each in alice.get("/webhooks").get_json()] == [hook["id"]]
    # An admin sees everyone's.
    assert len(client.get("/webhooks").get_json()) == 2
    assert alice.get(path).get_json()["url"] == URL


def test_only_a_store_of_ones_own_can_be_followed(app, client, new_user, bearer):
    alice = signed_in(app, bearer(new_user("alice")))
    theirs = new_store(client, "The admin's")
    assert_error(alice.post("/webhooks", json={"url": URL, "store_id": theirs["id"]}), 403)
    assert_error(alice.post("/webhooks", json={"url": URL, "store_id": 999}), 404)
    mine = new_store(alice, "Alice's")
    assert new_webhook(alice, store_id=mine["id"])["store_id"] == mine["id"]


@pytest.mark.sqlite_too
def test_a_webhook_is_changed_and_deleted(client, engine):
    hook = new_webhook(client)
    path = f"/webhooks/{hook['id']}"
    changed = client.patch(path, json={"url": URL + "/v2", "event_types": ["item.created"]})
    assert changed.status_code == 200
    assert changed.get_json()["url"] == URL + "/v2"
    assert changed.get_json()["event_types"] == ["item.created"]
    assert_error(client.patch(path, json={"url": "http://10.1.1.1/"}), 422, None)
    assert client.get(path).get_json()["url"] == URL + "/v2"

    with engine.begin() as connection:
        connection.execute(
            text("UPDATE webhooks SET disabled_at = CURRENT_TIMESTAMP, disabled_reason = 'x'")
        )
    assert client.get(path).get_json()["enabled"] is False
    enabled = client.patch(path, json={"enabled": True}).get_json()
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)

    assert client.get(f"{path}/deliveries").get_json() == []
    assert client.delete(path).get_json() == {"message": f"Webhook {hook['id']} deleted."}
    assert_error(client.get(path), 404)


@pytest.mark.sqlite_too
def test_past_webhooks_per_user_a_new_one_is_refused_until_one_is_deleted(
    app, client, admin_headers, monkeypatch
):
    change_settings(monkeypatch, app, webhooks_per_user=2)
    first, _second = new_webhook(client), new_webhook(client)
    assert_error(client.post("/webhooks", json={"url": URL}), 409, "WEBHOOKS_PER_USER")
    assert client.delete(f"/webhooks/{first['id']}").status_code == 200
    new_webhook(client)


def test_webhooks_made_at_once_are_counted_one_after_the_other(app, admin_headers, monkeypatch):
    change_settings(monkeypatch, app, webhooks_per_user=3)

    def make(_number: int) -> int:
        return signed_in(app, admin_headers).post("/webhooks", json={"url": URL}).status_code

    assert Counter(run_together(8, make)) == {201: 3, 409: 5}
