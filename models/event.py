"""The events of every change to a store and what is in it: a transactional outbox, and the
feed that reads it in commit order.

Each write inserts its event in its own transaction (record_event): the event is there if
and only if the change is. The event gets no place in the feed then: its `position` stays
NULL, and ids, drawn when rows are inserted, are no order to follow: a transaction that drew
id 5 and commits after the one that drew id 6 would be passed over by a reader that had read
6 already (the outbox's classic hole).

Positions are given after the commit, by one assigner at a time (place_events): it locks
the feed's one row (event_feed; on SQLite, BEGIN IMMEDIATE locks the database), and only
then, in a statement whose snapshot is taken after the lock was granted (READ COMMITTED
takes one per statement), numbers every unplaced event it sees, in id order, from the head
on. Why a reader following positions skips nothing and sees each event once:

- An event gets a position once, from an assigner that saw it committed; no event of an
  uncommitted transaction is seen, so none is placed early.
- Assigners run one after the other: each starts after the last committed, sees its head,
  and numbers past it. So a position is visible only once every smaller position is
  (committed by the same or an earlier assigner), on the primary and on a hot standby,
  which replays commits in order. A reader that read up to position p has seen every
  position below p, and every event it has not seen yet gets a position above p.
- An event committed late, whatever its id, is placed by the next assigner, after
  everything placed before: readers see events in the order they were found committed
  (those found at once in id order).

The feed's readers run the assigner before they read (a check of the partial index first:
no write when nothing waits), so the writes pay one INSERT and nothing else. Events are
kept EVENTS_RETENTION_DAYS (prune_events); `pruned_through` tells a cursor that is too old.
"""

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from db import UTCDateTime, db, read_outside_transactions

# Events an assigner places in one transaction, at most.
PLACED_PER_RUN = 10_000


# The indexes of placed events only: a write's INSERT (position NULL) touches none of them.
PLACED = {"postgresql_where": "position IS NOT NULL", "sqlite_where": "position IS NOT NULL"}
UNPLACED = {"postgresql_where": "position IS NULL", "sqlite_where": "position IS NULL"}


class EventModel(db.Model):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_unplaced", "id", **UNPLACED),
        Index("uq_events_position", "position", unique=True, **PLACED),
        # A user's feed (owner_id), a store's (store_id), in feed order.
        Index("ix_events_owner_id_position", "owner_id", "position", **PLACED),
        Index("ix_events_store_id_position", "store_id", "position", **PLACED),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    position: Mapped[int | None] = mapped_column(BigInteger)
    # "<resource>.<what happened>": item.created, store.deleted, ... (schemas.EVENT_TYPES)
    type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[int] = mapped_column(BigInteger)
    store_id: Mapped[int]
    # The store's owner when it happened: whose feed shows the event (besides admins').
    owner_id: Mapped[int | None]
    # Who made the change; None: the system (a purge of an expired store).
    actor_id: Mapped[int | None]
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The resource as the API shows it (JSON), or, for a deletion, as it was.
    data: Mapped[str] = mapped_column(Text)
    # What went or came with a store, or what an import wrote (JSON), or NULL.
    counts: Mapped[str | None] = mapped_column(Text)

    @property
    def payload(self) -> Any:
        return json.loads(self.data)

    @property
    def counted(self) -> dict[str, Any] | None:
        return None if self.counts is None else json.loads(self.counts)


class EventFeedModel(db.Model):
    """The feed's one row: the last position given, and the last pruned."""

    __tablename__ = "event_feed"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    head: Mapped[int] = mapped_column(BigInteger)
    pruned_through: Mapped[int] = mapped_column(BigInteger)


COLUMNS = (
    "type",
    "resource_id",
    "store_id",
    "owner_id",
    "actor_id",
    "occurred_at",
    "data",
    "counts",
)
# The driver's own SQL, sent as it is (db.read_outside_the_session does so for the hottest
# read): SQLAlchemy's compiling and the session's bookkeeping cost about half the INSERT's
# round trip, and a write's event must cost little (bench/events.py).
INSERT_EVENT = {
    paramstyle: f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join(values)})"
    for paramstyle, values in (
        ("pyformat", [f"%({column})s" for column in COLUMNS]),  # psycopg2, psycopg 3
        ("qmark", ["?"] * len(COLUMNS)),  # sqlite3
    )
}


