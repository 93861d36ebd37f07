from datetime import datetime

from sqlalchemy import Integer
from sqlalchemy.orm import Mapped, mapped_column

from db import UTCDateTime, db


class RecentWriteModel(db.Model):
    """When each user last wrote, kept on the primary while the API reads from hot standbys:
    a read by that user within DATABASE_REPLICA_MAX_LAG_SECONDS (and a margin) of it goes to a
    standby only once the standby has replayed the primary's WAL past it (replication/).

    One row per user, upserted by the write's own transaction just before it commits; no
    foreign key: an admin's write may be the deletion of their own account.
    """

    __tablename__ = "recent_writes"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime)
