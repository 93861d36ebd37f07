"""A request's unit of work, as SQLAlchemy recommends it: begun by its first statement,
committed once, at the edge (`committed`, which every changing view is wrapped in by
web.blueprint), once the view has answered; views only add and change objects. Constraints
decide, by construction: every changing view is wrapped in `decided` too, which sends its
writes once it answered, and turns a unique or foreign key violation, wherever it happens
(an autoflush in the view, that last flush), into the conflict the view declared for that
constraint; one it did not declare is a bug (a 500), which tests/api/test_conflicts.py
looks for. An explicit early release (`end_transaction_early`) is the one other way a
request's writes get committed."""

import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, wraps

from flask import Response
from flask_jwt_extended import current_user
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import ObjectDeletedError

from db import db
from replication.notes import note_write
from web import idempotency
from web.errors import not_found, refuse

# SQLSTATEs (PostgreSQL, either driver) and SQLite's extended result codes, by kind.
CONSTRAINT_KINDS = {
    "23505": "unique",
    "23503": "foreign key",
    sqlite3.SQLITE_CONSTRAINT_UNIQUE: "unique",
    sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY: "unique",
    sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY: "foreign key",
}


def violated_constraint(error: IntegrityError) -> str | None:
    """Which kind of constraint the statement broke: "unique", "foreign key" or None.

    Told by code, never by message: PostgreSQL's messages are localised, and psycopg2
    and psycopg 3 name the code differently (pgcode, sqlstate) but share `diag`.
    """
    diagnostics = getattr(error.orig, "diag", None)
    code = diagnostics.sqlstate if diagnostics else getattr(error.orig, "sqlite_errorcode", None)
    return CONSTRAINT_KINDS.get(code)


def flush() -> None:
    """Send the request's writes so far, for a view that needs them sent before it goes on
    (an id, an answer rendered by the database); `decided` maps what a constraint says.

    A request with an Idempotency-Key holds the key before its first write (a sign-up's
    transaction only begins here): a retry racing it waits for its answer instead of
    breaking the same constraint.
    """
    idempotency.hold_pending_key()
    db.session.flush()


@dataclass(frozen=True)
class Conflict:
    """What a write answers when a constraint refuses it (its status, documented by the
    view's errors): constraints, not look-ups beforehand, decide, as they also hold against
    concurrent requests. `message` is made from the view's own arguments, by name: what its
    owner loader found (`target`), `body`, the URL's ids."""

    status: int
    message: Callable[..., str]


# A view's conflicts, by the name of the constraint (or unique index) that refuses it.
Conflicts = Mapping[str, Conflict]
# What a write that names its caller (an owner, who deleted) answers once an admin deleted
# the caller's account meanwhile: their token is no good any more.
ACCOUNT_DELETED = Conflict(401, lambda **_: "Your account was deleted meanwhile.")
# What SQLite says of a broken unique constraint: its index's name, or its columns.
SQLITE_UNIQUE = re.compile(
    r"UNIQUE constraint failed: (?:index '(?P<index>[^']+)'|(?P<columns>.+))"
)


@cache
def constraints() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """Every unique and foreign key constraint (and unique index) of the models, by name:
    its kind, its table and its columns."""
    found = {}
    for table in db.metadata.tables.values():
        for constraint in table.constraints:
            kind = KIND_OF_CONSTRAINT.get(type(constraint).__name__)
            if kind:
                found[constraint.name] = (kind, table.name, tuple(constraint.columns.keys()))
        for index in table.indexes:
            if index.unique:
                columns = tuple(column.name for column in index.columns)
                found[index.name] = ("unique", table.name, columns)
    return found


KIND_OF_CONSTRAINT = {
    "UniqueConstraint": "unique",
    "PrimaryKeyConstraint": "unique",
    "ForeignKeyConstraint": "foreign key",
}


def constraint_name(error: IntegrityError) -> str | None:
    """The name of the constraint the statement broke, if the database says: PostgreSQL
    does; SQLite names a unique index or its columns, and no foreign key."""
    diagnostics = getattr(error.orig, "diag", None)
    if diagnostics is not None:
        return diagnostics.constraint_name
    said = SQLITE_UNIQUE.match(str(error.orig))
    if said is None:
        return None
    if said["index"]:
        return said["index"]
    columns = [column.strip().split(".") for column in said["columns"].split(",")]
    table, names = columns[0][0], tuple(name for _, name in columns)
    return next(
        (name for name, (_, on, of) in constraints().items() if (on, of) == (table, names)),
        None,
    )


def declared_conflict(error: IntegrityError, conflicts: Conflicts) -> Conflict | None:
    """The conflict declared for the constraint `error` broke; for a foreign key, which
    SQLite does not name, the view's first foreign key conflict."""
    name = constraint_name(error)
    if name is None and violated_constraint(error) == "foreign key":
        keys = (
            conflict
            for name, conflict in conflicts.items()
            if constraints()[name][0] == "foreign key"
        )
        return next(keys, None)
    return conflicts.get(name)


def decided(view: Callable, conflicts: Conflicts) -> Callable:
    """`view`, its writes sent once it answered; a constraint they break, there or in the
    view, refuses the request with the conflict declared for it."""
    if unknown := set(conflicts) - set(constraints()):
        raise TypeError(f"{view.__qualname__}: no constraint is named {sorted(unknown)}")

    @wraps(view)
    def deciding(*args, **kwargs):
        try:
            answer = view(*args, **kwargs)
            flush()
        except IntegrityError as error:
            conflict = declared_conflict(error, conflicts)
            if conflict is None:
                raise
            # The failed flush expired the objects the view was given: the message reads
            # them again, as they are in the database, in a transaction of its own.
            db.session.rollback()
            try:
                message = conflict.message(**kwargs)
            except ObjectDeletedError:
                # Deleted once the rollback let go of its lock (a DELETE waiting on it).
                target = kwargs["target"]
                refuse(not_found(type(target), inspect(target).identity[0]))
            refuse((conflict.status, {"message": message}))
        return answer

    return deciding


def committed(view: Callable[..., Response], *, by_user: bool) -> Callable[..., Response]:
    """Commit what `view` wrote once it answered with success (with a kept Idempotency-Key
    answer, and, `by_user` (a token's), the note that lets its user's reads see it on hot
    standbys, in the same transaction); a refusal or an error writes nothing: the session is
    rolled back when the request ends."""

    @wraps(view)
    def in_transaction(*args, **kwargs) -> Response:
        response = view(*args, **kwargs)
        if response.status_code < 400:
            noted = note_write(current_user.id, response) if by_user else None
            db.session.commit()
            if noted is not None:
                noted()
        return response

    return in_transaction


def end_transaction_early() -> None:
    """Commit what the request did so far and give its connections back to the pool, before
    work that needs no database and takes long (an Argon2 hash: a tenth of a second): no
    lock and no server connection is held meanwhile."""
    db.session.commit()
