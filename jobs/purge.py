"""Purging deleted stores once their expire_time has passed: their items (with their links)
and tags in batches of one short transaction each, then the store row.

Batches are key ranges on (store_id, id): the batch's last id is found by walking the index
BATCH_ROWS entries, then one DELETE takes the range (an `id IN (SELECT … LIMIT n)` costs 4 times
as much per row). Each batch commits on its own, so a purge holds no lock for long, touches
no other store, and one cut off in the middle (a killed worker) is finished by the next run.
Each batch first locks the store row and checks it is still expired: a restore (which
refuses expired stores) and a purge never interleave.

The store row's DELETE records the store's one event, store.purged, with the counts of what
the purge deleted (models/event.py), in its transaction.

Run by the procrastinate worker on PostgreSQL (jobs/tasks.py), by `flask purge-deleted`
anywhere (cli/maintenance.py); `flask apply-erasures` purges erased stores the same way, the
check being that the store is one an erasure names (backups/erasures.py).
"""

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Select, delete, func, select

from db import db
from models import ItemModel, ItemTagModel, StoreModel, TagModel
from models.event import record_event
from models.store import INCLUDE_DELETED

# A purge's first batch: about 0.1 s of deleting items with their links on PostgreSQL here.
# Later batches are sized to last about BATCH_SECONDS, up to twice the last one and within
# [MIN_BATCH_ROWS, MAX_BATCH_ROWS]: each transaction costs a few round trips whatever its
# size, so fewer, bigger ones come closer to the rate of one raw DELETE, while none comes
# near a second.
BATCH_ROWS = 10_000
BATCH_SECONDS = 0.25
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 1_000, 50_000


def expired(now: datetime) -> Select:
    """The ids of the stores to purge at `now`: deleted, and past their expire_time."""
    return (
        select(StoreModel.id)
        .where(StoreModel.deleted_at.is_not(None), StoreModel.expire_time <= now)
        .execution_options(**{INCLUDE_DELETED: True})
    )


def purge_batch(
    model: type[ItemModel | TagModel],
    store_id: int,
    doomed: Select,
    after: int = 0,
    rows: int | None = None,
    counted: Counter | None = None,
) -> int | None:
    """Delete the store's next `rows` (BATCH_ROWS) rows of `model` past id `after`, if the
    store is still among the `doomed` (a select of store ids: `expired(now)`); the last id
    deleted while there may be more, else None. `counted` adds up the rows deleted, by
    table name (links: those of the items deleted).

    The next batch starts past this one's last id: walking the index from the store's first
    id each time would walk every row the batches before deleted, more on each batch.
    """
    still = doomed.where(StoreModel.id == store_id).with_for_update(of=StoreModel)
    if db.session.scalar(still) is None:
        db.session.rollback()
        return None
    in_range = (model.store_id == store_id, model.id > after)
    last = db.session.scalar(
        select(model.id)
        .where(*in_range)
        .order_by(model.id)
        .offset((rows or BATCH_ROWS) - 1)
        .limit(1)
    )
    if last is not None:
        in_range = (*in_range, model.id <= last)
    if counted is not None and model is ItemModel:
        # Their links go by ON DELETE CASCADE, uncounted: counted first, on their key.
        links = select(func.count()).select_from(ItemTagModel).join(model).where(*in_range)
        counted[ItemTagModel.__tablename__] += db.session.scalar(links)
    # No objects of the session to keep in step: the ORM need not fetch the ids it deletes.
    deleted = db.session.execute(
        delete(model).where(*in_range).execution_options(synchronize_session=False)
    ).rowcount
    if counted is not None:
        counted[model.__tablename__] += deleted
    db.session.commit()
    return last


def purge_store(store_id: int, doomed: Select) -> bool:
    """Purge one store while it is among the `doomed` (see purge_batch); whether it was
    purged (not restored or purged meanwhile)."""
    counted: Counter = Counter()
    for model in (ItemModel, TagModel):
        last, rows = 0, BATCH_ROWS
        while True:
            started = time.monotonic()
            last = purge_batch(model, store_id, doomed, last, rows, counted)
            if last is None:
                break
            rows = next_batch_rows(rows, time.monotonic() - started)
    # What is left cascades in the database (ON DELETE CASCADE), as any store delete would.
    still = StoreModel.id.in_(doomed.where(StoreModel.id == store_id))
    gone = db.session.execute(
        delete(StoreModel)
        .where(still)
        .returning(StoreModel.name, StoreModel.owner_id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if gone is not None:
        record_event(
            "store.purged",
            resource_id=store_id,
            store_id=store_id,
            owner_id=gone.owner_id,
            actor_id=None,
            data=json.dumps({"id": store_id, "name": gone.name, "owner_id": gone.owner_id}),
            # What this purge deleted: a purge cut off and finished by the next run counts
            # only the rest.
            counts={
                "items": counted[ItemModel.__tablename__],
                "tags": counted[TagModel.__tablename__],
                "links": counted[ItemTagModel.__tablename__],
            },
        )
    db.session.commit()
    return gone is not None


def next_batch_rows(rows: int, seconds: float) -> int:
    aimed = int(rows * BATCH_SECONDS / max(seconds, 0.001))
    return max(MIN_BATCH_ROWS, min(MAX_BATCH_ROWS, 2 * rows, aimed))


def purge_expired(report: Callable[[int], None] = lambda _store_id: None) -> int:
    """Purge every store whose expire_time has passed; how many."""
    now = datetime.now(UTC)
    store_ids = db.session.scalars(expired(now).order_by(StoreModel.expire_time)).all()
    db.session.commit()
    purged = 0
    for store_id in store_ids:
        if purge_store(store_id, expired(now)):
            report(store_id)
            purged += 1
    return purged
