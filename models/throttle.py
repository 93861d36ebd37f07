from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from db import db


class ThrottleModel(db.Model):
    """How often a client or an account did something limited (failed logins, sign-ups).

    In the database, so that every worker, every instance and a restart count the same.
    Times are Unix seconds: one representation on PostgreSQL and SQLite alike.
    """

    __tablename__ = "throttles"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    hits: Mapped[int]
    window_ends_at: Mapped[float] = mapped_column(index=True)
    # Unix time until which the subject must wait (0: it need not).
    blocked_until: Mapped[float]
