"""Every error answer in Flask-Smorest's one shape, {code, status, message?, errors?}: the
refusals views give (abort), and what database errors become."""

import traceback
from typing import Any, NoReturn

from flask import current_app, g
from flask_smorest import abort
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.http import HTTP_STATUS_CODES

from connections.faults import failure_kind
from db import db
from observability.metrics import count_database_failure

RETRY_AFTER_SECONDS = 5

ErrorResponse = tuple[dict, int, dict[str, str]]
# An answer for a client whose request cannot be carried out: status code and abort() fields.
Refusal = tuple[int, dict[str, Any]]


def refuse(refusal: Refusal) -> NoReturn:
    status, fields = refusal
    abort(status, **fields)


def not_found(model: type, ident: int) -> Refusal:
    return 404, {"message": not_found_message(model, ident)}


def not_found_message(model: type, ident: int) -> str:
    return f"{model.__name__.removesuffix('Model')} {ident} not found."


def error_response(code: int, message: str, headers: dict[str, str]) -> ErrorResponse:
    return {"code": code, "status": HTTP_STATUS_CODES[code], "message": message}, code, headers


def described(error: DBAPIError) -> str:
    """What an operator needs to know of a database error, and none of the values in it:
    PostgreSQL's messages and their DETAIL quote rows ("Key (email)=(...)", "Failing row
    contains (...)"), and the parameters are left out of the statement (hide_parameters)."""
    diagnostics = getattr(error.orig, "diag", None)
    if diagnostics is not None:  # PostgreSQL, either driver
        code, constraint = diagnostics.sqlstate, diagnostics.constraint_name
    else:  # SQLite
        code, constraint = getattr(error.orig, "sqlite_errorname", None), None
    said = (
        f"{type(error.orig).__name__}, SQLSTATE {code}, constraint {constraint}, "
        f"request {g.get('request_id')}, statement: {error.statement}"
    )
    if code is None:
        # No server's error but the driver's own (connection refused, timed out): its
        # words hold no rows, and say what went wrong.
        said += f", driver: {str(error.orig).strip()}"
    return said


def broken_body(_error: Exception) -> ErrorResponse:
    """gunicorn could not read the body the client sent (a chunk of no valid size, or without
    its end): the client's to send again, not a bug of ours."""
    return error_response(
        400, "The body's chunked encoding is broken: send the request again, whole.", {}
    )


def database_unavailable(error: OperationalError) -> ErrorResponse:
    """The database is down, unreachable or timed out: a 503 the client can retry."""
    count_database_failure(failure_kind(error))
    current_app.logger.warning("database unavailable: %s", described(error))
    db.session.rollback()
    return error_response(
        503,
        "The database is unavailable: try again in a few seconds.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def unexpected_database_error(error: DBAPIError) -> ErrorResponse:
    """A database error nobody planned for: a bug, logged with where it happened; unless the
    connection was lost with it (a server that refuses writes:
    connections.faults.drop_read_only_connections): then the database is unavailable."""
    if error.connection_invalidated:
        return database_unavailable(error)
    current_app.logger.error(
        "unexpected database error: %s\n%s",
        described(error),
        "".join(traceback.format_tb(error.__traceback__)),
    )
    db.session.rollback()
    return error_response(
        500, "Something went wrong on our side; it is logged. Please report it.", {}
    )
