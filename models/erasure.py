from datetime import datetime

from sqlalchemy import Integer
from sqlalchemy.orm import Mapped, mapped_column

from db import UTCDateTime, db


class ErasureModel(db.Model):
    """A store an admin asked to erase (POST /store/<id>/purge): no restore may bring it back
    (backups/erasures.py). Written in the request's own transaction; kept for good, after the
    purge too: no foreign key to the store, or to the user who asked.

    A store is its id and its created_at, the key: a database restored to an earlier time
    hands its ids out again, and a new store that gets an erased one's id is not the erased
    store (and may be erased in turn).
    """

    __tablename__ = "erasures"

    store_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    store_created_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    requested_by: Mapped[int | None]
