from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from db import db


class ItemTagModel(db.Model):
    __tablename__ = "items_tags"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    # Indexed on its own: the primary key leads with item_id, and cascading a tag
    # delete looks links up by tag_id.
    tag_id: Mapped[int] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )
