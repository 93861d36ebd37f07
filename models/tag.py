from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db import db
from models.timestamped import Timestamped

if TYPE_CHECKING:
    from models.store import StoreModel


class TagModel(Timestamped, db.Model):
    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("store_id", "name"),
        # A store's tags in id order (its list, its first tags, keyset pages).
        Index("ix_tags_store_id_id", "store_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))

    store: Mapped["StoreModel"] = relationship(back_populates="tags", lazy="raise")

    @property
    def owner_id(self) -> int | None:
        """Who may change it besides admins: its store's owner (security.ownership)."""
        return self.store.owner_id
