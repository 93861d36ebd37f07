from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db import db


class IdempotencyKeyModel(db.Model):
    """The answer to a POST sent with an Idempotency-Key, kept so that a retry with the
    same key gets it again instead of running twice (idempotency.py).

    Written in the transaction of the write it answers: either both are there or neither.
    Times are Unix seconds, as in throttles.
    """

    __tablename__ = "idempotency_keys"

    # Whose key it is: "user:<id>", or "address:<client>" for requests without a user.
    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # What the request was (a hash of its method, path and body): the same key with
    # another request is the client's mistake.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int]
    # The headers worth giving again (Content-Type, Location, Link), as JSON.
    headers: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[float] = mapped_column(index=True)
