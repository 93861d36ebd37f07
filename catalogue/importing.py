"""Writing an imported catalogue into a store: every item with its tags (found by name, or
created) and links, all or nothing, in the current transaction.

On PostgreSQL rows go in by COPY, a batch at a time: the batch's item ids are taken from the
items' sequence first, so that its links can be written by COPY too. SQLite, which has no
COPY, inserts the same batches with executemany.
"""

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import func, insert, select

from catalogue.lines import BadLine, items_of
from db import db, insert_missing
from models import ItemModel, ItemTagModel, TagModel

# Items written at once: big enough that a batch's round trips cost little beside its rows,
# small enough to hold in memory with their tags.
BATCH_ITEMS = 5_000
# Bad lines an answer lists; past them, only counted.
LISTED_BAD_LINES = 100
# Tag names looked up (and created) per statement.
TAG_NAMES_PER_STATEMENT = 1_000


@dataclass
class Imported:
    lines: int = 0
    items: int = 0
    tags_created: int = 0
    links: int = 0


@dataclass
class LinesRefused(Exception):  # noqa: N818 - the import's verdict, not a failure of ours
    """Some lines are not items: nothing was written."""

    lines: int
    bad: list[BadLine] = field(default_factory=list)
    total: int = 0


def import_items(
    store_id: int,
    chunks: Iterable[bytes],
    media_type: str,
    progress: Callable[[Imported], None] = lambda _counts: None,
) -> Imported:
    """Add the items of the file in `chunks` to the store; raise LinesRefused, having
    written nothing worth keeping (the caller rolls back), if a line is bad. Past the first
    bad line, the rest is only checked, for the count."""
    counts, refused = Imported(), LinesRefused(0)
    batch: list[dict] = []
    for entry in items_of(chunks, media_type):
        if isinstance(entry, BadLine):
            counts.lines = entry.line
            refused.total += 1
            if len(refused.bad) < LISTED_BAD_LINES:
                refused.bad.append(entry)
            continue
        counts.lines, item = entry
        if refused.total:
            continue
        batch.append(item)
        if len(batch) == BATCH_ITEMS:
            write_batch(store_id, batch, counts)
            batch = []
            progress(counts)
    if refused.total:
        refused.lines = counts.lines
        raise refused
    write_batch(store_id, batch, counts)
    return counts


def write_batch(store_id: int, items: list[dict], counts: Imported) -> None:
    if not items:
        return
    tag_ids = tags_by_name(store_id, sorted({name for item in items for name in item["tags"]}))
    counts.tags_created += tag_ids.created
    item_ids = insert_items(store_id, items)
    # A tag named twice on one line is linked once.
    links = [
        (item_id, tag_ids[name])
        for item_id, item in zip(item_ids, items, strict=True)
        for name in dict.fromkeys(item["tags"])
    ]
    insert_links(links)
    counts.items += len(items)
    counts.links += len(links)


class TagIds(dict):
    created = 0


def tags_by_name(store_id: int, names: list[str]) -> TagIds:
    """The ids of the store's tags of these names, the missing ones created (in name order:
    two imports that create the same tags wait for each other rather than deadlock)."""
    ids = TagIds()
    for start in range(0, len(names), TAG_NAMES_PER_STATEMENT):
        some = names[start : start + TAG_NAMES_PER_STATEMENT]
        ids.created += insert_missing(TagModel, [{"store_id": store_id, "name": n} for n in some])
        found = select(TagModel.name, TagModel.id).where(
            TagModel.store_id == store_id, TagModel.name.in_(some)
        )
        ids.update(db.session.execute(found).all())
    return ids


def insert_items(store_id: int, items: list[dict]) -> list[int]:
    """Insert the items into the store; their ids, in order."""
    rows = [(item["name"], item["price"], item.get("description"), store_id) for item in items]
    if not copying():
        statement = insert(ItemModel).returning(ItemModel.id, sort_by_parameter_order=True)
        columns = ("name", "price", "description", "store_id")
        values = [dict(zip(columns, row, strict=True)) for row in rows]
        return list(db.session.scalars(statement, values))
    # The ids first, so that the links can go in by COPY too. nextval() of a sequence is
    # never rolled back: a refused import leaves a gap in the ids, as any failed insert does.
    sequence = func.nextval(func.pg_get_serial_sequence("items", "id"))
    ids = list(db.session.scalars(select(sequence).select_from(func.generate_series(1, len(rows)))))
    copy("items (id, name, price, description, store_id)", (
        (item_id, *row) for item_id, row in zip(ids, rows, strict=True)
    ))  # fmt: skip
    return ids


def insert_links(links: list[tuple[int, int]]) -> None:
    if not links:
        return
    if copying():
        copy("items_tags (item_id, tag_id)", links)
    else:
        db.session.execute(
            insert(ItemTagModel), [{"item_id": item, "tag_id": tag} for item, tag in links]
        )


def copying() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def copy(into: str, rows: Iterable[tuple]) -> None:
    """COPY `rows` into the table and columns `into`, through the session's connection,
    with either driver."""
    data = "".join(copy_lines(rows)).encode()
    connection = db.session.connection()
    raw = connection.connection.dbapi_connection
    statement = f"COPY {into} FROM STDIN"
    with raw.cursor() as cursor:
        if connection.dialect.driver == "psycopg":
            with cursor.copy(statement) as copying_rows:
                copying_rows.write(data)
        else:
            cursor.copy_expert(statement, io.BytesIO(data))


# COPY's text format: tab-separated, \N for NULL, and these characters escaped.
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_lines(rows: Iterable[tuple]) -> Iterator[str]:
    for row in rows:
        yield (
            "\t".join(
                "\\N" if value is None else str(value).translate(COPY_ESCAPES) for value in row
            )
            + "\n"
        )
