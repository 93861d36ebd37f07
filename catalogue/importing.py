"""Writing an imported catalogue into a store: every item with its tags (found by name, or
created) and links, all or nothing, in the current transaction.

On PostgreSQL rows go in by COPY, a batch at a time: the batch's item ids are taken from the
items' sequence first, so that its links can be written by COPY too. SQLite, which has no
COPY, inserts the same batches with executemany.
"""

import io
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from sqlalchemy import func, select, text

from catalogue.clashes import clashes
from catalogue.lines import IMPORTED, BadLine, items_of
from db import db, insert_missing
from models import ItemModel, ItemTagModel, TagModel
from priority import lower_own_priority

T = TypeVar("T")
IMPORTED_NAMES = tuple(field.name for field in IMPORTED)

# Items written at once: big enough that a batch's round trips cost little beside its rows,
# small enough to hold in memory with their tags.
BATCH_ITEMS = 20_000
# How long the writing thread, back from the database, waits for the GIL at most while the
# reading thread checks lines (Python's default: 5 ms): psycopg takes it again for each 128
# KiB of a COPY. An import ran 14 % faster with this (200,000 items, psycopg, PgBouncer).
GIL_HANDOVER_SECONDS = 0.0005
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

    def add(self, bad: BadLine) -> None:
        self.total += 1
        if len(self.bad) < LISTED_BAD_LINES:
            self.bad.append(bad)


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
    batch: list[NewItem] = []
    for entry in read_ahead(new_items(items_of(chunks, media_type))):
        if isinstance(entry, BadLine):
            counts.lines = entry.line
            refused.add(entry)
            continue
        counts.lines, item = entry
        if refused.total:
            continue
        batch.append(item)
        if len(batch) == BATCH_ITEMS:
            write_unless_clashing(store_id, batch, counts, refused)
            batch = []
            progress(counts)
    write_unless_clashing(store_id, batch, counts, refused)
    if refused.total:
        refused.lines = counts.lines
        raise refused
    return counts


def write_unless_clashing(
    store_id: int, batch: list["NewItem"], counts: Imported, refused: LinesRefused
) -> None:
    """Write the batch, unless a value of it that must be unique is not (catalogue.clashes)."""
    if refused.total:
        return
    for bad in clashes(store_id, [(item.line, item.values) for item in batch]):
        refused.add(bad)
    if not refused.total:
        write_batch(store_id, batch, counts)


class NewItem(NamedTuple):
    """An item to write, as small as it goes: a batch of them waits in memory."""

    line: int
    # Its IMPORTED fields' values, in their order.
    values: tuple
    # Each once: a tag named twice on one line is linked once.
    tags: tuple[str, ...]


def new_items(
    entries: Iterable[tuple[int, dict] | BadLine],
) -> Iterator[tuple[int, NewItem] | BadLine]:
    for entry in entries:
        if isinstance(entry, BadLine):
            yield entry
        else:
            line, item = entry
            tags = tuple(dict.fromkeys(item["tags"]))
            yield line, NewItem(line, tuple(item.get(name) for name in IMPORTED_NAMES), tags)


