"""A store's catalogue out, as the importer reads it: one line per item, rendered by the
database (the JSON object or the CSV row, tags aggregated), read through a server-side
cursor a batch at a time. One statement: one consistent snapshot, in constant memory.
"""

from collections.abc import Iterator

from sqlalchemy import text

from catalogue.lines import CSV, CSV_COLUMNS
from db import READS, db

# Lines fetched per round trip.
FETCHED_TOGETHER = 10_000

# Each item's tags, names in id order: a JSON array, or joined by "|" with "|" and "\"
# escaped. On PostgreSQL aggregated for the whole store at once, in one join (per item, a
# subquery measured 3 times as slow); on SQLite, whose aggregates take no ORDER BY, per item
# from an ordered subquery.
ESCAPED_NAME = "replace(replace(t.name, '\\', '\\\\'), '|', '\\|')"
POSTGRES_TAGS = """LEFT JOIN (
    SELECT it.item_id, {aggregate} AS tags
    FROM items_tags it JOIN items i2 ON i2.id = it.item_id JOIN tags t ON t.id = it.tag_id
    WHERE i2.store_id = :store_id GROUP BY it.item_id
) tags ON tags.item_id = i.id"""
POSTGRES_AGGREGATES = {
    "json": "json_agg(t.name ORDER BY t.id)",
    "csv": f"string_agg({ESCAPED_NAME}, '|' ORDER BY t.id)",
}
ITS_TAGS = "FROM items_tags it JOIN tags t ON t.id = it.tag_id WHERE it.item_id = i.id"
SQLITE_TAGS = {
    "json": f"(SELECT json_group_array(name) FROM (SELECT t.name {ITS_TAGS} ORDER BY t.id))",
    "csv": f"(SELECT group_concat(name, '|') FROM (SELECT {ESCAPED_NAME} AS name {ITS_TAGS}"
    " ORDER BY t.id))",
}
TAGS = {
    "postgresql": {"json": "coalesce(CAST(tags.tags AS text), '[]')", "csv": "tags.tags"},
    "sqlite": SQLITE_TAGS,
}
JSON_LINE = {
    # Joined as text, each value made JSON by to_json: measured 10 % faster than
    # json_build_object.
    "postgresql": """'{{"name":' || to_json(i.name) || ',"price":' || i.price"""
    """ || ',"description":' || coalesce(CAST(to_json(i.description) AS text), 'null')"""
    """ || ',"tags":' || {tags} || '}}'""",
    "sqlite": "json_object('name', i.name, 'price', i.price, 'description', i.description,"
    " 'tags', json({tags}))",
}
# Every text cell quoted, quotes doubled; an empty description is none.
CSV_LINE = (
    """'"' || replace(i.name, '"', '""') || '",' || i.price || ','"""
    """ || coalesce('"' || replace(i.description, '"', '""') || '"', '')"""
    """ || ',"' || replace(coalesce({tags}, ''), '"', '""') || '"'"""
)


def export_sql(dialect: str, media_type: str) -> str:
    """The statement of the lines of store :store_id's file in `media_type`."""
    kind = "csv" if media_type == CSV else "json"
    line = (CSV_LINE if kind == "csv" else JSON_LINE[dialect]).format(tags=TAGS[dialect][kind])
    joined = ""
    if dialect == "postgresql":
        joined = POSTGRES_TAGS.format(aggregate=POSTGRES_AGGREGATES[kind])
    return f"SELECT {line} FROM items i {joined} WHERE i.store_id = :store_id ORDER BY i.id"


def exported_lines(store_id: int, media_type: str) -> Iterator[str]:
    """The file of the store's items in `media_type`, a batch of lines at a time."""
    dialect = db.engine.dialect.name
    statement = text(export_sql(dialect, media_type))
    if media_type == CSV:
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
