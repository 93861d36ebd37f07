from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db import db
from models.timestamped import Timestamped

if TYPE_CHECKING:
    from models.store import StoreModel


# Items without one are not compared (a partial index).
WHERE_SKU = {"postgresql_where": "sku IS NOT NULL", "sqlite_where": "sku IS NOT NULL"}


class ItemModel(Timestamped, db.Model):
    __tablename__ = "items"
    __table_args__ = (
        # A store's items in id order (its list, its first items, keyset pages); the
        # cascade of a store delete finds them by it too.
        Index("ix_items_store_id_id", "store_id", "id"),
        # A sku names one item of its store.
        Index("uq_items_store_id_sku", "store_id", "sku", unique=True, **WHERE_SKU),
        # Changes since a time, in the order a syncing client walks them (updated_after).
        Index("ix_items_updated_at_id", "updated_at", "id"),
        Index("ix_items_store_id_updated_at_id", "store_id", "updated_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    description: Mapped[str | None] = mapped_column(Text)
    sku: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))

    store: Mapped["StoreModel"] = relationship(back_populates="items", lazy="raise")

    @property
    def owner_id(self) -> int | None:
        """Who may change it besides admins: its store's owner (security.ownership)."""
        return self.store.owner_id
