"""Idempotency-Key: a retried POST gets the first answer again, and writes nothing twice."""

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import event, text
from support.api import assert_error, change_settings, link, new_item, new_store, new_tag

from db import READS, db
from security.throttle import PRUNE_BATCH
from web.idempotency import REPLAYED, fingerprint

pytestmark = pytest.mark.sqlite_too

KEY = "3f1c2d9e-7b44-4a5e-9c1f-0d2b6e8a9f10"


def keyed(key: str = KEY) -> dict[str, str]:
    return {"Idempotency-Key": key}


def count(sql, table: str) -> int:
    return sql(f"SELECT count(*) FROM {table}")[0][0]


def store_with_item_and_tag(client) -> tuple[dict, dict, dict]:
    store = new_store(client)
    return store, new_item(client, store["id"]), new_tag(client, store["id"])


# Each POST that creates or changes something: (the request, given a store with an item and
# a tag; the table that one more row in would mean it ran twice).
POSTS = {
    "store": (lambda s, i, t: ("/store", {"name": "Music"}), "stores"),
    "item": (lambda s, i, t: ("/item", {"name": "Lamp", "price": 5, "store_id": s["id"]}), "items"),
    "tag": (lambda s, i, t: (f"/store/{s['id']}/tag", {"name": "new"}), "tags"),
    "link": (lambda s, i, t: (f"/item/{i['id']}/tag/{t['id']}", None), "items_tags"),
    "register": (
        lambda s, i, t: ("/register", {"username": "ann", "email": "a@x.io", "password": "p" * 8}),
        "users",
    ),
}


@pytest.mark.parametrize("kind", POSTS)
def test_a_retry_gets_the_first_answer_and_writes_nothing(client, sql, kind):
    request, table = POSTS[kind]
    path, body = request(*store_with_item_and_tag(client))
    before = count(sql, table)

    first = client.post(path, json=body, headers=keyed())
    retries = [client.post(path, json=body, headers=keyed()) for _ in range(3)]

    assert first.status_code == 201, first.get_json()
    assert REPLAYED not in first.headers
    assert count(sql, table) == before + 1
    for retry in retries:
        assert retry.status_code == 201
        assert retry.headers[REPLAYED] == "true"
        assert retry.get_data() == first.get_data()
        for header in ("Content-Type", "Location", "ETag"):
            assert retry.headers.get(header) == first.headers.get(header), header


def test_restore_and_purge_are_answered_once(client, sql):
    store = new_store(client)
    client.delete(f"/store/{store['id']}")
    restored = [client.post(f"/store/{store['id']}/restore", headers=keyed()) for _ in range(2)]
    assert [r.status_code for r in restored] == [200, 200]
    assert restored[1].headers[REPLAYED] == "true"
    # Without the key, the second restore would say the store is not deleted.
    assert_error(client.post(f"/store/{store['id']}/restore"), 409, "not deleted")

    purges = [client.post(f"/store/{store['id']}/purge", headers=keyed("purge")) for _ in range(2)]
    assert [r.status_code for r in purges] == [202, 202]
    assert purges[1].get_data() == purges[0].get_data()
    assert sql("SELECT count(*) FROM stores WHERE expire_time IS NOT NULL") == [(1,)]


def test_the_key_with_another_request_is_refused(client, sql):
    store = new_store(client)
    assert client.post("/store", json={"name": "A"}, headers=keyed()).status_code == 201
    other_body = client.post("/store", json={"name": "B"}, headers=keyed())
    other_path = client.post(f"/store/{store['id']}/tag", json={"name": "A"}, headers=keyed())
    for response in (other_body, other_path):
        assert_error(response, 422, "another request")
    assert count(sql, "stores") == 2
    assert count(sql, "tags") == 0
    # The first answer is still the key's.
    assert client.post("/store", json={"name": "A"}, headers=keyed()).headers[REPLAYED] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
def test_a_malformed_key_is_refused(client, sql, key):
    body = assert_error(client.post("/store", json={"name": "A"}, headers=keyed(key)), 400)
    assert "Idempotency-Key" in body["errors"]["headers"]
    assert count(sql, "stores") == 0


def test_the_longest_key_and_any_printable_character_will_do(client):
    for key in ("x" * 255, ' !"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'):
        assert client.post("/store", json={"name": key[:20]}, headers=keyed(key)).status_code == 201


def test_keys_are_each_users_own(client, anonymous, new_user, bearer, sql):
    store = new_store(client)
    alice = bearer(new_user("alice"))
    mine = anonymous.post("/store", json={"name": "Alice's"}, headers={**alice, **keyed()})
    # The admin's key of the same name is another key: it runs.
    theirs = client.post(f"/store/{store['id']}/tag", json={"name": "x"}, headers=keyed())
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert REPLAYED not in theirs.headers


def test_sign_ups_are_keyed_by_client_address(app, sql):
    account = {"username": "bob", "email": "bob@x.io", "password": "p" * 8}

    def sign_up(address: str, username: str):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        body = {**account, "username": username, "email": f"{username}@x.io"}
        return client.post("/register", json=body, headers=keyed())

    assert sign_up("192.0.2.1", "bob").status_code == 201
    assert sign_up("192.0.2.1", "bob").headers[REPLAYED] == "true"
    # Another address with the same key: not bob's sign-up again, a sign-up of its own.
    other = sign_up("192.0.2.2", "carol")
    assert other.status_code == 201
    assert REPLAYED not in other.headers
    assert count(sql, "users") == 2


