"""Webhook deliveries (webhooks/delivering.py), run by the pump the job worker runs, against
receivers on 127.0.0.1: in feed order, signed, once each; retried, then turned off and on
again; to their owner's stores' events only; never to an address the guard refuses."""

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest
from sqlalchemy import text
from standardwebhooks import Webhook
from support.api import assert_error, change_settings, created, new_item, new_store, signed_in
from support.worker import worker

from tools.webhook_receiver import Receiver, no_content, webhook_receiver
from webhooks.delivering import start_pump
from webhooks.records import KEEP_EVERY


def failing(handler) -> None:
    handler.send_response(500)
    handler.end_headers()


@pytest.fixture
def pump(app) -> Iterator[None]:
    """The worker's pump, delivering while the test runs."""
    stop = start_pump(lambda: app)
    yield
    stop.set()


@pytest.fixture
def loopback_allowed(monkeypatch, app) -> None:
    change_settings(monkeypatch, app, webhook_allowed_networks="127.0.0.0/8")


@pytest.fixture
def receiver():
    with webhook_receiver() as served:
        yield served


def new_webhook(client, url: str, **fields) -> dict:
    return created(client.post("/webhooks", json={"url": url, **fields}))


def run_sql(engine, statement: str, **parameters) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement), parameters)


@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_events_arrive_in_feed_order_signed_once_each_as_the_feed_shows_them(client, receiver):
    arrived, url = receiver
    hook = new_webhook(client, url + "/hooks")
    store = new_store(client)
    items = [new_item(client, store["id"], f"Lamp {n}") for n in range(3)]
    client.delete(f"/item/{items[0]['id']}")

    deliveries = arrived.wait_for(5)
    feed = client.get("/events").get_json()
    assert [json.loads(each.body) for each in deliveries] == feed
    assert [event["type"] for event in feed] == [
        "store.created", *["item.created"] * 3, "item.deleted"
    ]  # fmt: skip
    for delivery, event in zip(deliveries, feed, strict=True):
        assert delivery.path == "/hooks"
        assert Webhook(hook["secret"]).verify(delivery.body, delivery.headers) == event
    ids = [delivery.headers["webhook-id"] for delivery in deliveries]
    assert len(set(ids)) == 5
    threading.Event().wait(0.5)
    assert len(arrived.received) == 5  # none twice
    attempts = client.get(f"/webhooks/{hook['id']}/deliveries").get_json()
    assert [(each["attempt"], each["status"], each["error"]) for each in attempts] == [
        (1, 204, None)
    ] * 5


@pytest.mark.one_driver
@pytest.mark.usefixtures("pump")
def test_loopback_is_never_sent_to_unless_allowed_and_the_attempt_says_why(client, receiver, sql):
    arrived, url = receiver
    # A name: refused when it is resolved, at delivery.
    hook = new_webhook(client, url.replace("127.0.0.1", "localhost"))
    new_store(client)
    for _ in range(100):
        attempts = client.get(f"/webhooks/{hook['id']}/deliveries").get_json()
        if attempts:
            break
        threading.Event().wait(0.1)
    [attempt] = attempts
    assert attempt["status"] is None
    assert "a loopback address" in attempt["error"]
    assert "WEBHOOK_ALLOWED_NETWORKS" in attempt["error"]
    [(retry,)] = sql(f"SELECT next_attempt_at IS NOT NULL FROM webhooks WHERE id = {hook['id']}")
    assert retry
    assert arrived.received == []


def attempts_of(client, hook_id: int, count: int) -> list[dict]:
    """The endpoint's attempts, newest first, once there are `count` of them."""
    for _ in range(100):
        attempts = client.get(f"/webhooks/{hook_id}/deliveries").get_json()
        if len(attempts) >= count:
            return attempts
        threading.Event().wait(0.1)
    raise AssertionError(f"{len(attempts)} of {count} attempts")


@contextmanager
def failing_webhook(client) -> Iterator[tuple[Receiver, dict, dict]]:
    """A webhook whose receiver answers 500, once its first attempt failed (at a store's
    creation): the receiver, the webhook and that attempt."""
    with webhook_receiver(failing) as (arrived, url):
        hook = new_webhook(client, url)
        new_store(client)
        [first] = attempts_of(client, hook["id"], 1)
        yield arrived, hook, first


