"""The database: models' base, the session with its two engines (writes, and reads in
autocommit), and how their connections are set up on PostgreSQL and SQLite."""

import sqlite3
from datetime import UTC, datetime
from typing import Any

import flask_sqlalchemy.session
from flask import current_app, g, has_request_context, request
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


# Requests that only read; the engine of reads on the primary (a bind of Flask-SQLAlchemy's);
# the app extension that sends GETs' reads to hot standbys, when there are some.
READ_METHODS = ("GET", "HEAD")
READS = "reads"
ROUTING = "replication"


class Session(flask_sqlalchemy.session.Session):
    """GET and HEAD run on an engine of their own, whose connections are in autocommit
    for good: no BEGIN and ROLLBACK round trips, and no switching of a pooled connection's
    isolation level there and back on every request (with psycopg2, 42 µs each way).

    Nothing is lost: under READ COMMITTED each statement takes its own snapshot anyway,
    so a read-only transaction would make the reads no more consistent. And nothing
    connects before the first query: the docs need no database. With hot standbys
    (DATABASE_REPLICA_URLS), that engine may be a standby's (replication.routing).
    """

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and reading_request():
            return reads_engine()
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


def reading_request() -> bool:
    return has_request_context() and request.method in READ_METHODS


def reads_engine() -> Engine:
    """The engine of a GET's reads, chosen at its first read: a hot standby's, or the
    primary's engine of reads; the latter for any other request."""
    if not reading_request():
        return db.engines[READS]
    engine = g.get("reads_engine")
    if engine is None:
        routing = current_app.extensions.get(ROUTING)
        engine = g.reads_engine = routing.engine_for_request() if routing else db.engines[READS]
    return engine


# Responses are built from objects after commit: expiring them would cost a query
# per object and trip the lazy="raise" guards on eager-loaded collections.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False, "class_": Session})


def read_outside_transactions(statement: Executable) -> Result:
    """Run a read on the primary's engine of reads, whatever the request's method: it holds
    no transaction afterwards, so no lock (on SQLite, not the database's write lock) and,
    through PgBouncer in transaction mode, no server connection."""
    return db.session.execute(statement, bind_arguments={"bind": db.engines[READS]})


def read_current(statement: Executable) -> Result:
    """Run a read whose answer must be current (a token's revocation) on the primary: in a
    GET outside transactions, never on a standby; otherwise in the request's transaction."""
    if reading_request():
        return read_outside_transactions(statement)
    return db.session.execute(statement)


def read_outside_the_session(sql: str, parameters: dict) -> Any:
    """The one value of a read on the engine of reads (reads_engine), on a connection of its
    own rather than through the ORM session: for the hottest read (GET /store/<id>), the
    session's bookkeeping cost more than the statement's round trip (docs/benchmarks.md).
    `sql` is the driver's own (PostgreSQL's drivers: `%(name)s` parameters), sent as it is:
    SQLAlchemy's events, error handling and pool still apply, its compiling is skipped."""
    with reads_engine().connect() as connection:
        return connection.exec_driver_sql(sql, parameters).scalar()


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
