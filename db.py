"""The database: models' base, the session with its two engines (writes, and reads in
autocommit), and how their connections are set up on PostgreSQL and SQLite."""

import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import flask_sqlalchemy.session
import psycopg
import psycopg2.extensions
from flask import has_request_context, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Executable,
    MetaData,
    Result,
    TypeDecorator,
    any_,
    delete,
    event,
    func,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Named constraints let Alembic's SQLite batch mode find and recreate them.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class UTCDateTime(TypeDecorator):
    """A timestamp with its time zone on every database, UTC: SQLite stores none, and would
    hand back naive datetimes, which clients could not place."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


# Requests that only read, and the engine they use (a bind of Flask-SQLAlchemy's).
READ_METHODS = ("GET", "HEAD")
READS = "reads"


class Session(flask_sqlalchemy.session.Session):
    """GET and HEAD run on an engine of their own, whose connections are in autocommit
    for good: no BEGIN and ROLLBACK round trips, and no switching of a pooled connection's
    isolation level there and back on every request (with psycopg2, 42 µs each way).

    Nothing is lost: under READ COMMITTED each statement takes its own snapshot anyway,
    so a read-only transaction would make the reads no more consistent. And nothing
    connects before the first query: the docs need no database.
    """

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and has_request_context() and request.method in READ_METHODS:
            return db.engines[READS]
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


# Responses are built from objects after commit: expiring them would cost a query
# per object and trip the lazy="raise" guards on eager-loaded collections.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False, "class_": Session})


def read_outside_transactions(statement: Executable) -> Result:
    """Run a read on the engine of reads, whatever the request's method: it holds no
    transaction afterwards, so no lock (on SQLite, not the database's write lock) and,
    through PgBouncer in transaction mode, no server connection."""
    return db.session.execute(statement, bind_arguments={"bind": db.engines[READS]})


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
    # A database that is down or stuck answers 503 in seconds instead of hanging workers.
    connect_args: dict[str, Any] = {"connect_timeout": connect_timeout}
    if driver == "psycopg":
        # psycopg 3 prepares a statement on the server after 5 runs; behind PgBouncer in
        # transaction mode that server connection may belong to another client by then.
        connect_args["prepare_threshold"] = None
    return {**options, "connect_args": connect_args}


def read_engine_options(url: str, options: dict, statement_timeout_ms: int) -> dict:
    """The engine of reads (READS): in autocommit, each statement carrying the statement
    timeout (cursor_with_timeout)."""
    # In autocommit there is no transaction to roll back when a connection goes back to the
    # pool: the pool's reset on return would be a call for nothing on every read.
    reads = {"url": url, "isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None, **options}
    cursor = cursor_with_timeout(make_url(url).get_driver_name(), statement_timeout_ms)
    if cursor is not None:
        reads["connect_args"] = {**options["connect_args"], "cursor_factory": cursor}
    return reads


def read_outside_the_session(statement: Executable, parameters: dict) -> Any:
    """The one value of a read on the engine of reads, on a connection of its own rather
    than through the ORM session: for the hottest read (GET /store/<id>), the session's
    bookkeeping cost more than the statement's round trip (docs/benchmarks.md)."""
    with db.engines[READS].connect() as connection:
        return connection.scalar(statement, parameters)


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


def ping_idle_connections(engine: Engine, idle_seconds: float = 0.1) -> None:
    """Check a pooled connection before use when it sat idle: after a database restart,
    a worker reconnects by itself instead of failing requests on a dead connection.

    Unlike `pool_pre_ping`, connections in steady use are not pinged: a ping is a round
    trip, as costly as the one-statement GET /store/<id> it would precede. A restart
    takes longer than `idle_seconds`, so every connection it killed was idle for longer.
    """

    @event.listens_for(engine.pool, "checkin")
    def note_idle_since(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool drops this connection and hands out a fresh one.
            raise DisconnectionError from error


def configure_sqlite(engine: Engine) -> None:
    """Foreign keys and WAL on every SQLite connection, and transactions left to us."""

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection, _connection_record) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        # SQLite ignores foreign keys, and so ON DELETE CASCADE, unless asked per connection.
        dbapi_connection.execute("PRAGMA foreign_keys=ON")
        # Readers and the one writer do not block each other.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        # pysqlite would begin transactions itself, late (at the first write): SQLAlchemy's
        # documented recipe turns that off and emits BEGIN itself (begin_transactions).
        dbapi_connection.isolation_level = None


def begin_transactions(engine: Engine, statement_timeout_ms: int) -> None:
    """Make transactions behave alike on PostgreSQL and SQLite, with one guarantee each:
    a request's look-ups and writes are serialized against other writers.

    SQLite: BEGIN IMMEDIATE takes the database's write lock before the first read, as
    PostgreSQL's row locks would (SQLite has no SELECT ... FOR UPDATE); a second writer
    waits, up to the busy timeout. PostgreSQL: the statement timeout is set per
    transaction (SET LOCAL), not per connection, since a pooler in transaction mode
    (PgBouncer) refuses startup options and hands the server connection to other
    clients between transactions. The engine of reads (READS) begins none.
    """

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {statement_timeout_ms:d}")


def cursor_with_timeout(driver: str, statement_timeout_ms: int) -> type | None:
    """The cursor class of the engine of reads, which gives every statement the statement
    timeout in the same round trip: there is no transaction to SET LOCAL in (autocommit),
    but PostgreSQL runs a query string of several statements as one implicit transaction,
    so `SET LOCAL` holds for the statement after it, directly and through PgBouncer in
    transaction mode alike. A read stuck behind a lock (a migration's) answers 503 instead of
    holding a worker and a server connection.

    A cursor class rather than a SQLAlchemy event: measured, the event's dispatch cost as much
    again as the prefix itself. psycopg 3 sends several statements only when it binds
    parameters on the client (ClientCursor), and gives the first statement's result first.
    None for SQLite (readers never wait in WAL mode) and for a timeout of 0 (none to set).
    """
    if not statement_timeout_ms:
        return None
    prefix = f"SET LOCAL statement_timeout = {statement_timeout_ms:d}; "
    if driver == "psycopg2":

        class Psycopg2CursorWithTimeout(psycopg2.extensions.cursor):
            def execute(self, query, vars=None):
                return super().execute(self.prefix + query, vars)

        Psycopg2CursorWithTimeout.prefix = prefix
        return Psycopg2CursorWithTimeout
    if driver == "psycopg":

        class PsycopgCursorWithTimeout(psycopg.ClientCursor):
            def execute(self, query, params=None, **options):
                super().execute(self.prefix + query, params, **options)
                self.nextset()
                return self

        PsycopgCursorWithTimeout.prefix = prefix
        return PsycopgCursorWithTimeout
    return None


def upsertable_insert(model: type[Base]):
    """An INSERT into `model`'s table that takes ON CONFLICT clauses, in the dialect of the
    session's database (PostgreSQL or SQLite)."""
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


def insert_missing(model: type[Base], rows: list[dict]) -> int:
    """Insert the rows whose key is not taken; skip the others, even when a concurrent
    transaction takes a key meanwhile (ON CONFLICT DO NOTHING, PostgreSQL and SQLite).
    How many were inserted (told by RETURNING: psycopg 3 gives no rowcount for it)."""
    statement = upsertable_insert(model).values(rows).on_conflict_do_nothing()
    keys = model.__table__.primary_key.columns
    return len(db.session.execute(statement.returning(*keys)).all())


def prune(model: type[Base], *expired, batch: int | None = None) -> int:
    """Delete `model`'s rows that match `expired`; with `batch`, at most that many, and rows
    another transaction holds are left for later, not waited for."""
    if batch is None:
        pruned = delete(model).where(*expired)
    elif db.session.get_bind().dialect.name == "postgresql":
        # The batch's rows by their ctid, chosen once (ARRAY() of a subquery is an InitPlan)
        # and deleted by a TID scan: given `key IN (SELECT ... FOR UPDATE SKIP LOCKED)`, the
        # plan is the planner's to pick, and once in a few suite runs a prune of a fresh
        # 100,000-row table outlasted the 30 s statement timeout.
        ctid = literal_column("ctid")
        chosen = select(ctid).select_from(model).where(*expired).limit(batch)
        chosen = chosen.with_for_update(skip_locked=True).scalar_subquery()
        pruned = delete(model).where(ctid == any_(func.array(chosen)))
    else:
        columns = list(model.__table__.primary_key)
        key = columns[0] if len(columns) == 1 else tuple_(*columns)
        chosen = select(*columns).where(*expired).limit(batch)
        pruned = delete(model).where(key.in_(chosen.with_for_update(skip_locked=True)))
    return db.session.execute(pruned, execution_options={"synchronize_session": False}).rowcount


def took_advisory_lock(name: str) -> bool:
    """Take PostgreSQL's advisory lock of `name` until the session's transaction ends, if no
    other transaction holds it; whether it was taken. Transaction-scoped, so it works
    through PgBouncer in transaction mode."""
    lock = func.pg_try_advisory_xact_lock(func.hashtextextended(name, 0))
    return bool(db.session.scalar(select(lock)))