def turned_off_after_3_days(client, engine, hook_id: int, attempts: int) -> None:
    """Failing for 3 days, its retry due: once its `attempts`th attempt failed, it is off."""
    run_sql(engine, "UPDATE webhooks SET failing_since = now() - interval '3 days', "
            "next_attempt_at = now() WHERE id = :id", id=hook_id)  # fmt: skip
    attempts_of(client, hook_id, attempts)


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_a_failing_endpoint_is_retried_in_order_turned_off_after_3_days_and_on_again(
    client, engine, sql
):
    with webhook_receiver(failing) as (arrived, url):
        hook = new_webhook(client, url)
        path = f"/webhooks/{hook['id']}"
        first, second = new_store(client, "First"), new_store(client, "Second")
        [failed] = attempts_of(client, hook["id"], 1)
        assert (failed["status"], failed["error"]) == (500, "The receiver answered 500.")
        threading.Event().wait(1)
        # Waiting to retry (5 s), the second event behind the first.
        assert len(arrived.received) == 1

        retry_now = f"UPDATE webhooks SET next_attempt_at = now() WHERE id = {hook['id']}"
        run_sql(engine, retry_now)
        assert [each["attempt"] for each in attempts_of(client, hook["id"], 2)] == [2, 1]

        turned_off_after_3_days(client, engine, hook["id"], attempts=3)
        threading.Event().wait(0.3)
        shown = client.get(path).get_json()
        assert shown["enabled"] is False
        assert shown["disabled_reason"] == "The receiver answered 500."
        assert {json.loads(each.body)["store_id"] for each in arrived.received} == {first["id"]}

        arrived.answer = no_content
        assert client.patch(path, json={"enabled": True}).get_json()["enabled"] is True
        # On again with a new schedule: its first failure would not turn it off at once
        # (failing since now, or no longer, once delivered).
        new_schedule = "SELECT coalesce(now() - failing_since < interval '1 minute', true)"
        assert sql(f"{new_schedule} FROM webhooks WHERE id = {hook['id']}") == [(True,)]
        delivered = arrived.wait_for(5)[3:]
        attempts = attempts_of(client, hook["id"], 5)
    assert [json.loads(each.body)["store_id"] for each in delivered] == [first["id"], second["id"]]
    # The event that failed three times is delivered at its fourth attempt (a break-it
    # finding: the count started again at 1), the one behind it at its first.
    assert [(each["attempt"], each["status"]) for each in attempts] == [
        (1, 204), (4, 204), (3, 500), (2, 500), (1, 500)
    ]  # fmt: skip


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed")
def test_a_delivered_event_is_recorded_while_the_next_attempt_is_slow(app, client):
    """Kept together, a turn's records still show soon, stamped when each attempt began: a
    receiver slow to answer the next event holds back none of them (a break-it finding:
    the record waited for the next answer, and was stamped then)."""
    answered = []

    def slow_at_the_second(handler) -> None:
        answered.append(True)
        if len(answered) == 2:
            threading.Event().wait(3)
        no_content(handler)

    with webhook_receiver(slow_at_the_second) as (arrived, url):
        hook = new_webhook(client, url)
        new_item(client, new_store(client)["id"])
        stop = start_pump(lambda: app)  # the two events wait for one turn
        try:
            [first] = arrived.wait_for(1)
            kept = attempts_of(client, hook["id"], 1)[-1]  # the oldest
            shown_after = time.time() - first.at
            attempts_of(client, hook["id"], 2)  # the turn over before the next test
        finally:
            stop.set()
    assert (kept["attempt"], kept["status"]) == (1, 204)
    assert shown_after < 2, shown_after
    assert abs(datetime.fromisoformat(kept["attempted_at"]).timestamp() - first.at) < 1


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed")
def test_two_workers_deliver_each_event_once_in_order(app, client, receiver):
    arrived, url = receiver
    new_webhook(client, url)
    stops = [start_pump(lambda: app) for _ in range(2)]
    try:
        store = new_store(client)
        for n in range(20):
            new_item(client, store["id"], f"Lamp {n}")
        deliveries = arrived.wait_for(21)
        threading.Event().wait(0.5)
    finally:
        for stop in stops:
            stop.set()
    cursors = [json.loads(each.body)["cursor"] for each in arrived.received]
    assert len(arrived.received) == 21
    assert cursors == [json.loads(each.body)["cursor"] for each in deliveries]
    assert cursors == [event["cursor"] for event in client.get("/events").get_json()]


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_a_webhook_gets_its_owners_stores_events_of_its_store_and_types_only(
    app, client, new_user, bearer
):
    alice = signed_in(app, bearer(new_user("alice")))
    with webhook_receiver() as (everything, url), webhook_receiver() as (narrow, narrow_url):
        new_webhook(alice, url)
        mine = new_store(alice, "Alice's")
        new_webhook(alice, narrow_url, store_id=mine["id"], event_types=["item.created"])
        new_store(client, "The admin's")
        other = new_store(alice, "Alice's other")
        new_item(alice, other["id"])
        new_item(alice, mine["id"])
        seen = [json.loads(each.body) for each in everything.wait_for(4)]
        [item] = [json.loads(each.body) for each in narrow.wait_for(1)]
        threading.Event().wait(0.5)
        assert len(everything.received) == 4
        assert len(narrow.received) == 1
    assert [(event["type"], event["store_id"]) for event in seen] == [
        ("store.created", mine["id"]), ("store.created", other["id"]),
        ("item.created", other["id"]), ("item.created", mine["id"]),
    ]  # fmt: skip
    assert (item["type"], item["store_id"]) == ("item.created", mine["id"])


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_a_delivery_is_sent_again_when_its_owner_asks(client, receiver, engine):
    arrived, url = receiver
    hook = new_webhook(client, url)
    new_store(client)
    [first] = arrived.wait_for(1)
    [delivery] = attempts_of(client, hook["id"], 1)
    path = f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/resend"

    asked = client.post(path)
    assert asked.status_code == 202
    again = arrived.wait_for(2)[1]
    assert (again.body, again.headers["webhook-id"]) == (first.body, first.headers["webhook-id"])
    assert [each["attempt"] for each in attempts_of(client, hook["id"], 2)] == [2, 1]

    other = new_webhook(client, url)
    assert_error(client.post(f"/webhooks/{other['id']}/deliveries/{delivery['id']}/resend"), 404)
    run_sql(engine, "DELETE FROM events")  # pruned
    assert_error(client.post(path), 410, "no longer kept")


