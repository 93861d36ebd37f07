"""Every error leaves as Flask-Smorest's JSON shape: {code, status, message?, errors?}."""

from flask import current_app
from flask_smorest import Api as SmorestApi
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from db import db

RETRY_AFTER_SECONDS = 5


class Api(SmorestApi):
    def handle_http_exception(self, error: HTTPException):
        payload, status, headers = super().handle_http_exception(error)
        # Errors raised by Werkzeug itself (unknown route, wrong method) carry no
        # message of ours: their description says what went wrong.
        payload.setdefault("message", error.description)
        # Flask-Smorest drops the Allow header that a 405 must carry.
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers = {**headers, "Allow": ", ".join(sorted(error.valid_methods))}
        return payload, status, headers


def database_unavailable(error: OperationalError):
    """The database is down, unreachable or timed out: a 503 the client can retry."""
    current_app.logger.warning("database unavailable: %s", error.orig)
    db.session.rollback()
    payload = {
        "code": 503,
        "status": "Service Unavailable",
        "message": "The database is unavailable: try again in a few seconds.",
    }
    return payload, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