def record_event(
    type: str,
    *,
    resource_id: int,
    store_id: int,
    owner_id: int | None,
    actor_id: int | None,
    data: str,
    counts: dict[str, Any] | None = None,
) -> None:
    """Add the event of a change to the current transaction: committed with the change, or
    rolled back with it. `data` is the resource's JSON, as the API shows it. One INSERT."""
    connection = db.session.connection()
    values = {
        "type": type,
        "resource_id": resource_id,
        "store_id": store_id,
        "owner_id": owner_id,
        "actor_id": actor_id,
        "occurred_at": datetime.now(UTC),
        "data": data,
        "counts": None if counts is None else json.dumps(counts, separators=(",", ":")),
    }
    paramstyle = connection.dialect.paramstyle
    if paramstyle == "pyformat":
        connection.exec_driver_sql(INSERT_EVENT[paramstyle], values)
        return
    # SQLite's text, as SQLAlchemy writes a DateTime there (and compares it: prune_events).
    values["occurred_at"] = values["occurred_at"].strftime("%Y-%m-%d %H:%M:%S.%f")
    connection.exec_driver_sql(INSERT_EVENT[paramstyle], tuple(values[each] for each in COLUMNS))


# Each unplaced event numbered from the head on, in id order; placed by a statement of its
# own, whose snapshot is taken once the feed's row is locked (see the module's docstring).
PLACE = text("""
UPDATE events SET position = :head + placed.number
FROM (
    SELECT id, row_number() OVER (ORDER BY id) AS number
    FROM events WHERE position IS NULL ORDER BY id LIMIT :limit
) AS placed
WHERE events.id = placed.id
""")


def place_events() -> int:
    """Give the committed events that have none their positions, in their own transaction on
    the primary (whatever the request's method); how many."""
    waiting = select(EventModel.id).where(EventModel.position.is_(None)).limit(1)
    if read_outside_transactions(waiting).first() is None:
        return 0
    with db.engine.begin() as connection:
        locked = select(EventFeedModel.head).where(EventFeedModel.id == 1).with_for_update()
        head = connection.scalar(locked)
        placed = connection.execute(PLACE, {"head": head, "limit": PLACED_PER_RUN}).rowcount
        if placed:
            connection.execute(update(EventFeedModel).values(head=head + placed))
    return placed


BOUNDS = select(EventFeedModel.head, EventFeedModel.pruned_through)


def feed_bounds() -> tuple[int, int]:
    """The feed's head (its newest position) and the last position pruned, as the primary
    has them (never a hot standby's, behind)."""
    row = read_outside_transactions(BOUNDS).one()
    return row.head, row.pruned_through


def events_after(
    position: int,
    limit: int,
    *,
    owner_id: int | None = None,
    store_id: int | None = None,
    types: list[str] | None = None,
) -> list[EventModel]:
    """Up to `limit` events past `position`, in feed order; with `owner_id`, those of that
    user's stores only, with `store_id` of that store, with `types` of those types. Each
    filter is served by an index in position order (or filters that walk)."""
    statement = select(EventModel).where(EventModel.position > position)
    if owner_id is not None:
        statement = statement.where(EventModel.owner_id == owner_id)
    if store_id is not None:
        statement = statement.where(EventModel.store_id == store_id)
    if types:
        statement = statement.where(EventModel.type.in_(types))
    return list(db.session.scalars(statement.order_by(EventModel.position).limit(limit)))


def prune_events(older_than: datetime, batch: int) -> int:
    """Delete up to `batch` of the oldest events, in feed order, while they happened before
    `older_than`, in a transaction of their own; how many. The feed's `pruned_through` moves
    past them in the same transaction: a cursor before it is refused (410)."""
    place_events()  # events nobody read yet are pruned in their place too
    through = db.session.execute(BOUNDS.with_for_update()).one().pruned_through  # one at a time
    oldest = (
        select(EventModel.position, EventModel.occurred_at)
        .where(EventModel.position > through)
        .order_by(EventModel.position)
        .limit(batch)
        .subquery()
    )
    last = db.session.scalar(
        select(func.max(oldest.c.position)).where(oldest.c.occurred_at < older_than)
    )
    if last is None:
        db.session.rollback()
        return 0
    pruned = db.session.execute(
        delete(EventModel).where(EventModel.position > through, EventModel.position <= last)
    ).rowcount
    db.session.execute(update(EventFeedModel).values(pruned_through=last))
    db.session.commit()
    return pruned
