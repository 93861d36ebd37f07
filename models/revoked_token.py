from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from db import db


class RevokedTokenModel(db.Model):
    """A token logged out or used up before it expired; checked on every authenticated request.

    Kept in the database so that every worker and every instance sees it. Past
    `expires_at` the token is refused anyway, and `flask prune-expired` drops the row.
    """

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(36), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
