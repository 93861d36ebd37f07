"""A database gone silent (packets dropped, nothing answering: a partition, a dead network
path) costs each process one wait, not one per request.

Each wait that finds the silence is bounded by libpq (connections.options): a statement on a
pooled connection by `tcp_user_timeout` or keepalives, a new connection by `connect_timeout`.
But a gunicorn sync worker serves one request at a time, and a request queued behind a worker
that waits, waits too; then it waits out the same timeout again itself, for a server the
process already knows is silent. Measured under 4 writers and a reader on 2 workers: 10.3 s
for a request that waited in gunicorn's queue behind a statement's 4.2 s and another
request's 3 s connect timeout, then 3 s connecting itself; none of them over 4.3 s in the
worker (tests/servers/test_partition.py). And within one request: an idle connection's ping
failed after 4.2 s, and the pool connected again, for 3 s more.

So a failure of the server's connection that came after a wait of SILENT_AFTER_SECONDS or
more makes the process take the server for silent (a server that restarts, fails over or
refuses answers at once, and the next request tries again as before): every checkout and
connect of its engines fails at once, answering 503 with Retry-After, and one thread probes
the server, each probe bounded by PROBE_TIMEOUT_SECONDS, PROBE_PAUSE_SECONDS after the last;
the first that gets an answer ends it. While the server answers, this costs a request a flag
read at checkout, no round trip.
"""

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine, event

from connections.deadlines import DEADLINES

logger = logging.getLogger("stores.database")

# Slower than any failure of a server that is there (a reset, a refusal, a shutdown's
# message), faster than the quickest of libpq's timeouts (connect_timeout: 2 s at least).
SILENT_AFTER_SECONDS = 1.0
# A probe's connect, and then its SELECT 1 (libpq's least connect_timeout), and the pause
# after a failed one: a server back is found within 1.5 s (a probe's SYN is sent again 1 s
# after the first; one that missed the healing ends 1 s later).
PROBE_TIMEOUT_SECONDS = 2
PROBE_PAUSE_SECONDS = 0.5
# Where a pooled connection notes when it was checked out (Silence.checked_out).
CHECKED_OUT_AT = "checked_out_at"


class Silence:
    """Whether this process takes its database server for silent, and the probe that ends
    it. One per server, shared by the engines that reach it (writes and reads)."""

    def __init__(self) -> None:
        # Set only by a process that has used the database: never gunicorn's master, which
        # forks the workers, even with preload.
        self.since: float | None = None
        self.lock = threading.Lock()
        # How the engines connect (dialect, args, keyword args), for the probe.
        self.connect_with: tuple[Any, list, dict] | None = None

    def guard(self, engine: Engine) -> None:
        """Make `engine` fail at once while the server is silent, and find it silent when
        one of its connects or statements ended in a lost connection after a long wait.
        Checkouts call `checked_out` (connections.faults.ping_idle_connections)."""

        @event.listens_for(engine, "do_connect")
        def connect(dialect, _record, cargs: list, cparams: dict):
            self.refuse_if_silent(dialect)
            self.connect_with = (dialect, cargs, cparams)
            started = time.monotonic()
            try:
                return dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.Error:
                self.found_if_waited(started)
                raise

        @event.listens_for(engine, "handle_error")
        def lost(context) -> None:
            connection = context.connection
            if context.is_disconnect and connection is not None:
                self.found_if_waited(connection.info.get(CHECKED_OUT_AT, time.monotonic()))

    def checked_out(self, dialect, record, now: float) -> None:
        """A pooled connection is handed out: refused while the server is silent; otherwise
        noted, so that a loss found later tells how long the connection had waited at most."""
        self.refuse_if_silent(dialect)
        record.info[CHECKED_OUT_AT] = now

    def refuse_if_silent(self, dialect) -> None:
        if self.since is not None:
            raise dialect.loaded_dbapi.OperationalError(
                "the database server did not answer a moment ago; no new attempt until a "
                "probe reaches it (connections.silence)"
            )

    def found_if_waited(self, started: float) -> None:
        if time.monotonic() - started < SILENT_AFTER_SECONDS or self.connect_with is None:
            return
        with self.lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
        logger.warning("database silent: requests answer 503 at once until a probe reaches it")
        threading.Thread(target=self.probe_until_answered, name="silence", daemon=True).start()

    def probe_until_answered(self) -> None:
        while not self.answered_or_probe_broke():
            time.sleep(PROBE_PAUSE_SECONDS)
        logger.warning("database answers again after %.1f s", time.monotonic() - self.since)
        self.since = None

    def answered_or_probe_broke(self) -> bool:
        # A probe that fails other than by the server's silence (a bug) must not leave the
        # process refusing every request for good: it ends the state, as before it began.
        try:
            return self.answers()
        except Exception:
            logger.exception("database probe failed; requests try the server again")
            return True

    def answers(self) -> bool:
        dialect, cargs, cparams = self.connect_with
        try:
            connection = dialect.connect(
                *cargs, **{**cparams, "connect_timeout": PROBE_TIMEOUT_SECONDS}
            )
        except dialect.loaded_dbapi.Error:
            return False
        try:
            # Through PgBouncer the connect is PgBouncer's answer; the statement, the server's.
            with DEADLINES.bounded(connection, PROBE_TIMEOUT_SECONDS):
                connection.cursor().execute("SELECT 1")
            return True
        except dialect.loaded_dbapi.Error:
            return False
        finally:
            connection.close()
