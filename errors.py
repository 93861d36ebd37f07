"""Error responses built outside Flask-Smorest's abort(), in its one error shape."""

from flask import current_app
from sqlalchemy.exc import OperationalError
from werkzeug.http import HTTP_STATUS_CODES

from db import db

RETRY_AFTER_SECONDS = 5

ErrorResponse = tuple[dict, int, dict[str, str]]


def error_response(code: int, message: str, headers: dict[str, str]) -> ErrorResponse:
    return {"code": code, "status": HTTP_STATUS_CODES[code], "message": message}, code, headers


def database_unavailable(error: OperationalError) -> ErrorResponse:
    """The database is down, unreachable or timed out: a 503 the client can retry."""
    current_app.logger.warning("database unavailable: %s", error.orig)
    db.session.rollback()
    return error_response(
        503,
        "The database is unavailable: try again in a few seconds.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
