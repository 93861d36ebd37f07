from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from db import db

if TYPE_CHECKING:
    from models.item import ItemModel
    from models.tag import TagModel


class StoreModel(db.Model):
    __tablename__ = "stores"
    # On SQLite too, a deleted row's id is never handed out again (migration 0003).
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    # Who may change the store and what is in it (besides admins). Deleting the user leaves
    # the store to the admins alone: it is neither deleted nor handed to anyone else.
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )

    # Deleting a store deletes its children, but the database does the deleting
    # (ON DELETE CASCADE): the ORM never loads a store's items or tags to delete them.
    items: WriteOnlyMapped["ItemModel"] = relationship(
        back_populates="store", cascade="all, delete-orphan", passive_deletes=True
    )
    tags: WriteOnlyMapped["TagModel"] = relationship(
        back_populates="store", cascade="all, delete-orphan", passive_deletes=True
    )
