from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from db import db


class ItemTagModel(db.Model):
    __tablename__ = "items_tags"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)

    # The primary key (item_id, tag_id) gives an item's tags in id order; this index a
    # tag's items in id order, and the links a tag delete cascades to.
    __table_args__ = (Index("ix_items_tags_tag_id_item_id", "tag_id", "item_id"),)
