"""A store's catalogue out, as the importer reads it: one line per item, rendered by the
database (the JSON object or the CSV row, tags aggregated), read through a server-side
cursor a batch at a time. One statement: one consistent snapshot, in constant memory.
"""

from collections.abc import Iterator

from sqlalchemy import text

from catalogue.lines import CSV, CSV_COLUMNS
from db import READS, db

# Lines fetched per round trip.
FETCHED_TOGETHER = 5_000

# An item's tags, names in id order: a JSON array, or joined by "|" with "|" and "\" escaped.
ITS_TAGS = "FROM items_tags it JOIN tags t ON t.id = it.tag_id WHERE it.item_id = i.id"
ESCAPED_NAME = "replace(replace(t.name, '\\', '\\\\'), '|', '\\|')"
TAGS = {
    ("postgresql", "json"): "(SELECT coalesce(json_agg(t.name ORDER BY t.id), CAST('[]' AS json))"
    f" {ITS_TAGS})",
    ("postgresql", "csv"): f"(SELECT string_agg({ESCAPED_NAME}, '|' ORDER BY t.id) {ITS_TAGS})",
    # SQLite's aggregates take no ORDER BY: they aggregate an ordered subquery.
    ("sqlite", "json"): f"(SELECT json_group_array(name) FROM (SELECT t.name {ITS_TAGS}"
    " ORDER BY t.id))",
    ("sqlite", "csv"): f"(SELECT group_concat(name, '|') FROM (SELECT {ESCAPED_NAME} AS name"
    f" {ITS_TAGS} ORDER BY t.id))",
}
JSON_LINE = {
    "postgresql": "CAST(json_build_object('name', i.name, 'price', i.price, 'description',"
    " i.description, 'tags', {tags}) AS text)",
    "sqlite": "json_object('name', i.name, 'price', i.price, 'description', i.description,"
    " 'tags', json({tags}))",
}
# Every text cell quoted, quotes doubled; an empty description is none.
CSV_LINE = (
    """'"' || replace(i.name, '"', '""') || '",' || i.price || ','"""
    """ || coalesce('"' || replace(i.description, '"', '""') || '"', '')"""
    """ || ',"' || replace(coalesce({tags}, ''), '"', '""') || '"'"""
)


def exported_lines(store_id: int, media_type: str) -> Iterator[str]:
    """The file of the store's items in `media_type`, a batch of lines at a time."""
    dialect = db.engine.dialect.name
    csv = media_type == CSV
    line = (CSV_LINE if csv else JSON_LINE[dialect]).format(
        tags=TAGS[dialect, "csv" if csv else "json"]
    )
    statement = text(f"SELECT {line} FROM items i WHERE i.store_id = :store_id ORDER BY i.id")
    if csv:
        yield ",".join(CSV_COLUMNS) + "\n"
    # A connection of its own, held until the last line is sent or the client goes; on
    # PostgreSQL in a transaction, where a server-side cursor lives; on SQLite, which reads
    # a snapshot per statement anyway, with no write lock (BEGIN IMMEDIATE).
    engine = db.engine if dialect == "postgresql" else db.engines[READS]
    with engine.connect() as connection, connection.begin():
        result = connection.execute(
            statement, {"store_id": store_id}, execution_options={"yield_per": FETCHED_TOGETHER}
        )
        for lines in result.scalars().partitions():
            yield "\n".join(lines) + "\n"
