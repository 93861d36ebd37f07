"""Erasures that no restore undoes. `POST /store/<id>/purge` records its erasure twice: a row
of `erasures`, in the request's own transaction, and a JSON line of a log outside the
database (ERASURE_LOG_PATH), which a restore of the database to an earlier time cannot take
back. After such a restore, `flask apply-erasures` puts the log's erasures back in the table
and deletes every store they name; `flask restore-store` refuses to bring one back.

A store is its id and its created_at: a database restored to an earlier time hands its ids
out again, and the new store that gets an erased one's id is another store.

The log is appended to, one whole line per write(2) with O_APPEND (so any number of
processes may append at once) and fsynced; readers skip duplicates and torn lines (a crash
in the middle of a write).
"""

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import current_app
from flask_sqlalchemy.session import Session
from sqlalchemy import Select, and_, event, select

from config.settings import current_settings
from db import db, insert_missing
from jobs.purge import purge_store
from models import ErasureModel, StoreModel
from models.store import INCLUDE_DELETED
from schemas.field_types import MAX_ID

# The session's erasures to log as its transaction commits (Session.info).
TO_LOG = "erasures_to_log"
# Erasures of the log put back in the table per INSERT (SQLite takes 32,766 parameters).
BATCH = 1000


@dataclass(frozen=True)
class Erasure:
    store_id: int
    store_created_at: datetime
    requested_at: datetime

    def line(self) -> str:
        return json.dumps({
            "store_id": self.store_id,
            "store_created_at": self.store_created_at.astimezone(UTC).isoformat(),
            "requested_at": self.requested_at.astimezone(UTC).isoformat(),
        }) + "\n"  # fmt: skip

    @classmethod
    def of_line(cls, line: str) -> "Erasure":
        """The erasure a line of the log says; ValueError if it says none a store could have
        (a torn line, or one written by hand)."""
        try:
            fields = json.loads(line)
            store_id = fields["store_id"]
            if type(store_id) is not int or not 1 <= store_id <= MAX_ID:
                raise ValueError(f"no store id: {store_id!r}")
            return cls(store_id, utc(fields["store_created_at"]), utc(fields["requested_at"]))
        except (KeyError, TypeError, OverflowError, RecursionError) as unreadable:
            raise ValueError(str(unreadable)) from unreadable

    @property
    def key(self) -> tuple[int, datetime]:
        return self.store_id, self.store_created_at


def utc(text: str) -> datetime:
    """A time of the log, in UTC; one written without a zone (by hand) is UTC, as the log's
    own are, whatever the machine's zone."""
    time = datetime.fromisoformat(text)
    return time.replace(tzinfo=UTC) if time.tzinfo is None else time.astimezone(UTC)


def log_path() -> Path:
    """ERASURE_LOG_PATH, or erasures.jsonl in the app's instance folder."""
    configured = current_settings().erasure_log_path
    return Path(configured) if configured else Path(current_app.instance_path) / "erasures.jsonl"


def record_erasure(store: StoreModel, requested_by: int | None) -> None:
    """The erasure of `store`, recorded in the current transaction (a second request's
    records nothing) and logged once the transaction has committed (again on a second
    request: a duplicate line is harmless, and makes up for a write that failed)."""
    erasure = Erasure(store.id, store.created_at, datetime.now(UTC))
    insert_missing(ErasureModel, [{**vars(erasure), "requested_by": requested_by}])
    db.session.info.setdefault(TO_LOG, []).append(erasure)


# The request itself logs its erasure, just before its transaction commits, rather than the
# purge job later: the line is on disk before the answer leaves, not a minute later (or as
# long as the worker is down), so a restore of the whole database begun meanwhile still
# finds it. Before the commit, not after: a line that cannot be written fails the whole
# request (503), erasure and Idempotency-Key included, so that its retry runs it again; were
# it written after, a retry would find the erasure done (a replayed 202, or a 404 once
# purged) and never log it. A commit that fails after the line leaves an erasure logged but
# not recorded: the next `flask apply-erasures` carries it out, as the request asked.
class ErasureLogUnwritableError(Exception):
    """The erasure's line could not be written (a full disk, a volume gone): the request's
    transaction is not committed."""


@event.listens_for(Session, "before_commit")
def log_erasures_to_commit(session: Session) -> None:
    if erasures := session.info.pop(TO_LOG, None):
        try:
            append(log_path(), erasures)
        except OSError as failed:
            raise ErasureLogUnwritableError(str(failed)) from failed


@event.listens_for(Session, "after_soft_rollback")
def forget_erasures(session: Session, _previous_transaction) -> None:
    session.info.pop(TO_LOG, None)


def append(path: Path, erasures: Iterable[Erasure]) -> None:
    """Append the erasures' lines to the log in one write, and fsync it (and, when it is new,
    its directory)."""
    lines = "".join(erasure.line() for erasure in erasures).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(descriptor).st_size
        # A torn last line is ended first, so that it does not swallow this one's start.
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            lines = b"\n" + lines
        while lines:
            lines = lines[os.write(descriptor, lines) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if new:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@dataclass
class Log:
    erasures: dict[tuple[int, datetime], Erasure]
    torn: int  # lines skipped


def read_log(path: Path) -> Log:
    """The log's erasures, each once; none when there is no log yet."""
    log = Log({}, 0)
    if not path.exists():
        return log
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                erasure = Erasure.of_line(line)
            except ValueError:
                log.torn += 1
                continue
            log.erasures.setdefault(erasure.key, erasure)
    return log


def in_table() -> dict[tuple[int, datetime], Erasure]:
    """The table's erasures."""
    rows = db.session.execute(
        select(ErasureModel.store_id, ErasureModel.store_created_at, ErasureModel.requested_at)
    )
    return {erasure.key: erasure for erasure in (Erasure(*row) for row in rows)}


def erased() -> Select:
    """The ids of the stores an erasure of the table names, deleted or not."""
    return (
        select(StoreModel.id)
        .join(
            ErasureModel,
            and_(
                ErasureModel.store_id == StoreModel.id,
                ErasureModel.store_created_at == StoreModel.created_at,
            ),
        )
        .execution_options(**{INCLUDE_DELETED: True})
    )


@dataclass
class Applied:
    recorded: int  # erasures of the log put back in the table
    logged: int  # erasures of the table put in the log
    torn: int
    purged: list[int]


def apply_erasures(path: Path) -> Applied:
    """Make the table and the log hold the same erasures, then purge every store one names
    (in batches, as the purge job does)."""
    log, table = read_log(path), in_table()
    missing = [erasure for key, erasure in log.erasures.items() if key not in table]
    put_back = sum(
        insert_missing(ErasureModel, [vars(erasure) for erasure in missing[start : start + BATCH]])
        for start in range(0, len(missing), BATCH)
    )
    db.session.commit()
    unlogged = [erasure for key, erasure in table.items() if key not in log.erasures]
    if unlogged:
        append(path, unlogged)
    store_ids = db.session.scalars(erased().order_by(StoreModel.id)).all()
    db.session.commit()
    purged = [store_id for store_id in store_ids if purge_store(store_id, erased())]
    return Applied(put_back, len(unlogged), log.torn, purged)
