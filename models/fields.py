"""One description of each resource's fields, in the order its representations carry them.

The SQL written by hand (the store document PostgreSQL renders, the catalogue's export, the
import's COPY) and the catalogue's CSV columns are built from these lists, so that a new plain
field is named in its model, its migration, its schema and its list, and nowhere else.
"""

from dataclasses import dataclass
from typing import Literal

# How SQL renders a field: a key (an integer id) and a number as they are, text quoted, a
# timestamp in ISO 8601, UTC (schemas.field_types.Timestamp).
Kind = Literal["key", "number", "text", "timestamp"]


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind = "text"
    # Given by clients (bodies, a catalogue's lines); False: set by the API or the database.
    written: bool = True
    # Unique among its store's items, where given (a unique index, and the view's conflict).
    unique: bool = False

    @property
    def in_files(self) -> bool:
        """Whether a catalogue file carries it: an item's own fields do, not its keys (the
        file goes into any store)."""
        return self.kind != "key"


def file_fields(fields: tuple[Field, ...]) -> tuple[Field, ...]:
    return tuple(field for field in fields if field.in_files)


def imported_fields(fields: tuple[Field, ...]) -> tuple[Field, ...]:
    """The fields an imported line gives: a file's own fields that clients write."""
    return tuple(field for field in file_fields(fields) if field.written)


def key(name: str) -> Field:
    return Field(name, "key", written=False)


# Set by the database (models.timestamped).
TIMESTAMPS = (
    Field("created_at", "timestamp", written=False),
    Field("updated_at", "timestamp", written=False),
)

STORE_FIELDS = (key("id"), Field("name"), key("owner_id"), *TIMESTAMPS)
ITEM_FIELDS = (
    key("id"), Field("name"), Field("price", "number"), Field("description"),
    Field("sku", unique=True), key("store_id"), *TIMESTAMPS,
)  # fmt: skip
TAG_FIELDS = (key("id"), Field("name"), key("store_id"), *TIMESTAMPS)
