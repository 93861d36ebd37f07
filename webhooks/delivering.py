"""The feed's events delivered to webhooks, by the job worker (worker.py runs the pump):

- **In feed order per endpoint, at least once.** Each endpoint has its place in the feed
  (`delivered_through`); its next event is sent, and only once the receiver answered 2xx
  does its place move past it, with the attempt's record, in one transaction (a few
  events' at a time: Records). A worker that dies between the two sends them again:
  receivers tell by `webhook-id` (the event's id).
- **Retried with backoff** (webhooks/records.py: 5 s, then up to 24 h apart) while the
  endpoint's events wait behind the one that fails, for up to 3 days; then the endpoint is
  turned off, and says why (`disabled_reason`: the last attempt's failure). PATCH
  {"enabled": true} turns it on again, from where it stopped.
- **One sender per endpoint**, whatever the number of workers: a PostgreSQL advisory lock,
  held on a connection of its own while the endpoint's events are sent. Endpoints are
  served side by side (SENDERS threads), so one slow receiver holds only its own.
"""

import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

from flask import Flask
from sqlalchemy import and_, or_, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from config.settings import current_settings
from db import db
from models import UserModel, WebhookModel, WebhookResendModel
from models.event import EventModel, events_after, feed_bounds, place_events
from schemas.events import EventSchema
from webhooks.records import Delivery, Records, Terms, caught_up, failed, keep, now
from webhooks.sending import Attempt, Sender, send
from webhooks.signing import signed_headers

# Events sent to one endpoint in a turn, before the others get theirs.
EVENTS_PER_TURN = 100
SENDERS = 8
# Senders one owner's endpoints may hold at once.
OWNERS_SHARE = 2
# How often the pump looks for new events: the wait a delivery adds to its event's commit.
POLL_SECONDS = 0.1
# How often it looks again while the database does not answer.
UNANSWERED_SECONDS = 1.0
logger = logging.getLogger("stores.webhooks")
# The advisory locks' first key: these locks among any others of the database.
LOCK_SPACE = 41_0005


def due_webhooks() -> list[tuple[int, int]]:
    """The endpoints with something to send now, with their owners: a resend asked for; or
    turned on, behind the feed's head, and not waiting to retry."""
    head, _ = feed_bounds()
    behind = and_(
        WebhookModel.disabled_at.is_(None),
        WebhookModel.delivered_through < head,
        or_(WebhookModel.next_attempt_at.is_(None), WebhookModel.next_attempt_at <= now()),
    )
    resend = select(WebhookResendModel.id).where(WebhookResendModel.webhook_id == WebhookModel.id)
    due = select(WebhookModel.id, WebhookModel.owner_id).where(or_(behind, resend.exists()))
    return [(row.id, row.owner_id) for row in db.session.execute(due)]


def payload(event: EventModel) -> bytes:
    """The event as GET /events shows it."""
    return json.dumps(EventSchema().dump(event), separators=(",", ":")).encode()


@contextmanager
def sending_to(webhook_id: int) -> Iterator[bool]:
    """Whether this thread may send to the endpoint: no other, here or in another worker,
    is; until the block ends."""
    if db.engine.dialect.name != "postgresql":
        yield True  # SQLite: one process
        return
    with db.engine.connect() as connection:
        taken = connection.scalar(
            text("SELECT pg_try_advisory_lock(:space, :id)"),
            {"space": LOCK_SPACE, "id": webhook_id},
        )
        connection.commit()
        try:
            yield taken
        finally:
            if taken:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:space, :id)"),
                    {"space": LOCK_SPACE, "id": webhook_id},
                )
                connection.commit()


def deliver_to(webhook_id: int, stop: threading.Event) -> int:
    """Send the resends asked for, then the endpoint's waiting events in order, until one
    fails, EVENTS_PER_TURN are sent, or the worker stops; how many events were delivered."""
    with sending_to(webhook_id) as mine:
        if not mine:
            return 0
        resend_asked(webhook_id, stop)
        webhook = db.session.get(WebhookModel, webhook_id)
        # Due for its resends alone: one waiting to retry keeps to its schedule.
        if webhook is None or not webhook.enabled or waits_to_retry(webhook) or stop.is_set():
            return 0
        head, _ = feed_bounds()
        terms, failing = Terms.of(webhook), webhook.failing_since is not None
        waiting = [
            (event.id, event.position, payload(event))
            for event in next_events(webhook, EVENTS_PER_TURN)
        ]
        db.session.rollback()  # no transaction held while the receiver answers
        records = Records(webhook_id, terms)
        sent_all = send_in_order(waiting, records, failing, stop)
        if records.kept() and sent_all and len(waiting) < EVENTS_PER_TURN:
            # Every event up to the head that is its own was sent: the others are none of
            # its business, and it is not due again until the feed grows.
            caught_up(webhook_id, terms, head)
        return records.delivered


def send_in_order(
    waiting: list[tuple[int, int, bytes]], records: Records, failing: bool, stop: threading.Event
) -> bool:
    """Send the events (id, position, body) one after the other, each delivered one noted in
    `records`; whether all were: not when one failed (its attempt kept, its retry set), the
    endpoint changed, or the worker stops."""
    if not waiting:
        return True
    webhook_id, terms = records.webhook_id, records.terms
    with (
        Sender(terms.url, current_settings().webhook_allowed_network_list) as sender,
        ThreadPoolExecutor(1, "webhook-attempt") as attempts,
    ):
        for number, (event_id, position, body) in enumerate(waiting):
            if stop.is_set():
                return False
            try:
                pending = attempts.submit(sender.send, body, signed(terms.secret, event_id, body))
            except RuntimeError:
                # The process exits (SIGTERM): concurrent.futures ended the attempt's thread.
                # What was delivered is kept; the next worker sends the rest.
                return False
            attempt = records.awaiting(pending)
            # Only a turn's first event can have been tried: a failure ends a turn.
            tried = failing and number == 0
            if not attempt.delivered:
                records.kept()
                failed(webhook_id, event_id, attempt, tried)
                return False
            if not records.add(Delivery(event_id, position, attempt, tried)):
                return False
    return True


