"""Webhook endpoints (POST /webhooks) and the attempts to deliver events to them."""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db import UTCDateTime, db

MAX_URL_LENGTH = 2048


class WebhookModel(db.Model):
    """Where a user wants events sent: the events of their stores (or, with `store_id`, of
    one), of the `event_types` named (none named: all), signed with `secret`."""

    __tablename__ = "webhooks"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Gone with its user: nobody would read its deliveries.
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    store_id: Mapped[int | None] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    # Shown once, when the endpoint is made; every delivery is signed with it.
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Its place in the event feed: every event up to this position was delivered (or was
    # none of its own); a new endpoint starts at the feed's head.
    delivered_through: Mapped[int] = mapped_column(BigInteger)
    # While an event fails: since when, and when it is tried again.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when its deliveries kept failing; PATCH {"enabled": true} clears both.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


class WebhookDeliveryModel(db.Model):
    """One attempt to deliver one event to one endpoint."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    # The event's id; no foreign key: the attempt is kept after the event is pruned.
    event_id: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int]
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The receiver's HTTP status; NULL: no answer (refused, unreachable, timed out).
    status: Mapped[int | None]
    seconds: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # The start of the receiver's answer, for its owner to see why it failed.
    answer: Mapped[str | None] = mapped_column(Text)


class WebhookResendModel(db.Model):
    """An event its endpoint's owner asked to be sent again (POST
    /webhooks/<id>/deliveries/<id>/resend), waiting for the worker."""

    __tablename__ = "webhook_resends"

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger)
