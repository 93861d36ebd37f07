"""Every error answer in Flask-Smorest's one shape, {code, status, message?, errors?}: the
refusals views give (abort), what the data layer's and the database's errors become, and
what a token that does not pass gets (Flask-JWT-Extended's callbacks)."""

import traceback
from typing import Any, NoReturn

from flask import current_app, g
from flask_smorest import abort
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.http import HTTP_STATUS_CODES

from backups.erasures import ErasureLogUnwritableError
from connections.faults import failure_kind
from db import db
from models.queries import NotFoundError
from observability.metrics import count_database_failure
from security.tokens import BEARER_CHALLENGE, REVOKED, jwt, refuse_replay

RETRY_AFTER_SECONDS = 5

ErrorResponse = tuple[dict, int, dict[str, str]]
# An answer for a client whose request cannot be carried out: status code and abort() fields.
Refusal = tuple[int, dict[str, Any]]


def refuse(refusal: Refusal) -> NoReturn:
    status, fields = refusal
    abort(status, **fields)


def not_found(model: type, ident: int) -> Refusal:
    return 404, {"message": str(NotFoundError(model, ident))}


def missing(error: NotFoundError) -> ErrorResponse:
    """What the data layer did not find (models.queries.get_live_one, ...): a 404."""
    return error_response(404, str(error), {})


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


def erasure_log_unwritable(error: ErasureLogUnwritableError) -> ErrorResponse:
    """A purge request whose erasure could not be logged outside the database: nothing of it
    was committed, and its retry runs it again (backups.erasures)."""
    current_app.logger.error("the erasure log could not be written: %s", error)
    db.session.rollback()
    return error_response(
        503,
        "The erasure could not be logged outside the database, so nothing was done: send "
        "the request again in a few seconds.",
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


def unauthorized(message: str) -> ErrorResponse:
    return error_response(401, message, BEARER_CHALLENGE)


@jwt.unauthorized_loader
def token_missing(reason: str):
    return unauthorized(
        f"{reason}. Log in with POST /login and send the access token as "
        "'Authorization: Bearer <token>'."
    )


@jwt.invalid_token_loader
def token_invalid(reason: str):
    return unauthorized(f"Invalid token: {reason}.")


@jwt.expired_token_loader
def token_expired(_header: dict, token: dict):
    if token["type"] == "refresh":
        return unauthorized("The refresh token has expired: log in again with POST /login.")
    return unauthorized("The access token has expired: get a new one with POST /refresh.")


@jwt.revoked_token_loader
def token_revoked(_header: dict, token: dict):
    if token["type"] == "refresh":
        # Used already (or logged out), and back: whoever holds its family cannot be trusted.
        refuse_replay(token)
    return unauthorized(REVOKED)


@jwt.user_lookup_error_loader
def token_user_gone(_header: dict, _token: dict):
    return unauthorized(
        "The token's user was deleted or logged out everywhere: log in again with POST /login."
    )


@jwt.needs_fresh_token_loader
def token_not_fresh(_header: dict, _token: dict):
    return unauthorized(
        "This needs a fresh token, one from POST /login: a refreshed token is not enough."
    )
