"""An import from its file's arrival to its end: POST /store/<id>/item/import keeps the file
in the database (item_import_chunks) and returns at once; the job worker runs the import
(jobs/tasks.py); GET /import/<id> tells how it goes.

A worker runs an import in one transaction that holds the import's advisory lock: a second
worker given the same import (the periodic sweep, after a lost job) passes it by, and one
left by a killed worker is run again from the start, since it wrote nothing. Imports into
one store run one after another. On SQLite, which has no worker, the request runs its import
itself (`run_now`).
"""

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from catalogue.importing import Imported, LinesRefused, import_items
from db import db, took_advisory_lock
from models import ItemImportChunkModel, ItemImportModel, StoreModel
from models.event import record_event
from models.item_import import FAILED, QUEUED, RUNNING, SUCCEEDED
from models.queries import get_live
from models.store import INCLUDE_DELETED
from observability.metrics import count_import
from replication.notes import note_write
from schemas import ItemImportStatusSchema

logger = logging.getLogger(__name__)

# The size of the pieces the file is kept in: a handful of round trips per MiB, and little
# held in memory at once.
CHUNK_BYTES = 1024 * 1024
# How long an import waits between looks at whether another import into its store ended.
STORE_BUSY_SECONDS = 0.5
# An unfinished import untouched this long has lost its job (its worker died, or the
# deferral failed): the periodic sweep runs it.
ABANDONED_AFTER = timedelta(minutes=1)


def keep_file(item_import: ItemImportModel, body: BinaryIO) -> None:
    """Store the file of the import, in the current transaction."""
    number = 0
    while chunk := body.read(CHUNK_BYTES):
        db.session.execute(
            insert(ItemImportChunkModel).values(import_id=item_import.id, number=number, data=chunk)
        )
        number += 1


def kept_chunks(engine: Engine, import_id: int) -> Iterator[bytes]:
    """The file of the import, read on connections of its own, one short transaction per
    chunk: the import reads it in a thread of its own (catalogue.importing.read_ahead), and
    may stop reading early (a CSV with a bad header), leaving this unfinished."""
    number = 0
    while True:
        with engine.connect() as connection:
            chunk = connection.scalar(chunk_number(import_id, number))
        if chunk is None:
            return
        yield chunk
        number += 1


def chunk_number(import_id: int, number: int):
    return select(ItemImportChunkModel.data).where(
        ItemImportChunkModel.import_id == import_id, ItemImportChunkModel.number == number
    )


def run_import(import_id: int) -> bool:
    """Run the import if it is unfinished and nobody runs it; whether this call ran it."""
    postgres = db.session.get_bind().dialect.name == "postgresql"
    if postgres and not took_advisory_lock(f"import {import_id}"):
        db.session.rollback()
        return False
    item_import = db.session.get(ItemImportModel, import_id)
    if item_import is None or item_import.state not in (QUEUED, RUNNING):
        db.session.rollback()
        return False
    if item_import.attempts >= MAX_ATTEMPTS:
        finish(item_import, FAILED, item_import.lines_read, message=GAVE_UP)
        count_import(FAILED)
        db.session.commit()
        return True
    if postgres:
        count_attempt(import_id)
    show = functools.partial(report, import_id) if postgres else None
    run(item_import, kept_chunks(db.engine, import_id), show)
    # The sender's reads see the import's items at once, as they would see a write of theirs.
    note_write(item_import.user_id)
    db.session.commit()
    return True


def run(
    item_import: ItemImportModel,
    chunks: Iterable[bytes],
    show: Callable[[str, int], None] | None = None,
) -> None:
    """Import the file, and set how it went on `item_import` (its chunks dropped), in the
    current transaction; the caller commits. `show(state, lines_read)` is told when it
    starts and how far it got, as it goes."""
    if db.session.get_bind().dialect.name == "postgresql":
        wait_for_other_imports(item_import.store_id)
    if show is not None:
        show(RUNNING, 0)
    started = time.monotonic()

    def progress(counts: Imported) -> None:
        rate = counts.lines / max(time.monotonic() - started, 1e-6)
        logger.info("Import %d: %d lines read, %.0f lines/s", item_import.id, counts.lines, rate)
        if show is not None:
            show(RUNNING, counts.lines)

    savepoint = db.session.begin_nested()
    try:
        counts = import_items(item_import.store_id, chunks, item_import.media_type, progress)
        if get_live(StoreModel, item_import.store_id, lock="share") is None:
            savepoint.rollback()
            finish(item_import, FAILED, counts.lines, message=STORE_GONE)
        else:
            savepoint.commit()
            finish(
                item_import, SUCCEEDED, counts.lines, items=counts.items,
                tags_created=counts.tags_created, links=counts.links,
            )  # fmt: skip
    except LinesRefused as refused:
        savepoint.rollback()
        errors = json.dumps([bad.as_dict() for bad in refused.bad])
        finish(item_import, FAILED, refused.lines, errors=errors, error_count=refused.total)
    # COPY raises the driver's own error, past SQLAlchemy.
    except (IntegrityError, db.engine.dialect.loaded_dbapi.IntegrityError):
        # A constraint's verdict on the file, not a fault to retry: a value unique among
        # the store's items was given to another between the check and the write.
        savepoint.rollback()
        finish(item_import, FAILED, item_import.lines_read, message=TAKEN_MEANWHILE)
    seconds = time.monotonic() - started
    count_import(item_import.state, item_import.lines_read, seconds)
    logger.info(
        "Import %d into store %d %s: %d lines in %.1f s (%.0f lines/s)", item_import.id,
        item_import.store_id, item_import.state, item_import.lines_read, seconds,
        item_import.lines_read / max(seconds, 1e-6),
    )  # fmt: skip