def read_ahead(entries: Iterator[T], batch: int = BATCH_ITEMS, depth: int = 1) -> Iterator[T]:
    """`entries`, read and checked by a thread of their own up to `depth` batches ahead:
    checking a line (marshmallow) costs about what writing it does, and a write waits on
    the database (the foreign key checks at the end of each COPY) without the GIL, so both
    go on at once. The thread runs at a lower CPU priority (priority.py): reads served
    beside an import go first."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def offer(some: object) -> bool:
        """Hand `some` over, unless the reading stopped meanwhile."""
        while not stopped.is_set():
            try:
                ready.put(some, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        lower_own_priority()
        try:
            some: list = []
            for entry in entries:
                some.append(entry)
                if len(some) == batch:
                    if not offer(some):
                        return
                    some = []
            offer(some)
            offer([])
        except BaseException as error:
            offer(error)

    reader = threading.Thread(target=read, name="import-reader", daemon=True)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, GIL_HANDOVER_SECONDS))
    reader.start()
    try:
        while some := ready.get():
            if isinstance(some, BaseException):
                raise some
            yield from some
    finally:
        stopped.set()
        reader.join()
        sys.setswitchinterval(switch_interval)


def write_batch(store_id: int, items: list[NewItem], counts: Imported) -> None:
    if not items:
        return
    tag_ids = tags_by_name(store_id, sorted({name for item in items for name in item.tags}))
    counts.tags_created += tag_ids.created
    item_ids = insert_items(store_id, items)
    links = [
        (item_id, tag_ids[name])
        for item_id, item in zip(item_ids, items, strict=True)
        for name in item.tags
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


def insert_items(store_id: int, items: list[NewItem]) -> list[int]:
    """Insert the items into the store; their ids, in order, taken first, so that links
    can be written without reading anything back."""
    ids = new_item_ids(len(items))
    if copying():
        copy(f"items (id, {', '.join(IMPORTED_NAMES)}, store_id)", (
            f"{item_id}\t{copy_values(item.values)}\t{store_id}\n"
            for item_id, item in zip(ids, items, strict=True)
        ))  # fmt: skip
    else:
        db.session.connection().execute(ItemModel.__table__.insert(), [
            {"id": item_id, **dict(zip(IMPORTED_NAMES, item.values, strict=True)),
             "store_id": store_id}
            for item_id, item in zip(ids, items, strict=True)
        ])  # fmt: skip
    return ids


def new_item_ids(count: int) -> list[int]:
    """`count` ids for new items. nextval() of a sequence is never rolled back: a refused
    import leaves a gap in the ids, as any failed insert does. SQLite's write lock, held
    since the transaction began (BEGIN IMMEDIATE), keeps any other writer from taking the
    ids after the last one given (AUTOINCREMENT's sqlite_sequence), which these ids move on."""
    if copying():
        # Named first: pg_get_serial_sequence() inside nextval() runs once per id (4 x slower).
        sequence = db.session.scalar(select(func.pg_get_serial_sequence("items", "id")))
        ids = select(func.nextval(sequence)).select_from(func.generate_series(1, count))
        return list(db.session.scalars(ids))
    last = db.session.scalar(text("SELECT seq FROM sqlite_sequence WHERE name = 'items'")) or 0
    return list(range(last + 1, last + 1 + count))


def insert_links(links: list[tuple[int, int]]) -> None:
    if not links:
        return
    if copying():
        copy("items_tags (item_id, tag_id)", (f"{item}\t{tag}\n" for item, tag in links))
    else:
        db.session.connection().execute(
            ItemTagModel.__table__.insert(),
            [{"item_id": item, "tag_id": tag} for item, tag in links],
        )


def copying() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def copy(into: str, lines: Iterable[str]) -> None:
    """COPY `lines` (in COPY's text format) into the table and columns `into`, through the
    session's connection, with either driver, in one piece: the driver takes the GIL again
    for each piece it reads, and waits for it while the reading thread checks lines."""
    data = "".join(lines).encode()
    connection = db.session.connection()
    raw = connection.connection.dbapi_connection
    statement = f"COPY {into} FROM STDIN"
    with raw.cursor() as cursor:
        if connection.dialect.driver == "psycopg":
            with cursor.copy(statement) as copying_rows:
                copying_rows.write(data)
        else:
            cursor.copy_expert(statement, io.BytesIO(data), size=len(data))


# COPY's text format: tab-separated, \N for NULL, and these characters escaped.
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NEEDS_ESCAPES = re.compile(r"[\\\t\n\r]")
NULL = "\\N"


def copy_text(value: str) -> str:
    return value.translate(COPY_ESCAPES) if NEEDS_ESCAPES.search(value) else value


def copy_values(values: tuple) -> str:
    """A row's values in COPY's text format: a number as it is, a text escaped."""
    return "\t".join(
        NULL if value is None else copy_text(value) if isinstance(value, str) else str(value)
        for value in values
    )