def waits_to_retry(webhook: WebhookModel) -> bool:
    return webhook.next_attempt_at is not None and webhook.next_attempt_at > now()


def resend_asked(webhook_id: int, stop: threading.Event) -> None:
    """Send again the events the endpoint's owner asked for, each once, whatever its state,
    until the worker stops (a resend claimed by a worker that then died is not sent: ask
    again; one not claimed yet waits for the next worker)."""
    asked = select(WebhookResendModel).where(WebhookResendModel.webhook_id == webhook_id)
    for resend in db.session.scalars(asked).all():
        if stop.is_set():
            db.session.rollback()
            return
        db.session.delete(resend)
        webhook = db.session.get(WebhookModel, webhook_id)
        event = db.session.get(EventModel, resend.event_id)
        if webhook is None or event is None:  # pruned since
            db.session.commit()
            continue
        db.session.commit()
        try:
            keep(webhook_id, event.id, sent_once(webhook, event))
            db.session.commit()
        except IntegrityError:  # the webhook deleted while the receiver answered
            db.session.rollback()
            return


def sent_once(webhook: WebhookModel, event: EventModel) -> Attempt:
    """One attempt at sending `event` to the endpoint, with no transaction held while the
    receiver answers."""
    url, secret, body = webhook.url, webhook.secret, payload(event)
    headers = signed(secret, event.id, body)
    db.session.rollback()
    return send(url, body, headers, current_settings().webhook_allowed_network_list)


def signed(secret: str, event_id: int, body: bytes) -> dict[str, str]:
    """A delivery's headers: its webhook-id is the event's, the same on every attempt and
    every resend, so that a receiver can drop a duplicate."""
    return signed_headers(secret, f"evt_{event_id}", body, now())


def next_events(webhook: WebhookModel, limit: int) -> list[EventModel]:
    """The endpoint's next events: those of its owner's stores (all, for an admin's), of
    its store and its types when it names them."""
    owner = db.session.get(UserModel, webhook.owner_id)
    return events_after(
        webhook.delivered_through,
        limit,
        owner_id=None if owner.is_admin else owner.id,
        store_id=webhook.store_id,
        types=webhook.event_types or None,
    )


def pump(flask_app: Callable[[], Flask], stop: threading.Event) -> None:
    """Deliver events as they are committed, until `stop` is set: the worker's thread. A
    database that cannot answer pauses it, as long as it lasts. An owner's endpoints take
    OWNERS_SHARE of the senders at most, so that one user's slow receivers leave the others
    theirs."""
    with flask_app().app_context(), ThreadPoolExecutor(SENDERS) as senders:
        running: dict[int, tuple[int, Future]] = {}
        unanswered = False
        while not stop.is_set():
            try:
                place_events()
                due = due_webhooks()
            except OperationalError as failed:
                # Said once, not at every look: 10 tracebacks a second would fill the log
                # (and a pipe nobody reads, which then blocks every thread that logs).
                if not unanswered:
                    logger.warning("webhooks: no answer from the database (%s)", failed.orig)
                unanswered, due = True, []
                stop.wait(UNANSWERED_SECONDS)
            else:
                if unanswered:
                    logger.warning("webhooks: the database answers again")
                unanswered = False
            finally:
                db.session.remove()
            running = {key: each for key, each in running.items() if not each[1].done()}
            for webhook_id, owner_id in due:
                owners = [owner for owner, _ in running.values()]
                if webhook_id not in running and owners.count(owner_id) < OWNERS_SHARE:
                    try:
                        future = senders.submit(in_context, flask_app, webhook_id, stop)
                    except RuntimeError:  # the process exits: concurrent.futures has ended
                        return
                    running[webhook_id] = (owner_id, future)
            stop.wait(POLL_SECONDS)


def in_context(flask_app: Callable[[], Flask], webhook_id: int, stop: threading.Event) -> int:
    with flask_app().app_context():
        try:
            return deliver_to(webhook_id, stop)
        except OperationalError:
            # The event stays where it was: the next turn sends it.
            logger.warning(
                "webhooks: endpoint %s waits for the database", webhook_id, exc_info=True
            )
            return 0
        except Exception:
            # A bug, not the receiver's doing: said, and the endpoint left alone a while
            # rather than tried again at once, forever.
            logger.exception("webhooks: endpoint %s failed; tried again in a minute", webhook_id)
            db.session.rollback()
            webhook = db.session.get(WebhookModel, webhook_id)
            if webhook is not None:
                webhook.next_attempt_at = now() + timedelta(minutes=1)
                db.session.commit()
            return 0
        finally:
            db.session.remove()


def start_pump(flask_app: Callable[[], Flask]) -> threading.Event:
    """Run the pump in a thread of its own (a daemon: the worker's end ends it); set the
    Event to stop it."""
    stop = threading.Event()
    threading.Thread(target=pump, args=(flask_app, stop), name="webhooks", daemon=True).start()
    return stop
