from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db import db

if TYPE_CHECKING:
    from models.item import ItemModel
    from models.store import StoreModel


class TagModel(db.Model):
    __tablename__ = "tags"
    # Its index leads with store_id, so it also serves every lookup by store.
    __table_args__ = (UniqueConstraint("store_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))

    store: Mapped["StoreModel"] = relationship(back_populates="tags", lazy="raise")
    items: Mapped[list["ItemModel"]] = relationship(
        secondary="items_tags", viewonly=True, lazy="raise", order_by="ItemModel.id"
    )
