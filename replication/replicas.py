"""The hot standbys reads may go to, and what is known of each: up or not, how far its replay
has come, and how far behind the primary it is. In each API process a thread per standby
checks it every CHECK_SECONDS (never a request: a request only reads what the last check
found), so that a standby whose server is silent holds up no check of the others.

Lag is measured against the primary's own WAL, not the standby's replay timestamps (which
stand still on an idle primary and say nothing of a standby cut off from it): each check
first samples the primary's flushed position, and a standby's lag is how long ago the newest
of its check's samples that it has replayed was taken. A standby whose check is older than
STALE_AFTER_SECONDS counts as unknown, and serves nothing.
"""

import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger("stores.replicas")

CHECK_SECONDS = 1.0
STALE_AFTER_SECONDS = 3 * CHECK_SECONDS
PRIMARY_POSITION = text("SELECT pg_current_wal_flush_lsn()::text")
STANDBY_STATE = text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")


def lsn(text_form: str) -> int:
    """A WAL position ("16/B374D848") as a number, to compare."""
    high, _, low = text_form.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class Replica:
    name: str
    engine: Engine
    up: bool = False
    replayed: int = 0
    lag_seconds: float = math.inf
    checked_at: float = -math.inf
    # (monotonic time, the primary's flushed WAL position) before each check, oldest first.
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def serves(self, max_lag_seconds: float, now: float) -> bool:
        return (
            self.up
            and self.lag_seconds <= max_lag_seconds
            and now - self.checked_at < STALE_AFTER_SECONDS
        )

    def has_replayed(self, position: int) -> bool:
        """Whether the standby has replayed up to `position`, asked of it now when the last
        check had not seen it there (one round trip on the standby, none on the primary)."""
        if self.replayed >= position:
            return True
        with self.engine.connect() as connection:
            replayed = connection.execute(STANDBY_STATE).one()[1]
        if replayed is not None:
            self.replayed = max(self.replayed, lsn(replayed))
        return self.replayed >= position

    def lost(self) -> None:
        """A request found it down: left out until a check finds it up again."""
        self.up = False


class Replicas:
    """The standbys of one primary, and the threads that check them; started by the first
    request that asks, in the process that serves it (gunicorn forks workers after import)."""

    def __init__(self, primary: Engine, replicas: list[Replica], max_lag_seconds: float) -> None:
        self.primary, self.all, self.max_lag_seconds = primary, replicas, max_lag_seconds
        self.checking_in_pid: int | None = None
        self.starting = threading.Lock()
        self.on_check = lambda _replica: None

    def serving(self) -> list[Replica]:
        self.keep_checking()
        now = time.monotonic()
        return [replica for replica in self.all if replica.serves(self.max_lag_seconds, now)]

    def keep_checking(self) -> None:
        if self.checking_in_pid == os.getpid():
            return
        with self.starting:
            if self.checking_in_pid == os.getpid():
                return
            first_checks = []
            for replica in self.all:
                first_checks.append(checked := threading.Event())
                name = f"replica-checks-{replica.name}"
                threading.Thread(
                    target=self.check_forever, args=(replica, checked), name=name, daemon=True
                ).start()
            # The first GET waits for the first checks, a silent standby's no longer than
            # CHECK_SECONDS: until then it would go to the primary.
            deadline = time.monotonic() + CHECK_SECONDS
            for checked in first_checks:
                checked.wait(max(0.0, deadline - time.monotonic()))
            self.checking_in_pid = os.getpid()

    def check_forever(self, replica: Replica, checked: threading.Event) -> None:
        while True:
            try:
                self.check(replica)
            except Exception:
                # A bug here must not stop the checks: the standby would go stale, and serve
                # nothing, for the rest of the process's life.
                logger.exception("checking the database replica %s failed", replica.name)
            checked.set()
            time.sleep(CHECK_SECONDS)

    def check(self, replica: Replica) -> None:
        self.sample_primary(replica.samples)
        self.check_replica(replica)
        self.on_check(replica)

    def sample_primary(self, samples: deque[tuple[float, int]]) -> None:
        try:
            with self.primary.connect() as connection:
                position = lsn(connection.scalar(PRIMARY_POSITION))
        except DBAPIError:
            # No new sample: the standbys' lag grows from the last one, and past the maximum
            # they serve nothing, as nothing says how far behind they are.
            return
        now = time.monotonic()
        samples.append((now, position))
        # Kept: every sample younger than the maximum lag, and the newest one older.
        while len(samples) > 1 and now - samples[1][0] > self.max_lag_seconds:
            samples.popleft()

    def check_replica(self, replica: Replica) -> None:
        was_up = replica.up
        try:
            with replica.engine.connect() as connection:
                in_recovery, replayed = connection.execute(STANDBY_STATE).one()
        except DBAPIError:
            in_recovery, replayed = False, None
        # A server out of recovery is no standby of ours any more (promoted, or a primary
        # named by mistake): its data may have parted from the primary's.
        replica.up = bool(in_recovery) and replayed is not None
        if replica.up:
            replica.replayed = lsn(replayed)
            replica.lag_seconds = lag_of(replica.samples, replica.replayed)
            replica.checked_at = time.monotonic()
        else:
            replica.lag_seconds = math.inf
        if replica.up != was_up:
            state = "up" if replica.up else "down"
            logger.warning("database replica %s is %s", replica.name, state)


def lag_of(samples: deque[tuple[float, int]], replayed: int) -> float:
    """How long ago the primary had written no more than the standby has replayed: the newest
    sample at or before its position. Older than every sample: as old as they go, at least
    (the maximum lag, or more)."""
    now = time.monotonic()
    for taken_at, position in reversed(samples):
        if position <= replayed:
            return now - taken_at
    return math.inf
