"""What a user's reads must see, noted on the primary (recent_writes): that the user wrote, or
was answered by the primary, just now; and the cookie that tells a client's reads whose they
are when it sends no token. replication.routing reads the notes back."""

import math
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from flask import Response, current_app, g, request
from sqlalchemy import Insert, func
from sqlalchemy.dialects import postgresql

from db import ROUTING, db
from models import RecentWriteModel

if TYPE_CHECKING:
    from replication.routing import Routing

COOKIE = "read_your_writes"
# A process notes a user's write at most this often: the note of their last write may be this
# much older than the write, and the window is that much longer. One upsert costs as much as
# 10 % of a POST here (docs/benchmarks.md); a user's burst of writes pays it once a second.
NOTED_EVERY_SECONDS = 1.0
# Users whose notes this process keeps the time of, at most: then it forgets them all.
NOTES_KEPT = 10_000


class Notes:
    """When this process's last committed note of each user was taken (monotonic)."""

    def __init__(self) -> None:
        self.taken_at: dict[int, float] = {}

    def due(self, user_id: int) -> float | None:
        """When this note is taken (monotonic), unless this process noted the user less than
        NOTED_EVERY_SECONDS ago: the window is that much longer."""
        noting = time.monotonic()
        if noting - self.taken_at.get(user_id, -math.inf) < NOTED_EVERY_SECONDS:
            return None
        return noting

    def taken(self, user_id: int, noting: float) -> None:
        """The user's note taken at `noting` is committed: later ones lean on it until
        NOTED_EVERY_SECONDS later."""
        if len(self.taken_at) >= NOTES_KEPT:
            self.taken_at.clear()
        self.taken_at[user_id] = noting


def read_the_primary() -> None:
    """This GET reads from the primary past the engine of reads too (an export's snapshot): a
    known reader's answer is noted all the same."""
    g.read_the_primary = True


def forget_reader() -> None:
    """This write ends a login (a logout): its answer clears the cookie rather than setting
    it, and the client reads as anyone until it sends a token again."""
    g.reader_forgotten = True


def note(user_id: int) -> Insert:
    """The upsert that records, on the primary, that the user wrote (or read the primary) now."""
    now = func.clock_timestamp()
    return (
        postgresql.insert(RecentWriteModel)
        .values(user_id=user_id, written_at=now)
        .on_conflict_do_update(index_elements=[RecentWriteModel.user_id], set_={"written_at": now})
    )


def note_write(user_id: int, response: Response | None = None) -> Callable[[], None] | None:
    """Record, in the current transaction, that the user wrote: their next reads see it. With
    the write's `response`, the cookie that says so to a client that sends no token. Unless
    this process noted their write less than NOTED_EVERY_SECONDS ago, what to call once the
    transaction committed (later writes lean on this note until then)."""
    routing: Routing | None = current_app.extensions.get(ROUTING)
    if routing is None:
        return None
    if response is not None:
        attributes = {"httponly": True, "samesite": "Lax", "secure": request.is_secure}
        if g.get("reader_forgotten", False):
            response.delete_cookie(COOKIE, **attributes)
        else:
            response.set_cookie(
                COOKIE, routing.cookies.dumps(user_id), max_age=routing.cookie_seconds,
                **attributes,
            )  # fmt: skip
    noting = routing.notes.due(user_id)
    if noting is None:
        return None
    db.session.execute(note(user_id))
    return partial(routing.notes.taken, user_id, noting)
