"""A request's unit of work, as SQLAlchemy recommends it: begun by its first statement,
committed once, at the edge (`committed`, which every changing view is wrapped in by
web.blueprint), once the view has answered; views only add and change objects, and `flush`
when a constraint's verdict must become a refusal. An explicit early release
(`end_transaction_early`) is the one other way a request's writes get committed."""

import sqlite3
from collections.abc import Callable
from functools import wraps

from flask import Response
from flask_jwt_extended import current_user
from sqlalchemy.exc import IntegrityError

from db import db
from replication.notes import note_write
from web import idempotency
from web.errors import Refusal, refuse

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


def flush(*, on_unique: Refusal | None = None, on_foreign_key: Refusal | None = None) -> None:
    """Send the request's writes so far; a constraint they broke becomes the refusal given
    for it. Constraints, not look-ups beforehand, decide: they also hold against concurrent
    requests.

    A request with an Idempotency-Key holds the key before its first write (a sign-up's
    transaction only begins here): a retry racing it waits for its answer instead of
    breaking the same constraint.
    """
    try:
        idempotency.hold_pending_key()
        db.session.flush()
    except IntegrityError as error:
        db.session.rollback()
        refusal = {"unique": on_unique, "foreign key": on_foreign_key}.get(
            violated_constraint(error)
        )
        if refusal is None:
            raise
        refuse(refusal)


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
