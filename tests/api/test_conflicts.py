"""Constraints decide, by construction: every unique and foreign key constraint of the
models that a write through the API can break is met by the conflict its view declared
(web.transactions.decided), never by a 500; a constraint added without a way through the
API here, or a reason why there is none, fails the first test.

Foreign keys break only when a parent vanishes between a view's look and its write: a
trigger makes the parent vanish right then, before the insert or update of the child."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from support.api import assert_error, created, link, new_item, new_store, new_tag, signed_in

from web.transactions import constraints

# Constraints no write through the API can break, and why.
UNREACHABLE = {
    **dict.fromkeys(
        ("pk_stores", "pk_items", "pk_tags", "pk_users", "pk_item_imports", "pk_events"),
        "ids are drawn from sequences (SQLite: AUTOINCREMENT)",
    ),
    "pk_item_import_chunks": "an import's chunks are numbered by the import that keeps them",
    "pk_token_families": "a family is a new random UUID",
    "pk_idempotency_keys": "kept with INSERT ... ON CONFLICT, under the key's lock",
    "pk_recent_writes": "kept with INSERT ... ON CONFLICT",
    "pk_throttles": "counted with INSERT ... ON CONFLICT",
    "pk_erasures": "recorded with INSERT ... ON CONFLICT DO NOTHING",
    "uq_events_position": "positions are given past the head, by one assigner at a time",
    "pk_event_feed": "the feed's one row is only updated",
    **dict.fromkeys(
        ("pk_webhooks", "pk_webhook_deliveries", "pk_webhook_resends"),
        "ids are drawn from sequences (SQLite: AUTOINCREMENT)",
    ),
    "fk_webhook_deliveries_webhook_id_webhooks": "written by the worker alone, whose turn ends "
    "when its webhook is deleted meanwhile (webhooks/delivering.py)",
    "fk_webhook_resends_webhook_id_webhooks": "a resend locks its webhook until it commits",
}


@contextmanager
def vanishing(engine, table: str, column: str, parent: str) -> Iterator[None]:
    """The row of `parent` that `table`.`column` names is deleted just before a row of
    `table` naming it is written: a concurrent delete, at the worst moment."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(
                "CREATE FUNCTION vanish() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " EXECUTE format('DELETE FROM %I WHERE id = $1', TG_ARGV[0])"
                " USING (to_jsonb(NEW) ->> TG_ARGV[1])::int; RETURN NEW; END $$"
            ))  # fmt: skip
            connection.execute(text(
                f"CREATE TRIGGER vanish BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW"
                f" EXECUTE FUNCTION vanish('{parent}', '{column}')"
            ))  # fmt: skip
        else:
            for event in ("INSERT", "UPDATE"):
                connection.execute(text(
                    f"CREATE TRIGGER vanish_{event} BEFORE {event} ON {table} FOR EACH ROW"
                    f" BEGIN DELETE FROM {parent} WHERE id = NEW.{column}; END"
                ))  # fmt: skip
    try:
        yield
    finally:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text(f"DROP TRIGGER vanish ON {table}"))
                connection.execute(text("DROP FUNCTION vanish()"))
            else:
                for event in ("INSERT", "UPDATE"):
                    connection.execute(text(f"DROP TRIGGER vanish_{event}"))


def taken_store_name(client, **_):
    new_store(client, "Books")
    yield client.post("/store", json={"name": "Books"}), 409, "'Books'"
    comics = new_store(client, "Comics")
    yield client.put(f"/store/{comics['id']}", json={"name": "Books"}), 409, "'Books'"


def taken_tag_name(client, **_):
    store = new_store(client)
    new_tag(client, store["id"], "fiction")
    yield client.post(f"/store/{store['id']}/tag", json={"name": "fiction"}), 409, "'fiction'"


def linked_twice(client, **_):
    store = new_store(client)
    item, tag = new_item(client, store["id"]), new_tag(client, store["id"])
    link(client, item["id"], tag["id"])
    yield client.post(f"/item/{item['id']}/tag/{tag['id']}"), 409, "linked already"


def taken_sku(client, **_):
    store = new_store(client)
    new_item(client, store["id"], sku="A-1")
    body = {"name": "B", "price": 1, "store_id": store["id"], "sku": "A-1"}
    yield client.post("/item", json=body), 409, "'A-1'"
    other = new_item(client, store["id"])
    yield client.put(f"/item/{other['id']}", json={"sku": "A-1"}), 409, "'A-1'"


def taken_user(client, **_):
    body = {"username": "alice", "email": "alice@example.com", "password": "long enough"}
    assert client.post("/register", json=body).status_code == 201
    yield (
        client.post("/register", json={**body, "username": "ALICE", "email": "other@example.com"}),
        409,
        None,
    )
    yield client.post("/register", json={**body, "username": "bob"}), 409, None


def store_vanishing(table: str, column: str, write: Callable):
    def scenario(client, engine, **_):
        store = new_store(client)
        with vanishing(engine, table, column, "stores"):
            yield write(client, store), 404, f"Store {store['id']} not found"

    return scenario


