"""The event feed (issue 41): every committed change is one event, in the change's own
transaction, and GET /events follows them by cursor; who sees what; errors; retention."""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text
from support.api import assert_error, link, new_item, new_store, new_tag, purge, signed_in
from support.catalogue import imported, json_lines

from db import db
from models.event import prune_events
from web.event_stream import EVENT_HUB


def feed(client, **query) -> tuple[list[dict], str]:
    """One page of the feed, and the cursor its Link header goes on from."""
    response = client.get("/events", query_string=query)
    assert response.status_code == 200, response.get_json()
    (after,) = parse_qs(urlsplit(response.headers["Link"].split(">")[0][1:]).query)["after"]
    return response.get_json(), after


def everything(client, **query) -> list[dict]:
    """Every event the feed shows, following its Link header from the start."""
    seen, after = feed(client, page_size=3, **query)
    while True:
        page, after = feed(client, page_size=3, after=after, **query)
        if not page:
            return seen
        seen += page


def kinds(events: list[dict]) -> list[tuple[str, int]]:
    return [(event["type"], event["resource_id"]) for event in events]


@pytest.mark.sqlite_too
def test_each_write_is_one_event_with_what_the_api_answered(client):
    store = new_store(client)
    item = new_item(client, store["id"])
    tag = new_tag(client, store["id"])
    linked = link(client, item["id"], tag["id"])
    updated = client.put(f"/item/{item['id']}", json={"name": "Epic"}).get_json()
    client.delete(f"/item/{item['id']}/tag/{tag['id']}")
    client.delete(f"/tag/{tag['id']}")
    client.delete(f"/item/{item['id']}")
    renamed = client.put(f"/store/{store['id']}", json={"name": "Tomes"}).get_json()
    # A refused write records nothing.
    assert client.put(f"/item/{item['id']}", json={"name": "Gone"}).status_code == 404

    events = everything(client)
    assert kinds(events) == [
        ("store.created", store["id"]),
        ("item.created", item["id"]),
        ("tag.created", tag["id"]),
        ("link.created", item["id"]),
        ("item.updated", item["id"]),
        ("link.deleted", item["id"]),
        ("tag.deleted", tag["id"]),
        ("item.deleted", item["id"]),
        ("store.renamed", store["id"]),
    ]
    by_type = {event["type"]: event for event in events}
    assert by_type["store.created"]["data"] == store
    assert by_type["item.created"]["data"] == item
    assert by_type["link.created"]["data"] == linked
    assert by_type["item.updated"]["data"] == updated
    assert by_type["store.renamed"]["data"] == renamed
    # A deletion says what went: the item as GET showed it, last.
    assert by_type["item.deleted"]["data"] == {**updated, "tags": [], "tags_has_more": False}
    assert by_type["tag.deleted"]["data"]["name"] == tag["name"]
    assert {event["store_id"] for event in events} == {store["id"]}
    assert {event["actor_id"] for event in events} == {store["owner_id"]}
    assert all(event["counts"] is None for event in events)


@pytest.mark.sqlite_too
def test_a_replayed_write_records_no_second_event(client):
    store = new_store(client)
    body = {"name": "Novel", "price": 1, "store_id": store["id"]}
    for _ in range(2):
        client.post("/item", json=body, headers={"Idempotency-Key": "once"})
    assert [event["type"] for event in everything(client)] == ["store.created", "item.created"]


@pytest.mark.postgres_path
@pytest.mark.sqlite_too
def test_a_store_cascade_is_one_event_with_its_counts(app, client):
    store = new_store(client)
    items = [new_item(client, store["id"], f"Item {n}") for n in range(3)]
    tags = [new_tag(client, store["id"], f"tag {n}") for n in range(2)]
    for tag in tags:
        link(client, items[0]["id"], tag["id"])
    start = feed(client, page_size=1000)[1]

    client.delete(f"/store/{store['id']}")
    client.post(f"/store/{store['id']}/restore")
    client.post(f"/store/{store['id']}/purge")
    assert purge(app) == [store["id"]]

    events = everything_after(client, start)
    assert [event["type"] for event in events] == [
        "store.deleted",
        "store.restored",
        "store.deleted",
        "store.purged",
    ]
    counts = {"items": 3, "tags": 2, "links": 2}
    assert [event["counts"] for event in events] == [
        {**counts, "exact": True},
        {**counts, "exact": True},
        {**counts, "exact": True},
        counts,
    ]
    assert events[-1]["data"] == {"id": store["id"], "name": store["name"], "owner_id": 1}
    assert events[-1]["actor_id"] is None


def everything_after(client, after: str) -> list[dict]:
    seen = []
    while page_and_after := feed(client, page_size=100, after=after):
        page, after = page_and_after
        if not page:
            return seen
        seen += page
    return seen


