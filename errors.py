from flask import current_app
from sqlalchemy.exc import OperationalError

from db import db

RETRY_AFTER_SECONDS = 5


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
