"""A store's catalogue out, as the importer reads it: one line per item, rendered by the
database (the JSON object or the CSV row, tags aggregated), read through a server-side
cursor a batch at a time into a temporary file, which is sent once the transaction ended.
One statement: one consistent snapshot, in constant memory.
"""

import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from catalogue.lines import CSV, CSV_COLUMNS, FORMULA_STARTS
from db import READS, db
from models.fields import ITEM_FIELDS, Field, file_fields
from models.timestamped import AS_TEXT

# Held in memory up to this; on disk past it.
IN_MEMORY_BYTES = 1024 * 1024
# Lines fetched per round trip.
FETCHED_TOGETHER = 10_000

# Each item's tags' names: a JSON array, or joined by "|" with "|" and "\" escaped; in the
# order the join finds them (an ORDER BY in the aggregate sorts each item's few tags apart:
# a third of the statement's time at a million items, measured on PostgreSQL 15). All the
# store's links are joined at once and grouped by item (per item, a subquery measured 3
# times as slow; the links aggregated apart and then joined to the items, 2.4 times).
ESCAPED_NAME = "replace(replace(t.name, '\\', '\\\\'), '|', '\\|')"
LINKED = "t.id IS NOT NULL"
TAGS = {
    "postgresql": {
        "json": f"coalesce(CAST(json_agg(t.name) FILTER (WHERE {LINKED}) AS text), '[]')",
        "csv": f"string_agg({ESCAPED_NAME}, '|')",
    },
    "sqlite": {
        "json": f"json_group_array(t.name) FILTER (WHERE {LINKED})",
        "csv": f"group_concat({ESCAPED_NAME}, '|')",
    },
}
STORE_ID = {"postgresql": "%(store_id)s", "sqlite": ":store_id"}
# The fields of a file's line, its tags after them (catalogue.lines.CSV_COLUMNS).
FIELDS = file_fields(ITEM_FIELDS)
# A text cell safe to open in a spreadsheet (OWASP, "CSV Injection"): one quote put before
# a text that starts with a formula's character, after any quotes, which the import takes
# away again (catalogue.lines.unescaped). The characters are written into the SQL as they
# are: a literal may hold a tab or a carriage return, in both databases.
FORMULA_CHARACTERS = ", ".join(f"'{character}'" for character in sorted(FORMULA_STARTS))
ESCAPED = (
    f"CASE WHEN substr(ltrim({{0}}, ''''), 1, 1) IN ({FORMULA_CHARACTERS})"
    " THEN '''' || {0} ELSE {0} END"
)


def value(field: Field, dialect: str) -> str:
    """The item's field as a file has it: a time as text (schemas.field_types.TIMESTAMP_FORMAT)."""
    column = f"i.{field.name}"
    return AS_TEXT[dialect].format(column) if field.kind == "timestamp" else column


def json_line(dialect: str) -> str:
    """An item's line as a JSON object. On PostgreSQL joined as text, each value made JSON
    by to_json: measured 10 % faster than json_build_object."""
    tags = TAGS[dialect]["json"]
    if dialect == "sqlite":
        pairs = "".join(f"'{field.name}', {value(field, dialect)}, " for field in FIELDS)
        return f"json_object({pairs}'tags', json({tags}))"
    values = {
        field.name: value(field, dialect) if field.kind == "number"
        else f"coalesce(CAST(to_json({value(field, dialect)}) AS text), 'null')"
        for field in FIELDS
    }  # fmt: skip
    values["tags"] = tags
    members = (
        f"""'{"," if index else "{"}"{name}":' || {value}"""
        for index, (name, value) in enumerate(values.items())
    )
    return " || ".join(members) + " || '}'"


def csv_cell(field: Field, dialect: str) -> str:
    """A field's CSV cell: a text quoted, its quotes doubled; none, an empty cell."""
    shown = value(field, dialect)
    if field.kind == "number":
        return shown
    if field.kind == "timestamp":
        return f"coalesce({shown}, '')"
    return f"""coalesce('"' || replace({ESCAPED.format(shown)}, '"', '""') || '"', '')"""


def csv_line(dialect: str) -> str:
    """An item's line as a CSV row; its tags' cell always quoted (an empty one: "")."""
    tags = ESCAPED.format(TAGS[dialect]["csv"])
    cells = [csv_cell(field, dialect) for field in FIELDS]
    cells.append(f"""'"' || replace(coalesce({tags}, ''), '"', '""') || '"'""")
    return " || ',' || ".join(cells)


def export_sql(dialect: str, media_type: str) -> str:
    """The statement of the lines of a store's file in `media_type`, for the driver's own
    cursor, with the driver's placeholder for the store's id."""
    line = csv_line(dialect) if media_type == CSV else json_line(dialect)
    return (
        f"SELECT {line} FROM items i LEFT JOIN items_tags it ON it.item_id = i.id"
        " LEFT JOIN tags t ON t.id = it.tag_id"
        f" WHERE i.store_id = {STORE_ID[dialect]} GROUP BY i.id ORDER BY i.id"
    )


def export_file(store_id: int, media_type: str) -> BinaryIO:
    """The file of the store's items in `media_type`, written whole, at its start: the
    transaction it is read in ends before any wait on a client. It spills to disk past a
    megabyte: memory stays flat whatever the store's size."""
    file = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES)  # noqa: SIM115 - the caller's
    for lines in exported_lines(store_id, media_type):
        file.write(lines.encode())
    file.seek(0)
    return file


def exported_lines(store_id: int, media_type: str) -> Iterator[str]:
    """The file of the store's items in `media_type`, a batch of lines at a time."""
    dialect = db.engine.dialect.name
    postgres = dialect == "postgresql"
    if media_type == CSV:
        yield ",".join(CSV_COLUMNS) + "\n"
    # A connection of its own, held until the last line is read; on PostgreSQL in a
    # transaction, where a server-side cursor lives; on SQLite, which reads a snapshot per
    # statement anyway, with no write lock (BEGIN IMMEDIATE).
    engine = db.engine if postgres else db.engines[READS]
    with engine.connect() as connection, connection.begin():
        # The driver's cursor, not SQLAlchemy's rows: they cost 2 us each, half the
        # database's work for a line (psycopg2, a million lines: 6.3 s against 4.5 s).
        driver_connection = connection.connection.dbapi_connection
        cursor = driver_connection.cursor(name="export") if postgres else driver_connection.cursor()
        try:
            cursor.execute(export_sql(dialect, media_type), {"store_id": store_id})
            while lines := cursor.fetchmany(FETCHED_TOGETHER):
                yield "\n".join(line for (line,) in lines) + "\n"
        finally:
            cursor.close()
