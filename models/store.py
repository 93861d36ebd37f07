from datetime import datetime
from typing import TYPE_CHECKING

from flask_sqlalchemy.session import Session
from sqlalchemy import ForeignKey, Index, String, event
from sqlalchemy.orm import (
    Mapped,
    ORMExecuteState,
    WriteOnlyMapped,
    mapped_column,
    relationship,
    with_loader_criteria,
)

from db import UTCDateTime, db
from models.timestamped import Timestamped

if TYPE_CHECKING:
    from models.item import ItemModel
    from models.tag import TagModel


class StoreModel(Timestamped, db.Model):
    __tablename__ = "stores"
    __table_args__ = (
        # A deleted store's name is free for a new store at once.
        Index(
            "uq_stores_name_live",
            "name",
            unique=True,
            postgresql_where="deleted_at IS NULL",
            sqlite_where="deleted_at IS NULL",
        ),
        # On SQLite too, a deleted row's id is never handed out again (migration 0003).
        {"sqlite_autoincrement": True},
    )

    NO_CHANGE = ("deleted_at", "expire_time", "deleted_by")

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    # Who may change the store and what is in it (besides admins). Deleting the user leaves
    # the store to the admins alone: it is neither deleted nor handed to anyone else.
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # A deleted store keeps its rows until `expire_time`, hidden from every read and write
    # (hide_deleted_stores), so that it can be restored; then jobs/purge.py removes them.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expire_time: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    deleted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    # Purging a store deletes its children, but the database does the deleting
    # (ON DELETE CASCADE): the ORM never loads a store's items or tags to delete them.
    items: WriteOnlyMapped["ItemModel"] = relationship(
        back_populates="store", cascade="all, delete-orphan", passive_deletes=True
    )
    tags: WriteOnlyMapped["TagModel"] = relationship(
        back_populates="store", cascade="all, delete-orphan", passive_deletes=True
    )


# Statements that may see deleted stores say so: .execution_options(include_deleted=True).
INCLUDE_DELETED = "include_deleted"


@event.listens_for(Session, "do_orm_execute")
def hide_deleted_stores(state: ORMExecuteState) -> None:
    """Every ORM select of stores, and of items or tags joined to their store, sees live
    stores only: a deleted store is gone from every read and write without touching its
    children's rows (SQLAlchemy's documented global filter)."""
    if state.is_select and not state.execution_options.get(INCLUDE_DELETED):
        state.statement = state.statement.options(
            with_loader_criteria(StoreModel, StoreModel.deleted_at.is_(None), include_aliases=True)
        )
