"""The hot standbys reads may go to, and what is known of each: up or not, whether it is a
standby of the primary at all, how far its replay has come, and how far behind the primary
it is. In each API process a thread per standby checks it every CHECK_SECONDS (never a
request: a request only reads what the last check found), so that a standby whose server is
silent holds up no check of the others. Every statement on a standby, the checks' included,
is cut off by our own clock (DATABASE_REPLICA_TIMEOUT_SECONDS: connections.deadlines).

Lag is measured against the primary's own WAL, not the standby's replay timestamps (which
stand still on an idle primary and say nothing of a standby cut off from it): each check asks
the standby, then samples the primary's flushed position, and a standby's lag is how long
before its answer the primary had flushed no more than it had replayed. A standby whose check
is older than STALE_AFTER_SECONDS counts as unknown, and serves nothing.

A standby counts only while its data is the primary's: the same system identifier (not
another cluster's initdb), a timeline no later than the primary's (not one promoted, written
to and put back in recovery without a rewind), and replay no further than the primary had
flushed after the standby answered (no writes the primary never made). Otherwise it is
refused, with one log line saying why, until a check finds it a standby of the primary again.
"""

import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger("stores.replicas")

CHECK_SECONDS = 1.0
STALE_AFTER_SECONDS = 3 * CHECK_SECONDS
# How far back the primary's samples go: a standby further behind reads as at least this far.
SAMPLES_KEPT_SECONDS = 600.0
# pg_walfile_name() names the primary's current timeline whatever the position (its first 8
# hex digits). A standby's replay timeline is not shown as such: the WAL receiver's timeline,
# visible to superusers and pg_read_all_stats, else its last restartpoint's, which may still
# name the timeline before a failover for minutes. Either is never past the timeline it
# replays, so only a standby on a later timeline than the primary's is refused: one that
# legitimately follows a new primary is never refused for this.
PRIMARY_STATE = text(
    "SELECT flushed::text, pg_walfile_name(flushed), system_identifier::text "
    "FROM pg_current_wal_flush_lsn() AS flushed, pg_control_system()"
)
STANDBY_CHECK = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, system_identifier::text, "
    "greatest(timeline_id, (SELECT received_tli FROM pg_stat_wal_receiver)) "
    "FROM pg_control_system(), pg_control_checkpoint()"
)
STANDBY_REPLAYED = text("SELECT pg_last_wal_replay_lsn()::text")
# Why a standby that answers is refused (the metric's label values).
REFUSALS = ("other_cluster", "later_timeline", "ahead")


def lsn(text_form: str) -> int:
    """A WAL position ("16/B374D848") as a number, to compare."""
    high, _, low = text_form.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class Primary(NamedTuple):
    """What a check sampled of the primary."""

    flushed: int
    timeline: int
    system_identifier: str


class Standby(NamedTuple):
    """What a check found on a standby."""

    in_recovery: bool
    replayed: int | None
    system_identifier: str
    timeline: int


