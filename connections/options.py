"""What connections are opened with: the engines' options (both PostgreSQL drivers and
SQLite), the read engine's cursor, and the job worker's libpq connection string."""

import math
from typing import Any

import psycopg
import psycopg2.extensions
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from connections.deadlines import DEADLINES


def libpq_timeouts(connect_timeout: int) -> dict[str, int]:
    """libpq's options that bound how long a lost server can hold a connection, for every
    client of ours (both drivers, the read engine, migrations, the job worker).

    A server that is down answers in `connect_timeout` seconds. A silent one (packets
    dropped, no RST: a partition, a dead network path) is otherwise noticed by TCP after
    minutes or hours, and meanwhile holds the request and its worker: data sent and not
    acknowledged for `tcp_user_timeout` ms breaks the connection, and a connection waiting
    for an answer is probed after 2 s of silence (`keepalives_idle`), each second, and
    broken once a probe is unanswered for `tcp_user_timeout`: a request on a silent server
    fails, and answers 503, within 5 s, and the requests after it in the same process at once
    (connections.silence; the bound: docs/operations.md, "A silent network"). A server that
    is merely busy answers the probes from its kernel, so no slow query is cut off.
    """
    return {
        "connect_timeout": connect_timeout,
        "keepalives": 1,
        "keepalives_idle": 2,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": 4000,
    }


def engine_options(url: str, connect_timeout: int, statement_timeout_ms: int) -> dict:
    # An unexpected database error is logged with its SQL, not its values: they can be
    # password hashes and emails.
    options: dict[str, Any] = {"hide_parameters": True}
    driver = make_url(url).get_driver_name()
    if driver == "pysqlite":
        # A writer waits this long for the database lock, then the request answers 503.
        return {**options, "connect_args": {"timeout": statement_timeout_ms / 1000}}
    if not url.startswith("postgresql"):
        return options
    connect_args: dict[str, Any] = libpq_timeouts(connect_timeout)
    if driver == "psycopg":
        # psycopg 3 prepares a statement on the server after 5 runs; behind PgBouncer in
        # transaction mode that server connection may belong to another client by then.
        connect_args["prepare_threshold"] = None
    return {**options, "connect_args": connect_args}


def read_engine_options(
    url: str, options: dict, statement_timeout_ms: int, deadline_seconds: float | None = None
) -> dict:
    """The engine of reads (READS), or a hot standby's: in autocommit, each statement carrying
    the statement timeout, and on a standby cut off at `deadline_seconds` by our own clock
    (cursor_with_timeout)."""
    # In autocommit there is no transaction to roll back when a connection goes back to the
    # pool: the pool's reset on return would be a call for nothing on every read.
    reads = {"url": url, "isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None, **options}
    driver = make_url(url).get_driver_name()
    cursor = cursor_with_timeout(driver, statement_timeout_ms, deadline_seconds)
    if cursor is not None:
        reads["connect_args"] = {**options["connect_args"], "cursor_factory": cursor}
    if deadline_seconds is not None:
        # Connecting is bounded by libpq alone (there is no socket to cut yet): no longer than
        # the deadline, but libpq takes 2 s at least.
        connect_timeout = max(2, math.ceil(deadline_seconds))
        reads["connect_args"] = {**reads["connect_args"], "connect_timeout": connect_timeout}
    return reads


def cursor_with_timeout(
    driver: str, statement_timeout_ms: int, deadline_seconds: float | None = None
) -> type | None:
    """The cursor class of an engine of reads, which gives every statement the statement
    timeout in the same round trip: there is no transaction to SET LOCAL in (autocommit),
    but PostgreSQL runs a query string of several statements as one implicit transaction,
    so `SET LOCAL` holds for the statement after it, directly and through PgBouncer in
    transaction mode alike. A read stuck behind a lock (a migration's) answers 503 instead of
    holding a worker and a server connection. On a hot standby, each statement is also cut
    off at `deadline_seconds` (connections.deadlines), however silent the server: a stopped
    one runs no statement timeout.

    A cursor class rather than a SQLAlchemy event: measured, the event's dispatch cost as much
    again as the prefix itself. psycopg 3 sends several statements only when it binds
    parameters on the client (ClientCursor), and gives the first statement's result first.
    None for SQLite (readers never wait in WAL mode), and for neither a timeout (0) nor a
    deadline.
    """
    if not statement_timeout_ms and deadline_seconds is None:
        return None
    prefix = f"SET LOCAL statement_timeout = {statement_timeout_ms:d}; "
    prefix = prefix if statement_timeout_ms else ""
    if driver == "psycopg2":

        class Psycopg2ReadCursor(psycopg2.extensions.cursor):
            def execute(self, query, vars=None):
                return super().execute(self.prefix + query, vars)

        cursor: type = Psycopg2ReadCursor
    elif driver == "psycopg":

        class PsycopgReadCursor(psycopg.ClientCursor):
            def execute(self, query, params=None, **options):
                super().execute(self.prefix + query, params, **options)
                if self.prefix:
                    self.nextset()
                return self

        cursor = PsycopgReadCursor
    else:
        return None
    cursor.prefix = prefix
    if deadline_seconds is None:
        return cursor

    class BoundedReadCursor(cursor):
        def execute(self, *args, **kwargs):
            with DEADLINES.bounded(self.connection, deadline_seconds):
                return super().execute(*args, **kwargs)

    return BoundedReadCursor


def libpq_conninfo(url: str, connect_timeout: int) -> str:
    """The libpq connection string of a SQLAlchemy URL (procrastinate's psycopg 3 connector
    takes no URL), with our timeouts, several hosts included: SQLAlchemy names them
    `?host=a:5432&host=b:5433`, libpq wants `host=a,b port=5432,5433` (it would take
    `host=a:5433` for a host name), and libpq then tries them in turn. Options the URL
    names win over our timeouts."""
    parsed = make_url(url)
    options = {name: value for name, value in parsed.query.items() if name != "host"}
    listed = parsed.query.get("host", ())
    listed = (listed,) if isinstance(listed, str) else listed
    hosts = [entry.rpartition(":")[::2] if ":" in entry else (entry, "") for entry in listed]
    return make_conninfo(
        dbname=parsed.database,
        user=parsed.username,
        password=parsed.password,
        host=",".join(name for name, _ in hosts) if hosts else parsed.host,
        port=",".join(port for _, port in hosts) if hosts else parsed.port,
        **{**libpq_timeouts(connect_timeout), **options},
    )
