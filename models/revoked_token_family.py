from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from db import db


class RevokedTokenFamilyModel(db.Model):
    """Every token of one login, revoked at once: a used refresh token came back.

    RFC 9700 (4.14.2): a refresh token used twice means it leaked, and the server cannot
    tell the attacker from the client, so the whole family goes.
    """

    __tablename__ = "revoked_token_families"

    family: Mapped[str] = mapped_column(String(36), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
