"""What a pool does when its server is lost, refuses writes, or changes: drop what cannot
serve, reconnect without failing requests, and say which server the API writes to."""

import logging
import time

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError

from connections.deadlines import past_deadline
from connections.silence import Silence

logger = logging.getLogger("stores.database")


# What a server that refuses writes answers them: a hot standby, a demoted primary.
READ_ONLY_SQL_TRANSACTION = "25006"


def drop_read_only_connections(engine: Engine) -> None:
    """Treat a server that refuses writes like a lost one: the pool drops its connections, so
    the next request connects anew and finds the primary (libpq's target_session_attrs, or
    PgBouncer reconnecting). A ping would not notice: SELECT 1 succeeds on a standby. The
    error itself then answers 503 (web.errors)."""

    @event.listens_for(engine, "handle_error")
    def lost_if_read_only(context) -> None:
        diagnostics = getattr(context.original_exception, "diag", None)
        if diagnostics is not None and diagnostics.sqlstate == READ_ONLY_SQL_TRANSACTION:
            context.is_disconnect = True


def ping_idle_connections(
    engine: Engine, idle_seconds: float = 0.1, silence: Silence | None = None
) -> None:
    """Check a pooled connection before use when it sat idle: after a database restart,
    a worker reconnects by itself instead of failing requests on a dead connection.

    Unlike `pool_pre_ping`, connections in steady use are not pinged: a ping is a round
    trip, as costly as the one-statement GET /store/<id> it would precede. A restart
    takes longer than `idle_seconds`, so every connection it killed was idle for longer.

    With `silence` (connections.silence), a checkout is refused while the server is silent,
    and a ping that failed after a long wait finds it silent: connecting again would wait out
    the connect timeout too.
    """

    @event.listens_for(engine.pool, "checkin")
    def note_idle_since(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy) -> None:
        now = time.monotonic()
        if silence is not None:
            silence.checked_out(engine.dialect, record, now)
        idle_since = record.info.get("idle_since")
        if idle_since is None or now - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if past_deadline(error):
                # A stopped standby: connecting to it again would wait out the connect
                # timeout too. The pool drops this connection, and the read fails now.
                raise
            if silence is not None:
                silence.found_if_waited(now)
            # The pool drops this connection and hands out a fresh one (none while silent).
            raise DisconnectionError from error


# SQLSTATEs of a statement cut off by a timeout of ours: statement_timeout (query_canceled,
# which is also a cancel request) and lock_timeout.
TIMED_OUT_SQL = ("57014", "55P03")


def failure_kind(error: DBAPIError) -> str:
    """Why the database could not serve, for metrics: read_only (a server that refuses
    writes), timeout (a statement over its time), or unavailable (down, unreachable, lost)."""
    diagnostics = getattr(error.orig, "diag", None)
    sqlstate = diagnostics.sqlstate if diagnostics is not None else None
    if sqlstate == READ_ONLY_SQL_TRANSACTION:
        return "read_only"
    # SQLite's writer waited out the busy timeout for the database lock.
    if sqlstate in TIMED_OUT_SQL or getattr(error.orig, "sqlite_errorname", "") == "SQLITE_BUSY":
        return "timeout"
    return "unavailable"


def log_server_changes(engine: Engine) -> None:
    """Log the server (host and port, as libpq found it among DATABASE_URL's hosts) that the
    engine's connections reach, at the first connection and whenever a new one reaches
    another: after a failover, the log says where writes went, and when."""
    reached = None

    @event.listens_for(engine, "connect")
    def note_server(dbapi_connection, _record) -> None:
        nonlocal reached
        info = getattr(dbapi_connection, "info", None)  # both PostgreSQL drivers; not SQLite
        server = f"{info.host}:{info.port}" if info is not None else None
        if server is not None and server != reached:
            logger.warning("database writes go to %s (before: %s)", server, reached or "none")
            reached = server
