"""When a store, an item or a tag was made and last changed: set by the database."""

from datetime import datetime
from typing import ClassVar

from sqlalchemy import FetchedValue, event, inspect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.functions import FunctionElement

from db import UTCDateTime

# SQLite's clock to the millisecond, written as SQLAlchemy writes datetimes there (to the
# microsecond): the two sort and compare as text. Migration 0017 names it too.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
# A timestamp column `{}` as SQL writes it out, as schemas.field_types.TIMESTAMP_FORMAT has it.
AS_TEXT = {
    "postgresql": """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""",
    "sqlite": "replace({}, ' ', 'T') || 'Z'",
}


class utcnow(FunctionElement):  # noqa: N801 - an SQL function, named as SQL names them
    """The database's clock: on PostgreSQL the transaction's start (now()), as its trigger
    and its columns' default have it."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(utcnow, "postgresql")
def postgresql_now(_element: utcnow, _compiler, **_kw) -> str:
    return "now()"


@compiles(utcnow, "sqlite")
def sqlite_now(_element: utcnow, _compiler, **_kw) -> str:
    return SQLITE_NOW


class Timestamped:
    """created_at and updated_at, set by the database (migration 0017): a column default,
    and on every UPDATE a trigger, COPY's and plain SQL's too. An UPDATE of the ORM's sets
    updated_at by the same clock, and reads it back in the statement (eager_defaults:
    RETURNING), as SQLite's RETURNING does not see what its trigger (AFTER) wrote."""

    __mapper_args__: ClassVar[dict] = {"eager_defaults": True}
    # Columns whose change is none of the row's fields' (a store's deletion): a restored
    # store is as it was. The triggers leave them out too.
    NO_CHANGE: ClassVar[tuple[str, ...]] = ()

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=FetchedValue())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=FetchedValue(), server_onupdate=FetchedValue()
    )


@event.listens_for(Timestamped, "before_update", propagate=True)
def set_updated_at(_mapper, _connection, target: Timestamped) -> None:
    state = inspect(target)
    unchanged = {*target.NO_CHANGE, "updated_at"}
    if any(
        state.attrs[column.key].history.has_changes()
        for column in state.mapper.column_attrs
        if column.key not in unchanged
    ):
        target.updated_at = utcnow()