@pytest.mark.sqlite_too
def test_users_see_the_events_of_their_stores_and_admins_all(app, client, new_user, bearer):
    alice = signed_in(app, bearer(new_user("alice")))
    bob = signed_in(app, bearer(new_user("bob")))
    alices = new_store(alice, "Alice's")
    item = new_item(alice, alices["id"])
    bobs = new_store(bob, "Bob's")

    assert {event["store_id"] for event in everything(alice)} == {alices["id"]}
    assert kinds(everything(bob)) == [("store.created", bobs["id"])]
    assert len(everything(client)) == 3
    assert kinds(everything(client, store_id=bobs["id"])) == [("store.created", bobs["id"])]
    assert everything(bob, store_id=alices["id"]) == []
    assert kinds(everything(client, type="item.created,store.renamed")) == [
        ("item.created", item["id"])
    ]


@pytest.mark.sqlite_too
def test_the_first_page_says_where_the_feed_is_now(client):
    assert client.get("/events").headers["Feed-Head"] == feed(client)[1]
    store = new_store(client)
    first = client.get("/events", query_string={"page_size": 1})
    head = first.headers["Feed-Head"]
    assert first.get_json()[0]["data"] == store
    # Following the feed from the head: nothing older, everything newer.
    new_item(client, store["id"])
    assert kinds(feed(client, after=head)[0]) == [("item.created", 1)]
    assert feed(client, after=feed(client, after=head)[1])[0] == []


@pytest.mark.sqlite_too
@pytest.mark.parametrize(
    "query",
    [{"after": "nonsense"}, {"after": "AAAAAAAAAAc="}, {"type": "item.moved"}, {"page_size": 0}],
)
def test_a_bad_query_is_refused_with_what_to_fix(client, query):
    body = assert_error(client.get("/events", query_string=query), 422)
    assert set(body["errors"]["query"]) == set(query)


@pytest.mark.sqlite_too
def test_the_feed_needs_a_token(anonymous):
    assert_error(anonymous.get("/events"), 401)


@pytest.mark.sqlite_too
def test_a_cursor_older_than_the_events_kept_is_gone(app, client):
    store = new_store(client)
    (created,), after = feed(client)
    new_item(client, store["id"])
    new_item(client, store["id"], "Second")
    with app.app_context():
        assert prune_events(datetime.now(UTC) + timedelta(seconds=1), batch=2) == 2
        db.session.remove()

    assert_error(client.get("/events", query_string={"after": created["cursor"]}), 410, "list")
    assert_error(client.get("/events", query_string={"after": after}), 410)
    # A new client starts at the oldest event kept.
    assert kinds(everything(client)) == [("item.created", 2)]


@pytest.mark.sqlite_too
def test_a_cursor_newer_than_the_feed_is_gone(client, engine):
    new_store(client)
    (created,), _ = feed(client)
    # The database restored to a time before the event: its position is given again.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM events"))
        connection.execute(text("UPDATE event_feed SET head = 0"))

    assert_error(client.get("/events", query_string={"after": created["cursor"]}), 410, "restored")


@pytest.mark.sqlite_too
def test_an_import_is_one_event_with_its_counts(app, client):
    store = new_store(client)
    good = json_lines(
        {"name": "A", "price": 1, "tags": ["x", "y"]}, {"name": "B", "price": 2, "tags": ["x"]}
    )
    bad = json_lines({"name": "C", "price": -1})
    succeeded = imported(app, client, store["id"], good)
    failed = imported(app, client, store["id"], bad)

    events = everything(client, type="import.succeeded,import.failed")
    assert kinds(events) == [
        ("import.succeeded", succeeded["id"]),
        ("import.failed", failed["id"]),
    ]
    assert [event["data"] for event in events] == [succeeded, failed]
    assert [event["counts"] for event in events] == [
        {"items": 2, "tags": 2, "links": 3, "lines": 2, "bad_lines": 0},
        {"items": 0, "tags": 0, "links": 0, "lines": 1, "bad_lines": 1},
    ]
    # No event an item: the import is the one.
    assert len(everything(client)) == 3


@pytest.mark.one_driver
def test_a_stream_that_starts_past_its_reader_never_goes_back(app, client):
    """A stream may start at a head its process's reader has not read yet: waiting for the
    reader, it keeps its place, and gets none of the events before it."""
    hub = app.extensions[EVENT_HUB]
    with app.app_context():
        close = hub.open_stream(1, limit=1)
    try:
        ahead = hub.position + 5
        events, position = hub.events_past(ahead, lambda _event: True, 0, None)
        assert (events, position) == ([], ahead)
    finally:
        close()
