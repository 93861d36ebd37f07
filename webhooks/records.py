"""What delivery attempts leave behind (webhooks/delivering.py sends them): their records,
and the endpoint's place in the feed moved past the events delivered, or its next attempt
set after a failure, in one transaction; a turn's records kept together (Records)."""

import time
from concurrent.futures import Future
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from db import db
from models import WebhookDeliveryModel, WebhookModel
from webhooks.sending import Attempt

# Waits between the attempts at one event, as Standard Webhooks' reference schedule spaces
# them, then a day apart, until GIVE_UP_AFTER.
RETRIES = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=24),
]
GIVE_UP_AFTER = timedelta(days=3)
# A turn's delivered events are recorded together, this many at most, the oldest this long
# at most after its delivery (Records).
KEEP_EVERY = 20
KEEP_SECONDS = 0.1


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Terms:
    """What a turn sends, where and how: an endpoint changed meanwhile ends the turn."""

    url: str
    secret: str
    store_id: int | None
    event_types: tuple[str, ...]

    @classmethod
    def of(cls, webhook: WebhookModel | Row) -> "Terms":
        """The terms of a webhook, or of a row of its TERMS_COLUMNS."""
        return cls(webhook.url, webhook.secret, webhook.store_id, tuple(webhook.event_types))


TERMS_COLUMNS = tuple(getattr(WebhookModel, term.name) for term in fields(Terms))


def caught_up(webhook_id: int, terms: Terms, head: int) -> None:
    """The endpoint has sent every event of its own up to `head`: none of them fails either
    (one that failed is no longer its business: pruned, or of a store or type it no longer
    names), so its next failure begins a schedule of retries anew."""
    webhook = db.session.get(WebhookModel, webhook_id)
    if webhook is not None and Terms.of(webhook) == terms:
        webhook.delivered_through = max(webhook.delivered_through, head)
        webhook.failing_since = webhook.next_attempt_at = None
    db.session.commit()


def keep(webhook_id: int, event_id: int, attempt: Attempt, tried: int | None = None) -> None:
    """Add the attempt's record to the transaction, numbered after the attempts at the event
    before it (`tried`, when the caller knows how many)."""
    if tried is None:
        tried = attempts_at(webhook_id, event_id)
    db.session.execute(insert(WebhookDeliveryModel), [row(webhook_id, event_id, attempt, tried)])


def attempts_at(webhook_id: int, event_id: int, since: datetime | None = None) -> int:
    """How many attempts at the event the endpoint's records hold (made `since`)."""
    counted = select(func.count()).where(
        WebhookDeliveryModel.webhook_id == webhook_id,
        WebhookDeliveryModel.event_id == event_id,
    )
    if since is not None:
        counted = counted.where(WebhookDeliveryModel.attempted_at >= since)
    return db.session.scalar(counted)


def row(webhook_id: int, event_id: int, attempt: Attempt, tried: int) -> dict:
    """An attempt's record, the attempt numbered after the `tried` ones before it."""
    return {
        "webhook_id": webhook_id,
        "event_id": event_id,
        "attempt": tried + 1,
        "attempted_at": attempt.at,
        "status": attempt.status,
        "seconds": attempt.seconds,
        "error": text_column(attempt.error),
        "answer": text_column(attempt.answer.decode("utf-8", "replace")),
    }


def text_column(said: str | None) -> str | None:
    """What a receiver said, as a text column holds it: PostgreSQL's hold no NUL."""
    return said.replace("\x00", "\ufffd") if said else None


@dataclass(frozen=True)
class Delivery:
    """An event its receiver took (answered 2xx), its record not kept yet."""

    event_id: int
    position: int
    attempt: Attempt
    # Whether the event may have been attempted before (a failing endpoint's first).
    tried_before: bool