def nul_answer(handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "3")
    handler.end_headers()
    handler.wfile.write(b"o\x00k")


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_an_answer_with_a_nul_is_kept_and_its_event_sent_once(client):
    with webhook_receiver(nul_answer) as (arrived, url):
        hook = new_webhook(client, url)
        new_store(client)
        arrived.wait_for(1)
        [attempt] = attempts_of(client, hook["id"], 1)
        threading.Event().wait(0.5)
        assert len(arrived.received) == 1
    assert attempt["answer"] == "o\ufffdk"


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_a_webhook_with_no_events_of_its_own_is_not_due_again_until_the_feed_grows(
    app, client, new_user, bearer, sql, receiver
):
    _, url = receiver
    alice = signed_in(app, bearer(new_user("alice")))
    hook = new_webhook(alice, url)  # alice has no store: none of these events is hers
    for n in range(3):
        new_store(client, f"Admin's {n}")
    query = "SELECT delivered_through, (SELECT head FROM event_feed) FROM webhooks WHERE id = "
    for _ in range(50):
        [(through, head)] = sql(query + str(hook["id"]))
        if through == head >= 3:
            break
        threading.Event().wait(0.1)
    assert through == head >= 3


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed")
@pytest.mark.parametrize(
    "change",
    [
        "UPDATE webhooks SET event_types = CAST('[\"store.created\"]' AS JSON)",
        "DELETE FROM webhooks",
    ],
)
def test_a_webhook_changed_or_deleted_mid_turn_gets_no_more_of_that_turn_once_kept(
    app, client, engine, change
):
    """The turn read its waiting events under the old terms, and the change commits while the
    first is answered: the next keeping of the turn's records finds it and ends the turn, after
    KEEP_EVERY events at most, and the next turn goes by the new terms (item events are none
    of a webhook for store.created alone, nor of one deleted)."""

    def changing_once_then_answering(handler) -> None:
        if not changed:
            run_sql(engine, change)
            changed.append(True)
        no_content(handler)

    changed: list[bool] = []
    waiting = KEEP_EVERY * 2
    with webhook_receiver(changing_once_then_answering) as (arrived, url):
        new_webhook(client, url)
        store = new_store(client)
        for number in range(waiting - 1):
            new_item(client, store["id"], f"Lamp {number}")
        stop = start_pump(lambda: app)  # the events wait for one turn
        try:
            arrived.wait_for(1)
            threading.Event().wait(1)
        finally:
            stop.set()
        types = [json.loads(each.body)["type"] for each in arrived.received]
    assert types[0] == "store.created"
    assert 1 <= len(types) <= KEEP_EVERY < waiting, types


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_a_webhook_deleted_while_its_receiver_answers_a_failure_is_let_go_quietly(
    client, engine, caplog
):
    """The deletion commits after the pump read the webhook, before it kept the attempt: the
    attempt's foreign key fails, which is no bug of ours (break-it finding)."""
    caplog.set_level(logging.WARNING, logger="stores.webhooks")
    hook_ids = []

    def deleting_then_failing(handler) -> None:
        connection = engine.connect()
        connection.execute(text("DELETE FROM webhooks WHERE id = :id"), {"id": hook_ids[0]})
        threading.Timer(0.7, lambda: (connection.commit(), connection.close())).start()
        failing(handler)

    with webhook_receiver(deleting_then_failing) as (arrived, url):
        hook_ids.append(new_webhook(client, url)["id"])
        new_store(client)
        arrived.wait_for(1)
        threading.Event().wait(2)
    assert caplog.records == []
    assert client.get(f"/webhooks/{hook_ids[0]}").status_code == 404


