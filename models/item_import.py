import json
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db import UTCDateTime, db

# An import's states, in the order it goes through them.
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


class ItemImportModel(db.Model):
    """A catalogue file sent to POST /store/<id>/item/import, and how its import went: the
    job worker (catalogue/jobs.py) reads its chunks and writes its items all or nothing."""

    __tablename__ = "item_imports"
    # An import's URL never names another's, on SQLite either.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Gone with its store, as what it imported is.
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    media_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int]
    state: Mapped[str] = mapped_column(String(10), default=QUEUED)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lines_read: Mapped[int] = mapped_column(default=0)
    # Runs begun: one that ended on a database error (a failover, a timeout) is run again
    # by the sweep, up to catalogue.runs.MAX_ATTEMPTS.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    items: Mapped[int] = mapped_column(default=0)
    tags_created: Mapped[int] = mapped_column(default=0)
    links: Mapped[int] = mapped_column(default=0)
    # The first bad lines (JSON: [{line, errors}]), and how many there were in all.
    errors: Mapped[str | None] = mapped_column(Text)
    error_count: Mapped[int] = mapped_column(default=0)
    # Why a failed import failed, when not for its lines (its store deleted meanwhile).
    message: Mapped[str | None] = mapped_column(Text)

    @property
    def bad_lines(self) -> list[dict]:
        return json.loads(self.errors or "[]")