def failed(webhook_id: int, event_id: int, attempt: Attempt, tried_before: bool) -> None:
    """Keep the failed attempt at the event and set the endpoint's next attempt (or turn it
    off, after GIVE_UP_AFTER of failures), in one transaction."""
    webhook = db.session.get(WebhookModel, webhook_id)
    if webhook is None:
        db.session.rollback()
        return
    try:
        # An event not tried before is the first attempt: no count needed (the common case).
        # Its INSERT checks the webhook's row at once: a deletion committed meanwhile fails it.
        keep(webhook_id, event_id, attempt, None if tried_before else 0)
        if webhook.failing_since is None:
            webhook.failing_since, retried = attempt.at, 0
        else:
            # The schedule counts the attempts since the endpoint began failing: turned on
            # again (failing since then), it is retried soon again. (Not below 0: the API's
            # clock and the worker's may differ a little.)
            retried = max(attempts_at(webhook_id, event_id, webhook.failing_since) - 1, 0)
        giving_up_at = webhook.failing_since + GIVE_UP_AFTER
        if now() >= giving_up_at:
            webhook.disabled_at, webhook.disabled_reason = now(), attempt.error
        else:
            # The last retry at the end of the GIVE_UP_AFTER, not a day past it.
            retry = now() + RETRIES[min(retried, len(RETRIES) - 1)]
            webhook.next_attempt_at = min(retry, giving_up_at)
        db.session.commit()
    except IntegrityError:  # the webhook deleted meanwhile, its attempts with it
        db.session.rollback()


def delivered(webhook_id: int, terms: Terms, deliveries: list[Delivery]) -> bool:
    """The endpoint moved past its delivered events, its row locked by the UPDATE (a deletion
    waits for the commit), and their attempts kept, in one transaction (two statements and a
    commit, whatever their number: Core's, none of the ORM's unit of work, which was most of
    a delivery's time in the worker at 100 a second); whether the endpoint's terms are still
    the turn's."""
    now_terms = db.session.execute(
        update(WebhookModel)
        .where(WebhookModel.id == webhook_id)
        .values(delivered_through=deliveries[-1].position, failing_since=None, next_attempt_at=None)
        .returning(*TERMS_COLUMNS)
        .execution_options(synchronize_session=False)
    ).first()
    if now_terms is None:  # deleted meanwhile
        db.session.rollback()
        return False
    rows = []
    for each in deliveries:
        tried = attempts_at(webhook_id, each.event_id) if each.tried_before else 0
        rows.append(row(webhook_id, each.event_id, each.attempt, tried))
    db.session.execute(insert(WebhookDeliveryModel), rows)
    db.session.commit()
    return Terms.of(now_terms) == terms


class Records:
    """A turn's delivered events, their records kept together (records.delivered): at
    KEEP_EVERY events, once the oldest waited KEEP_SECONDS (while the next attempt runs, if it
    takes that long), and before the turn ends. A transaction per event was most of a
    delivery's cost, and one endpoint's deliveries are sent one after another. A worker that
    dies sends the unkept ones again (receivers tell by webhook-id), and an endpoint changed
    or deleted meanwhile is found at the next keeping, which ends the turn."""

    def __init__(self, webhook_id: int, terms: Terms) -> None:
        self.webhook_id, self.terms = webhook_id, terms
        self.unkept: list[Delivery] = []
        self.oldest = 0.0
        self.goes_on = True
        self.delivered = 0

    def awaiting(self, attempt: Future[Attempt]) -> Attempt:
        """The attempt's outcome, the records noted kept meanwhile once due: a slow receiver
        holds back none of the events it took before."""
        if self.unkept:
            try:
                return attempt.result(timeout=self.oldest + KEEP_SECONDS - time.monotonic())
            except TimeoutError:
                self.kept()
        return attempt.result()

    def add(self, delivery: Delivery) -> bool:
        """Note a delivered event; whether the turn goes on."""
        if not self.unkept:
            self.oldest = time.monotonic()
        self.unkept.append(delivery)
        self.delivered += 1
        due = len(self.unkept) >= KEEP_EVERY or time.monotonic() - self.oldest >= KEEP_SECONDS
        if due or not self.goes_on:
            self.kept()
        return self.goes_on

    def kept(self) -> bool:
        """Keep the records noted; whether the turn goes on: the endpoint is there, its terms
        unchanged."""
        if self.unkept:
            self.goes_on = delivered(self.webhook_id, self.terms, self.unkept) and self.goes_on
            self.unkept = []
        return self.goes_on