def test_a_refused_request_keeps_nothing_and_runs_again(client, sql):
    taken = new_store(client, "Taken")
    assert_error(client.post("/store", json={"name": "Taken"}, headers=keyed()), 409)
    assert count(sql, "idempotency_keys") == 0
    client.delete(f"/store/{taken['id']}")
    # The name is free now: the same request with the same key runs, and succeeds.
    again = client.post("/store", json={"name": "Taken"}, headers=keyed())
    assert again.status_code == 201
    assert REPLAYED not in again.headers


def test_an_expired_key_runs_again(client, sql, engine):
    assert client.post("/store", json={"name": "A"}, headers=keyed()).status_code == 201
    client.delete("/store/1")
    with engine.begin() as connection:
        connection.execute(text("UPDATE idempotency_keys SET expires_at = 0"))
    again = client.post("/store", json={"name": "A"}, headers=keyed())
    assert again.status_code == 201
    assert REPLAYED not in again.headers
    assert again.get_json()["id"] == 2
    # The expired key's row was replaced: it answers with the new store now.
    assert client.post("/store", json={"name": "A"}, headers=keyed()).get_json()["id"] == 2


def test_keys_live_as_long_as_configured(client, sql, monkeypatch, app):
    change_settings(monkeypatch, app, idempotency_key_hours=2)
    before = time.time()
    client.post("/store", json={"name": "A"}, headers=keyed())
    after = time.time()
    [(expires_at,)] = sql("SELECT expires_at FROM idempotency_keys")
    assert before + 2 * 3600 <= expires_at <= after + 2 * 3600


def test_expired_keys_are_pruned_by_keyed_writes(client, sql, engine):
    expired = [
        {"scope": "user:1", "key": f"old {n}", "fingerprint": "", "status": 201, "headers": "{}",
         "body": "", "expires_at": 0}
        for n in range(PRUNE_BATCH + 100)
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO idempotency_keys VALUES "
                "(:scope, :key, :fingerprint, :status, :headers, :body, :expires_at)"
            ),
            expired,
        )
    client.post("/store", json={"name": "A"}, headers=keyed("a"))
    assert count(sql, "idempotency_keys") == 100 + 1
    client.post("/store", json={"name": "B"}, headers=keyed("b"))
    assert count(sql, "idempotency_keys") == 2


REFUSE_BOOM = {
    # A constraint or trigger refusing this one key stands in for a crash.
    "postgresql": (
        "ALTER TABLE idempotency_keys ADD CONSTRAINT refuse_boom CHECK (key <> 'boom')",
        "ALTER TABLE idempotency_keys DROP CONSTRAINT refuse_boom",
    ),
    "sqlite": (
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON idempotency_keys WHEN NEW.key = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END",
        "DROP TRIGGER refuse_boom",
    ),
}


def test_the_answer_is_kept_in_the_writes_transaction(client, sql, engine):
    """A failure to keep the answer takes the write back with it: never one without the
    other."""
    add, drop = REFUSE_BOOM[engine.dialect.name]
    with engine.begin() as connection:
        connection.execute(text(add))
    try:
        assert client.post("/store", json={"name": "A"}, headers=keyed("boom")).status_code == 500
        assert count(sql, "stores") == 0
    finally:
        with engine.begin() as connection:
            connection.execute(text(drop))
    assert client.post("/store", json={"name": "A"}, headers=keyed("fine")).status_code == 201


def test_without_a_key_nothing_is_kept(client, sql):
    store = new_store(client)
    item = new_item(client, store["id"])
    link(client, item["id"], new_tag(client, store["id"])["id"])
    assert count(sql, "idempotency_keys") == 0


def test_fingerprints_are_keyed_with_the_apps_secret(app, monkeypatch):
    """A sign-up's fingerprint covers its password: without the secret, no guessing at it."""
    body = b'{"username": "ann", "email": "a@x.io", "password": "pppppppp"}'
    with app.test_request_context("/register", method="POST", data=body):
        first = fingerprint()
        monkeypatch.setitem(
            app.config, "JWT_SECRET_KEY", "another secret, also of 32 bytes or more"
        )
        assert fingerprint() != first


@pytest.fixture
def reads_inside_writes(app) -> Iterator[list[str]]:
    """Statements sent on the engine of reads while a write transaction is open: each would
    wait for a second server connection while holding one (behind PgBouncer's pool, workers
    doing so wait for each other for good)."""
    with app.app_context():
        writes, reads = db.engine, db.engines[READS]
    open_writes: set[int] = set()
    seen: list[str] = []
    listeners = [
        (writes, "begin", lambda connection: open_writes.add(id(connection))),
        (writes, "commit", lambda connection: open_writes.discard(id(connection))),
        (writes, "rollback", lambda connection: open_writes.discard(id(connection))),
        (
            reads,
            "before_cursor_execute",
            lambda _c, _cursor, sql, *_: open_writes and seen.append(sql),
        ),
    ]
    for engine, name, listener in listeners:
        event.listen(engine, name, listener)
    yield seen
    for engine, name, listener in listeners:
        event.remove(engine, name, listener)


def test_a_keyed_request_never_reads_beside_its_open_transaction(client, reads_inside_writes):
    store, item, tag = store_with_item_and_tag(client)
    client.delete(f"/store/{store['id']}")
    for kind, (request, _table) in POSTS.items():
        path, body = request(store, item, tag)
        if kind != "register":
            client.post(f"/store/{store['id']}/restore", headers=keyed("restore"))
        for _ in range(2):  # the first time, and its replay
            client.post(path, json=body, headers=keyed(kind))
    assert reads_inside_writes == []