def link_vanishing(column: str, parent: str):
    def scenario(client, engine, **_):
        store = new_store(client)
        item, tag = new_item(client, store["id"]), new_tag(client, store["id"])
        with vanishing(engine, "items_tags", column, parent):
            yield client.post(f"/item/{item['id']}/tag/{tag['id']}"), 404, "deleted meanwhile"

    return scenario


def account_vanishing(column: str, write: Callable):
    """An admin deletes the caller's account while the caller writes."""

    def scenario(client, engine, new_user, bearer, app, **_):
        caller = signed_in(app, bearer(new_user("carol", role="admin")))
        store = new_store(client)
        with vanishing(engine, "stores", column, "users"):
            yield write(caller, store), 401, "account was deleted"

    return scenario


def import_by_vanishing_user(client, engine, new_user, bearer, app, **_):
    caller = signed_in(app, bearer(new_user("carol", role="admin")))
    store = new_store(client)
    with vanishing(engine, "item_imports", "user_id", "users"):
        yield send(caller, store), 401, "account was deleted"


HOOK = "https://hooks.example.com/"


def webhook_of_vanishing_user(client, engine, new_user, bearer, app, **_):
    caller = signed_in(app, bearer(new_user("carol", role="admin")))
    with vanishing(engine, "webhooks", "owner_id", "users"):
        yield caller.post("/webhooks", json={"url": HOOK}), 401, "account was deleted"


def webhook_of_vanishing_store(client, engine, **_):
    store = new_store(client)
    hook = created(client.post("/webhooks", json={"url": HOOK}))
    with vanishing(engine, "webhooks", "store_id", "stores"):
        gone = f"Store {store['id']} not found"
        yield client.post("/webhooks", json={"url": HOOK, "store_id": store["id"]}), 404, gone
        patched = client.patch(f"/webhooks/{hook['id']}", json={"store_id": store["id"]})
        yield patched, 404, gone


def send(client, store):
    return client.post(
        f"/store/{store['id']}/item/import", data=b'{"name": "A", "price": 1}\n',
        content_type="application/x-ndjson",
    )  # fmt: skip


def new_item_in(client, store):
    return client.post("/item", json={"name": "A", "price": 1, "store_id": store["id"]})


SCENARIOS = {
    "uq_stores_name_live": taken_store_name,
    "uq_tags_store_id_name": taken_tag_name,
    "pk_items_tags": linked_twice,
    "uq_items_store_id_sku": taken_sku,
    "uq_users_email": taken_user,
    "ix_users_lower_username": taken_user,
    "fk_items_store_id_stores": store_vanishing("items", "store_id", new_item_in),
    "fk_tags_store_id_stores": store_vanishing(
        "tags",
        "store_id",
        lambda client, store: client.post(f"/store/{store['id']}/tag", json={"name": "fiction"}),
    ),
    "fk_item_imports_store_id_stores": store_vanishing("item_imports", "store_id", send),
    "fk_item_import_chunks_import_id_item_imports": store_vanishing(
        "item_import_chunks", "import_id", send
    ),
    "fk_items_tags_item_id_items": link_vanishing("item_id", "items"),
    "fk_items_tags_tag_id_tags": link_vanishing("tag_id", "tags"),
    "fk_stores_owner_id_users": account_vanishing(
        "owner_id", lambda caller, _store: caller.post("/store", json={"name": "Mine"})
    ),
    "fk_stores_deleted_by_users": account_vanishing(
        "deleted_by", lambda caller, store: caller.post(f"/store/{store['id']}/purge")
    ),
    "fk_item_imports_user_id_users": import_by_vanishing_user,
    "fk_webhooks_owner_id_users": webhook_of_vanishing_user,
    "fk_webhooks_store_id_stores": webhook_of_vanishing_store,
}


KEPT_FILES_ONLY = {"fk_item_import_chunks_import_id_item_imports"}


@pytest.mark.sqlite_too
def test_every_constraint_a_write_can_break_has_its_scenario_or_a_reason(app):
    with app.app_context():
        declared = set(constraints())
    assert declared == set(SCENARIOS) | set(UNREACHABLE)


@pytest.mark.sqlite_too
@pytest.mark.parametrize("constraint", sorted(set(SCENARIOS) - KEPT_FILES_ONLY))
def test_a_broken_constraint_is_the_views_declared_conflict_never_a_500(
    constraint, request, database
):
    assert_declared_conflicts(constraint, request, database)


# PostgreSQL only: SQLite imports the file in the request, and keeps no chunks to break them.
@pytest.mark.parametrize("constraint", sorted(KEPT_FILES_ONLY))
def test_a_broken_constraint_of_a_kept_file_is_the_declared_conflict(constraint, request, database):
    assert_declared_conflicts(constraint, request, database)


def assert_declared_conflicts(constraint: str, request, database: str) -> None:
    fixtures = ("client", "engine", "new_user", "bearer", "app")
    arranged = {name: request.getfixturevalue(name) for name in fixtures}
    answers = list(SCENARIOS[constraint](**arranged))
    assert answers
    for response, status, message in answers:
        assert response.status_code != 500, response.get_json()
        if database == "sqlite" and constraint.startswith("fk_"):
            # SQLite names no foreign key: the view's first foreign key conflict answers.
            assert_error(response, response.status_code)
            assert response.status_code in (401, 404)
        else:
            assert_error(response, status, message)
