from sqlalchemy import ForeignKey, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from db import db


class ItemImportChunkModel(db.Model):
    """A piece of an import's file, kept in the database until the import ends: the worker
    that runs it may be on another machine than the API that took it."""

    __tablename__ = "item_import_chunks"

    import_id: Mapped[int] = mapped_column(
        ForeignKey("item_imports.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
