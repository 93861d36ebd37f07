from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db import db

if TYPE_CHECKING:
    from models.store import StoreModel


class ItemModel(db.Model):
    __tablename__ = "items"
    __table_args__ = (
        # A store's items in id order (its list, its first items, keyset pages); the
        # cascade of a store delete finds them by it too.
        Index("ix_items_store_id_id", "store_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    description: Mapped[str | None] = mapped_column(Text)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))

    store: Mapped["StoreModel"] = relationship(back_populates="items", lazy="raise")

    @property
    def owner_id(self) -> int | None:
        """Who may change it besides admins: its store's owner (security.ownership)."""
        return self.store.owner_id
