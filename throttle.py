"""Throttles counted in the database: logins per account and per client address, sign-ups
per client address.

Hand-written rather than Flask-Limiter: its storages are process memory (each worker
counts alone), Redis, Memcached or MongoDB, none of them the database that every instance
already shares. As django-axes does, the counts live in a table, so every worker, every
instance and a restart see the same numbers, on PostgreSQL, through PgBouncer and on SQLite.
"""

import math
import time
from dataclasses import dataclass

from flask_smorest import abort
from sqlalchemy import delete, select, update

from db import db, insert_missing
from models import ThrottleModel

HOUR = 3600.0


@dataclass(frozen=True)
class Limit:
    """`allowed` attempts per `window` seconds, then a wait.

    Without `max_wait`, the wait lasts until the window ends. With it, the wait is a
    growing delay: 1 s after the last allowed attempt, doubling with each further one, up
    to `max_wait`. Refused attempts are not counted, so an attacker cannot make a wait
    longer than that: never a lock-out.
    """

    name: str
    allowed: int
    window: float = HOUR
    max_wait: float | None = None

    def key(self, subject: str) -> str:
        return f"{self.name}:{subject}"

    def count(self, row: ThrottleModel, now: float) -> None:
        if row.window_ends_at <= now:
            row.hits, row.window_ends_at = 0, now + self.window
        row.hits += 1
        if row.hits < self.allowed:
            return
        if self.max_wait is None:
            row.blocked_until = row.window_ends_at
        else:
            row.blocked_until = now + min(2.0 ** (row.hits - self.allowed), self.max_wait)


def attempt(*counted: tuple[Limit, str], refusal: str) -> None:
    """Count one attempt against each (limit, subject), in a transaction of its own; or,
    while any of them must still wait, count nothing and refuse with 429 and Retry-After.

    The rows are locked while they are read and counted, so that concurrent attempts
    are counted one after the other and none slips past a limit.
    """
    now = time.time()
    limits = {limit.key(subject): limit for limit, subject in counted}
    keys = sorted(limits)  # one locking order for every request: no deadlocks
    insert_missing(
        ThrottleModel,
        [{"key": key, "hits": 0, "window_ends_at": now, "blocked_until": 0} for key in keys],
    )
    rows = db.session.scalars(
        select(ThrottleModel)
        .where(ThrottleModel.key.in_(keys))
        .order_by(ThrottleModel.key)
        .with_for_update()
    ).all()
    wait = max(row.blocked_until - now for row in rows)
    if wait > 0:
        db.session.rollback()
        abort(429, message=refusal, headers={"Retry-After": str(math.ceil(wait))})
    for row in rows:
        limits[row.key].count(row, now)
    db.session.commit()


def forgive(limit: Limit, subject: str) -> None:
    """Forget the subject's attempts (an account, after its password was given right)."""
    db.session.execute(delete(ThrottleModel).where(ThrottleModel.key == limit.key(subject)))


def take_back(limit: Limit, subject: str) -> None:
    """Uncount one attempt (a client address's login that was right)."""
    db.session.execute(
        update(ThrottleModel)
        .where(ThrottleModel.key == limit.key(subject), ThrottleModel.hits > 0)
        .values(hits=ThrottleModel.hits - 1)
    )


def prune_expired() -> int:
    """Drop the rows whose window ended and who need not wait: they count nothing."""
    now = time.time()
    return db.session.execute(
        delete(ThrottleModel).where(
            ThrottleModel.window_ends_at < now, ThrottleModel.blocked_until < now
        )
    ).rowcount
