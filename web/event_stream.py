"""Live event streams (GET /events/stream): one reader per process follows the feed and
hands each event to the open streams it concerns, so that streams cost the database nothing
each: the reader's one read every POLL_SECONDS, whatever their number (and through PgBouncer
in transaction mode: each read its own short transaction, no LISTEN).

The reader keeps the events it read, every user's, in feed order (KEPT of them); a stream
takes from them what it may see, past its own position. A stream further behind (it started
from an older cursor, or fell behind that many events) reads its own events from the
database, page by page, until it reaches what the reader keeps. Positions are given one
after another (models/event.py), so the events kept are every one between their first and
the reader's position: a stream that follows them skips nothing, and sees each once.
"""

import bisect
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import NamedTuple

from flask import Flask
from sqlalchemy.exc import OperationalError

from models.event import events_after, feed_bounds, place_events
from schemas.events import EventSchema
from schemas.field_types import cursor_of

log = logging.getLogger(__name__)

# How often the reader looks for new events: an event reaches its streams within this (plus
# the time to place it), and the reader costs a process 4 short reads a second.
POLL_SECONDS = 0.25
# Events the reader reads at once, and keeps for the streams (all users' together).
PAGE = 1000
KEPT = 10_000
# Where an app keeps its hub (app.extensions).
EVENT_HUB = "event_hub"
# Sent first: how long a browser's EventSource waits before it connects again (ms).
RETRY_MILLISECONDS = 3000
# How often a stream asks whether it may go on (its token still good, its client there).
CHECK_SECONDS = 5.0


class Sent(NamedTuple):
    """An event as streams send it, with what decides who may see it."""

    position: int
    owner_id: int | None
    store_id: int
    type: str
    message: bytes


Matches = Callable[[Sent], bool]


def as_sent(events: list) -> list[Sent]:
    schema = EventSchema()
    return [
        Sent(
            event.position, event.owner_id, event.store_id, event.type,
            f"id: {cursor_of(event.position)}\nevent: {event.type}\n"
            f"data: {schema.dumps(event)}\n\n".encode(),
        )
        for event in events
    ]  # fmt: skip


class TooManyStreamsError(Exception):
    pass


class PrunedError(Exception):
    """Events a stream had not sent yet were pruned (EVENTS_RETENTION_DAYS): it ends, and its
    client, connecting again from its Last-Event-ID, is told 410."""


def client_gone(environ: dict) -> bool:
    """Whether the client closed its connection (nginx closes its own to the stream once its
    client's is gone), seen without writing to it: a write to a closed connection succeeds
    once, and only the next fails, two heartbeats later. False where the server lends no
    socket (the tests' client)."""
    connection = environ.get("gunicorn.socket")
    if connection is None:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:  # nothing to read: still there
        return False
    except OSError:
        return True


class EventHub:
    """The one reader of a process, and the streams it feeds."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.changed = threading.Condition()
        self.open: Counter[int] = Counter()  # streams open, by user
        self.kept: list[Sent] = []
        self.positions: list[int] = []  # of kept, for bisect
        self.position = 0  # the reader has read every event up to here
        self.reading = False
        self.stopped = False  # the server stops: streams end
        self.unanswered = False  # the reader's last read failed

    def open_stream(self, user_id: int, limit: int) -> Callable[[], None]:
        """Count a stream of the user's (TooManyStreamsError past `limit`) and make sure the
        reader runs; returns what closes the stream."""
        with self.changed:
            if self.open[user_id] >= limit:
                raise TooManyStreamsError
            if not self.reading:
                self.kept, self.positions = [], []
                self.position = feed_bounds()[0]
                self.reading = True
                threading.Thread(target=self.read, name="event-stream-reader", daemon=True).start()
            self.open[user_id] += 1

        def close() -> None:
            with self.changed:
                self.open[user_id] -= 1
                if not self.open[user_id]:
                    del self.open[user_id]

        return close

    def stop(self) -> None:
        """End every stream (the server stops): their clients connect again, elsewhere or
        once it is back, from their Last-Event-ID."""
        with self.changed:
            self.stopped = True
            self.changed.notify_all()

    def read(self) -> None:
        """The reader: while any stream is open, read the feed past what it has, keep it,
        wake the streams."""
        while True:
            time.sleep(POLL_SECONDS)
            with self.changed:
                if not self.open:
                    self.reading = False  # the next stream starts another, at the head
                    return
                position = self.position
            try:
                with self.app.app_context():
                    place_events()
                    read = as_sent(events_after(position, PAGE))
            except OperationalError as failed:
                # The database away for a while: the streams wait, and get their heartbeats.
                # Said once, not four times a second for as long as it lasts.
                if not self.unanswered:
                    log.warning("The event streams' reader gets no answer (%s)", failed.orig)
                self.unanswered = True
                continue
            except Exception:
                # A bug, said in full: the reader goes on, or no stream would get an event.
                log.exception("The event streams' reader could not read the feed")
                continue
            if self.unanswered:
                log.warning("The event streams' reader reads the feed again")
                self.unanswered = False
            if read:
                with self.changed:
                    self.kept.extend(read)
                    self.positions.extend(each.position for each in read)
                    if len(self.kept) > 2 * KEPT:
                        del self.kept[:-KEPT], self.positions[:-KEPT]
                    self.position = read[-1].position
                    self.changed.notify_all()

    def events_past(
        self, position: int, matches: Matches, timeout: float, read_own: Callable
    ) -> tuple[list[Sent], int]:
        """The events past `position` that `matches` lets through, waiting up to `timeout`
        for some to come, and the position to go on from. `read_own(position, page)` reads
        the stream's own events from the database (as_sent), for a stream behind what is
        kept."""
        with self.changed:
            if position >= self.position and not self.stopped:
                self.changed.wait(timeout)
            first = self.positions[0] if self.positions else self.position + 1
            if position >= first - 1:
                start = bisect.bisect_right(self.positions, position)
                # A stream may start past the reader (at a head it has not read yet).
                going_on = max(position, self.position)
                return [each for each in self.kept[start:] if matches(each)], going_on
            # Every event up to here was committed, and placed, before read_own's read.
            reached = self.position
        events = read_own(position, PAGE)
        # A page not full: none of the stream's events lies between its last and `reached`.
        last = events[-1].position if events else position
        return events, last if len(events) == PAGE else max(last, reached)


def stream(
    hub: EventHub,
    position: int,
    matches: Matches,
    heartbeat: float,
    read_own: Callable,
    going_on: Callable[[], bool],
) -> Iterator[bytes]:
    """The text/event-stream of the events past `position` that `matches` lets through, as
    they come, until the hub stops, or `going_on()` (asked every CHECK_SECONDS) says no; a
    comment line after `heartbeat` seconds without one. A stream whose events were pruned
    before it sent them, or whose database does not answer, ends: its client connects again
    from its Last-Event-ID, and is told why."""
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    quiet_until = time.monotonic() + heartbeat
    check_at = time.monotonic() + CHECK_SECONDS
    while not hub.stopped:
        try:
            if time.monotonic() >= check_at:
                if not going_on():
                    return
                check_at = time.monotonic() + CHECK_SECONDS
            wait = max(0.0, min(quiet_until, check_at) - time.monotonic())
            events, position = hub.events_past(position, matches, wait, read_own)
        except (PrunedError, OperationalError):
            return
        if events:
            yield b"".join(each.message for each in events)
            quiet_until = time.monotonic() + heartbeat
        elif time.monotonic() >= quiet_until:
            yield b": heartbeat\n\n"
            quiet_until = time.monotonic() + heartbeat
