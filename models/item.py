from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db import db

if TYPE_CHECKING:
    from models.store import StoreModel
    from models.tag import TagModel


class ItemModel(db.Model):
    __tablename__ = "items"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    description: Mapped[str | None] = mapped_column(Text)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)

    store: Mapped["StoreModel"] = relationship(back_populates="items", lazy="raise")
    # Links are written through ItemTagModel; this side only reads them.
    tags: Mapped[list["TagModel"]] = relationship(
        secondary="items_tags", viewonly=True, lazy="raise", order_by="TagModel.id"
    )