@dataclass
class Replica:
    name: str
    engine: Engine
    up: bool = False
    # Why it is refused though it answers (one of REFUSALS), None while it counts.
    refused: str | None = None
    replayed: int = 0
    # After it failed a read: it serves again once a check finds it replayed this far (what
    # the primary had flushed then). A standby whose replay is stuck (waiting for a query it
    # conflicts with) answers its checks, but stays out until its replay moves on.
    rejoin_at: int = 0
    lag_seconds: float = math.inf
    # False: lag_seconds is only a lower bound (replay is behind every sample kept).
    lag_known: bool = False
    checked_at: float = -math.inf
    # (monotonic time, the primary's flushed WAL position), oldest first.
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def serves(self, max_lag_seconds: float, now: float) -> bool:
        return (
            self.up
            and self.refused is None
            and self.replayed >= self.rejoin_at
            and self.lag_known
            and self.lag_seconds <= max_lag_seconds
            and now - self.checked_at < STALE_AFTER_SECONDS
        )

    def has_replayed(self, position: int) -> bool:
        """Whether the standby has replayed up to `position`, asked of it now when the last
        check had not seen it there (one round trip on the standby, none on the primary)."""
        if self.replayed >= position:
            return True
        with self.engine.connect() as connection:
            replayed = connection.scalar(STANDBY_REPLAYED)
        if replayed is not None:
            self.replayed = max(self.replayed, lsn(replayed))
        return self.replayed >= position

    def lost(self) -> None:
        """A request found it down, or past the deadline: left out until a check finds it up
        again and replayed as far as the primary had flushed by now."""
        self.up = False
        if self.samples:
            self.rejoin_at = max(self.rejoin_at, self.samples[-1][1])


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

    def serves(self, replica: Replica) -> bool:
        self.keep_checking()
        return replica.serves(self.max_lag_seconds, time.monotonic())

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
        standby = ask_standby(replica)
        answered_at = time.monotonic()
        # Sampled after the standby answered: the primary had flushed at least what the
        # standby had replayed by then, if the standby follows it.
        primary = self.sample_primary(replica.samples)
        was_up = replica.up
        # A server out of recovery is no standby of ours any more (promoted, or a primary
        # named by mistake): its data may have parted from the primary's.
        replica.up = standby is not None and standby.in_recovery and standby.replayed is not None
        if replica.up != was_up:
            logger.warning(
                "database replica %s is %s", replica.name, "up" if replica.up else "down"
            )
        if not replica.up:
            replica.lag_seconds, replica.lag_known = math.inf, False
        else:
            # Without a fresh sample (the primary unreachable: a failover going on), the last
            # verdict stands: the lag, growing from the last sample, says the rest.
            if primary is not None:
                self.judge(replica, standby, primary)
            replica.replayed = standby.replayed
            replica.checked_at = answered_at
            replica.lag_seconds, replica.lag_known = (
                lag_of(replica.samples, replica.replayed, answered_at)
                if replica.refused is None
                else (math.inf, False)
            )
        self.on_check(replica)

    @staticmethod
    def judge(replica: Replica, standby: Standby, primary: Primary) -> None:
        was_refused, replica.refused = replica.refused, refusal(standby, primary)
        if replica.refused == was_refused:
            return
        if replica.refused is None:
            logger.warning("database replica %s is a standby of the primary again", replica.name)
        else:
            why = why_refused(replica.refused, standby, primary)
            logger.warning("database replica %s is refused: %s", replica.name, why)

    def sample_primary(self, samples: deque[tuple[float, int]]) -> Primary | None:
        try:
            with self.primary.connect() as connection:
                flushed, walfile, system_identifier = connection.execute(PRIMARY_STATE).one()
        except DBAPIError:
            # No new sample: the standbys' lag grows from the last one, and past the maximum
            # they serve nothing, as nothing says how far behind they are.
            return None
        now, position = time.monotonic(), lsn(flushed)
        samples.append((now, position))
        while len(samples) > 1 and now - samples[1][0] > SAMPLES_KEPT_SECONDS:
            samples.popleft()
        return Primary(position, int(walfile[:8], 16), system_identifier)


def ask_standby(replica: Replica) -> Standby | None:
    """What the standby says of itself; None if it does not answer."""
    try:
        with replica.engine.connect() as connection:
            in_recovery, replayed, system_identifier, timeline = connection.execute(
                STANDBY_CHECK
            ).one()
    except DBAPIError:
        return None
    return Standby(
        in_recovery, None if replayed is None else lsn(replayed), system_identifier, timeline
    )


def refusal(standby: Standby, primary: Primary) -> str | None:
    """Why the standby's data is not the primary's (one of REFUSALS), or None."""
    if standby.system_identifier != primary.system_identifier:
        return "other_cluster"
    if standby.timeline > primary.timeline:
        return "later_timeline"
    if standby.replayed is not None and standby.replayed > primary.flushed:
        return "ahead"
    return None


def why_refused(reason: str, standby: Standby, primary: Primary) -> str:
    return {
        "other_cluster": f"it is another cluster (system identifier "
        f"{standby.system_identifier}, the primary's {primary.system_identifier})",
        "later_timeline": f"its timeline {standby.timeline} is later than the primary's "
        f"{primary.timeline}: it was promoted, and then put back in recovery without a rewind",
        "ahead": f"it has replayed up to {lsn_text(standby.replayed or 0)}, past the "
        f"{lsn_text(primary.flushed)} the primary had flushed: it has writes of its own",
    }[reason]


def lsn_text(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def lag_of(
    samples: deque[tuple[float, int]], replayed: int, answered_at: float
) -> tuple[float, bool]:
    """How long before the standby answered the primary had flushed no more than it had
    replayed, from the newest sample at or before its position (0 for a sample taken since:
    caught up); and whether that is known: behind every sample, the lag is at least as old as
    the oldest one."""
    for taken_at, position in reversed(samples):
        if position <= replayed:
            return max(0.0, answered_at - taken_at), True
    if not samples:
        return math.inf, False
    return max(0.0, answered_at - samples[0][0]), False
