from datetime import datetime

from sqlalchemy import DateTime, String, false
from sqlalchemy.orm import Mapped, mapped_column

from db import db


class TokenFamilyModel(db.Model):
    """What is used up or revoked of one login's tokens (a family: the tokens a login and
    its refreshes hand on); checked on every authenticated request.

    One row per family whatever the number of its refreshes: refresh tokens are numbered
    (their `gen` claim, 1 at login), and a refresh marks its token's number used, which
    refuses that token and every older one. A family with no row has used none. Past
    `expires_at` every token of the family is expired anyway, and `flask prune-expired`
    drops the row.
    """

    __tablename__ = "token_families"

    family: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Refresh tokens of this generation and older were traded already: one back is a replay.
    used_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    # Logged out, or a used refresh token came back (RFC 9700 4.14.2: the server cannot
    # tell the thief from the client): every token of the family is refused.
    revoked: Mapped[bool] = mapped_column(default=False, server_default=false())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