def answering_slowly_from(slow_from: int, seconds: float):
    """A receiver's answer: 204 at once, then `seconds` late from the `slow_from`th on."""
    answered = []

    def answer(handler) -> None:
        answered.append(True)
        if len(answered) >= slow_from:
            threading.Event().wait(seconds)
        no_content(handler)

    return answer


def stopped_within(stop: threading.Event, seconds: float) -> None:
    """Stop the pump; AssertionError if its thread still runs `seconds` later."""
    stop.set()
    deadline = time.monotonic() + seconds
    while any(each.name == "webhooks" for each in threading.enumerate()):
        assert time.monotonic() < deadline, "the pump still runs"
        threading.Event().wait(0.05)


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed")
def test_a_pump_told_to_stop_ends_its_turn_after_the_attempt_under_way(app, client, sql):
    """Not after the turn's last event (a break-it finding: 40 events waited, 35 s)."""
    with webhook_receiver(answering_slowly_from(5, 0.5)) as (arrived, url):
        hook = new_webhook(client, url)
        store = new_store(client)
        for number in range(39):
            new_item(client, store["id"], f"Lamp {number}")
        stop = start_pump(lambda: app)
        try:
            arrived.wait_for(6)
        finally:
            stopped_within(stop, 5)
        sent = len(arrived.received)
    assert 6 <= sent <= 8, sent
    # What arrived was kept; what did not waits for the next worker.
    kept = sql(f"SELECT count(*) FROM webhook_deliveries WHERE webhook_id = {hook['id']}")
    assert kept == [(sent,)]
    assert sql(f"SELECT next_attempt_at FROM webhooks WHERE id = {hook['id']}") == [(None,)]


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed")
def test_a_worker_ended_by_sigterm_mid_turn_leaves_no_error_and_no_wait(app, client, sql):
    """The process exits between two attempts: concurrent.futures refuses new ones then,
    which ended the turn as a bug, with a minute's wait (a break-it finding)."""
    with webhook_receiver(answering_slowly_from(5, 0.5)) as (arrived, url):
        hook = new_webhook(client, url)
        store = new_store(client)
        for number in range(39):
            new_item(client, store["id"], f"Lamp {number}")
        running = worker(
            app.config["SQLALCHEMY_DATABASE_URI"], WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8"
        )
        try:
            arrived.wait_for(6, timeout=30)
        finally:
            running.send_signal(signal.SIGTERM)
            said = running.communicate(timeout=30)[1].decode()
    assert "ERROR" not in said, said
    assert "Traceback" not in said, said
    assert sql(f"SELECT next_attempt_at FROM webhooks WHERE id = {hook['id']}") == [(None,)]


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_turned_on_again_and_failing_it_is_retried_soon_its_attempts_counting_on(
    client, engine, sql
):
    with failing_webhook(client) as (_, hook, _):
        turned_off_after_3_days(client, engine, hook["id"], attempts=2)
        assert client.patch(f"/webhooks/{hook['id']}", json={"enabled": True}).status_code == 200
        attempts = attempts_of(client, hook["id"], 3)
        threading.Event().wait(0.3)
        [(enabled, retry_in)] = sql(
            "SELECT disabled_at IS NULL, extract(epoch FROM next_attempt_at - now())"
            f" FROM webhooks WHERE id = {hook['id']}"
        )
    assert [each["attempt"] for each in attempts] == [3, 2, 1]
    # A new schedule (5 s first), not the 3rd step of the old one (30 min); not off at once.
    assert enabled
    assert 0 < retry_in <= 5, retry_in


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_turned_on_again_with_nothing_of_its_own_waiting_it_fails_no_more(client, engine, sql):
    """Its failed event is no longer its business (another type named): its next failure,
    days later, begins a schedule of retries, rather than turn it off at once."""
    with webhook_receiver(failing) as (_, url):
        hook = new_webhook(client, url, event_types=["store.created"])
        store = new_store(client)
        attempts_of(client, hook["id"], 1)
        turned_off_after_3_days(client, engine, hook["id"], attempts=2)
        changed = {"enabled": True, "event_types": ["item.created"]}
        assert client.patch(f"/webhooks/{hook['id']}", json=changed).status_code == 200
        failing_since = f"SELECT failing_since FROM webhooks WHERE id = {hook['id']}"
        for _ in range(50):
            if sql(failing_since) == [(None,)]:
                break
            threading.Event().wait(0.1)
        assert sql(failing_since) == [(None,)]
        new_item(client, store["id"])
        attempts_of(client, hook["id"], 3)
        threading.Event().wait(0.3)
        assert client.get(f"/webhooks/{hook['id']}").get_json()["enabled"] is True


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_a_webhook_deleted_while_a_resend_is_answered_is_let_go_quietly(client, caplog):
    caplog.set_level(logging.WARNING, logger="stores.webhooks")
    with webhook_receiver(answering_slowly_from(2, 1.5)) as (arrived, url):
        hook = new_webhook(client, url)
        new_store(client)
        [delivery] = attempts_of(client, hook["id"], 1)
        resend = f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/resend"
        assert client.post(resend).status_code == 202
        arrived.wait_for(2)
        assert client.delete(f"/webhooks/{hook['id']}").status_code == 200
        threading.Event().wait(2)
    assert caplog.records == []


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_a_resend_asked_while_failing_is_sent_alone_the_retries_keeping_their_schedule(
    client, engine, sql
):
    """A break-it finding: the failing event was retried with it, before its time."""
    with failing_webhook(client) as (arrived, hook, first):
        run_sql(engine, f"UPDATE webhooks SET next_attempt_at = now() WHERE id = {hook['id']}")
        attempts_of(client, hook["id"], 2)
        retry_in = "SELECT extract(epoch FROM next_attempt_at - now()) FROM webhooks WHERE id = "
        retry_in += str(hook["id"])
        [(before,)] = sql(retry_in)
        resend = f"/webhooks/{hook['id']}/deliveries/{first['id']}/resend"
        assert client.post(resend).status_code == 202
        arrived.wait_for(3)
        threading.Event().wait(1)
        [(after,)] = sql(retry_in)
    assert len(arrived.received) == 3
    assert 200 < before <= 300, before  # the second retry: 5 min
    assert before - 2 < after <= before, (before, after)


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed", "pump")
def test_the_last_retry_is_when_3_days_of_failures_end_not_a_day_later(client, engine, sql):
    with failing_webhook(client) as (_, hook, _):
        # Its second retry would be 5 min later: 2 min are left.
        run_sql(engine, "UPDATE webhooks SET failing_since = now() - interval '4318 minutes', "
                "next_attempt_at = now() WHERE id = :id", id=hook["id"])  # fmt: skip
        attempts_of(client, hook["id"], 2)
        threading.Event().wait(0.3)
        [(enabled, retry_at_the_end)] = sql(
            "SELECT disabled_at IS NULL, next_attempt_at = failing_since + interval '3 days'"
            f" FROM webhooks WHERE id = {hook['id']}"
        )
    assert enabled
    assert retry_at_the_end


@pytest.mark.one_driver
@pytest.mark.usefixtures("loopback_allowed")
def test_a_pump_told_to_stop_leaves_the_resends_not_begun_for_the_next(app, client, sql):
    with webhook_receiver(answering_slowly_from(2, 1)) as (arrived, url):
        hook = new_webhook(client, url)
        new_store(client)
        stop = start_pump(lambda: app)
        try:
            [delivery] = attempts_of(client, hook["id"], 1)
            resend = f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/resend"
            for _ in range(3):
                assert client.post(resend).status_code == 202
            arrived.wait_for(2)
        finally:
            stopped_within(stop, 3)
    assert len(arrived.received) == 2
    assert sql("SELECT count(*) FROM webhook_resends") == [(2,)]