STORE_GONE = "The store was deleted while its import ran: nothing was imported."
TAKEN_MEANWHILE = (
    "Another item of the store was given a sku of the file while its import ran: nothing "
    "was imported. Send the file again to see which."
)
# Runs of one import that may end on a database error before it is given up.
MAX_ATTEMPTS = 3
GAVE_UP = (
    f"The import ended on a database error {MAX_ATTEMPTS} times: nothing was imported. "
    "Send the file again."
)


def finish(item_import: ItemImportModel, state: str, lines: int, **outcome) -> None:
    """Set how the import ended, and record its event (import.succeeded, import.failed), in
    the current transaction."""
    for name, value in {"state": state, "lines_read": lines, **outcome}.items():
        setattr(item_import, name, value)
    item_import.finished_at = datetime.now(UTC)
    # The store's owner, even once it was deleted (STORE_GONE).
    owner_id = db.session.scalar(
        select(StoreModel.owner_id)
        .where(StoreModel.id == item_import.store_id)
        .execution_options(**{INCLUDE_DELETED: True})
    )
    record_event(
        f"import.{state}",
        resource_id=item_import.id,
        store_id=item_import.store_id,
        owner_id=owner_id,
        actor_id=item_import.user_id,
        data=json.dumps(ItemImportStatusSchema().dump(item_import)),
        counts={
            "items": item_import.items,
            "tags": item_import.tags_created,
            "links": item_import.links,
            "lines": item_import.lines_read,
            "bad_lines": item_import.error_count,
        },
    )
    db.session.execute(
        ItemImportChunkModel.__table__.delete().where(
            ItemImportChunkModel.import_id == item_import.id
        )
    )


def run_now(item_import: ItemImportModel, body: BinaryIO) -> None:
    """Run the import in the request that brought its file, straight from it: on SQLite,
    where no worker runs."""
    run(item_import, file_chunks(body))


def file_chunks(file: BinaryIO) -> Iterator[bytes]:
    return iter(lambda: file.read(CHUNK_BYTES), b"")


def wait_for_other_imports(store_id: int) -> None:
    """Hold the store's import lock, once no other import into the store runs: two would
    create the same tags, and each wait for the other's. Polled, as a wait longer than the
    statement timeout would be cancelled."""
    while not took_advisory_lock(f"imports into store {store_id}"):
        time.sleep(STORE_BUSY_SECONDS)


def report(import_id: int, state: str, lines_read: int) -> None:
    """Show how far a running import got at once, outside its transaction, which is seen
    only when it ends."""
    changed_at_once(import_id, state=state, lines_read=lines_read)


def count_attempt(import_id: int) -> None:
    """Count a run begun, outside its transaction: counted still if it fails."""
    changed_at_once(import_id, attempts=ItemImportModel.attempts + 1)


def changed_at_once(import_id: int, **values) -> None:
    """Change the import's row in a transaction of its own, committed at once."""
    with db.engine.begin() as connection:
        connection.execute(
            update(ItemImportModel).where(ItemImportModel.id == import_id).values(**values)
        )


def run_abandoned_imports() -> int:
    """Run the unfinished imports whose job seems lost; how many this call ran. One that
    ends on an error (a database error: its run is counted, MAX_ATTEMPTS) is logged and left
    to the next sweep: the others still run."""
    ran = 0
    for import_id in abandoned_imports():
        try:
            ran += run_import(import_id)
        except Exception:
            logger.exception("Import %d ended on an error; the next sweep runs it again", import_id)
            db.session.rollback()
    return ran


def abandoned_imports() -> list[int]:
    """Unfinished imports whose job seems lost, oldest first."""
    stale = datetime.now(UTC) - ABANDONED_AFTER
    ids = db.session.scalars(
        select(ItemImportModel.id)
        .where(ItemImportModel.state.in_((QUEUED, RUNNING)), ItemImportModel.created_at < stale)
        .order_by(ItemImportModel.id)
    ).all()
    db.session.rollback()
    return list(ids)
