"""The one way views load stores, items and tags: live ones only.

A deleted store keeps its rows until it is purged, hidden: every ORM select of stores sees
live ones (models.store.hide_deleted_stores), and an item or a tag is loaded with its store,
by an inner join, so that one of a deleted store is not found either. A view that loaded a
child any other way would see it; tests/unit/test_structure.py fails when one does.
"""

from typing import Literal, TypeVar

from sqlalchemy import ScalarSelect, Select, func, or_, select, true, tuple_
from sqlalchemy.orm import joinedload

from db import db
from models.item import ItemModel
from models.item_tag import ItemTagModel
from models.store import INCLUDE_DELETED, StoreModel
from models.tag import TagModel

Model = TypeVar("Model", StoreModel, ItemModel, TagModel)
# "share": it stays as it is, or for an item or tag, its store stays live, until commit;
# "update": besides, no other transaction changes it meanwhile. A store is locked for update
# FOR NO KEY UPDATE: its key stays, so a running import's foreign key checks (KEY SHARE) go
# on beside a delete, which the import then sees when it ends (catalogue/runs.py).
Lock = Literal["share", "update"] | None


class NotFoundError(LookupError):
    """No live `model` `ident` (never there, purged, or of a deleted store): the web layer
    answers 404 with its message (web/errors.py)."""

    def __init__(self, model: type, ident: int) -> None:
        super().__init__(f"{model.__name__.removesuffix('Model')} {ident} not found.")


# Made once: building a loader option and its statement on every call costs a read 5 %.
WITH_ITS_STORE = {
    model: (joinedload(model.store, innerjoin=True),) for model in (ItemModel, TagModel)
}
LIVE = {model: select(model).options(*WITH_ITS_STORE[model]) for model in WITH_ITS_STORE}


def live_items() -> Select:
    return LIVE[ItemModel]


def live_tags() -> Select:
    return LIVE[TagModel]


def get_live(model: type[Model], ident: int, lock: Lock = None) -> Model | None:
    """The live store, item or tag `ident`, or None."""
    if model is StoreModel:
        locking = {"update": {"key_share": True}, "share": {"read": True}, None: False}[lock]
        return db.session.get(StoreModel, ident, with_for_update=locking)
    found = db.session.get(
        model,
        ident,
        options=WITH_ITS_STORE[model],
        with_for_update={"of": model} if lock == "update" else False,
    )
    if found is None or lock is None or store_stays_live(found.store_id):
        return found
    return None


def get_live_one(model: type[Model], ident: int, lock: Lock = None) -> Model:
    """The live store, item or tag `ident`; NotFoundError if there is none."""
    found = get_live(model, ident, lock)
    if found is None:
        raise NotFoundError(model, ident)
    return found


def get_any_store(store_id: int) -> StoreModel:
    """The store, deleted or not (NotFoundError if purged or never there), locked."""
    store = db.session.get(
        StoreModel, store_id, with_for_update=True, execution_options={INCLUDE_DELETED: True}
    )
    if store is None:
        raise NotFoundError(StoreModel, store_id)
    return store


def store_stays_live(store_id: int) -> bool:
    """Share-lock the store until commit, if it is live: a write into a store and the
    store's deletion wait for each other, so the write lands before the deletion (and goes
    with the store) or sees the store deleted. (FOR SHARE re-reads the row after the wait;
    SQLite's BEGIN IMMEDIATE serializes both.)"""
    live = select(StoreModel.id).where(StoreModel.id == store_id, StoreModel.deleted_at.is_(None))
    return db.session.scalar(live.with_for_update(read=True)) is not None


def count_up_to(model: type[ItemModel | TagModel], store_id: int, limit: int) -> ScalarSelect:
    """How many `model`s the store holds, counted no further than `limit`."""
    within = select(model.id).where(model.store_id == store_id).limit(limit).subquery()
    return select(func.count()).select_from(within).scalar_subquery()


def count_links_up_to(store_id: int, limit: int) -> ScalarSelect:
    """How many links between its items and tags the store holds, counted no further than
    `limit`."""
    within = (
        select(ItemTagModel.item_id)
        .join(ItemModel, ItemModel.id == ItemTagModel.item_id)
        .where(ItemModel.store_id == store_id)
        .limit(limit)
        .subquery()
    )
    return select(func.count()).select_from(within).scalar_subquery()


def item_in_store_order_after(after: int) -> Select:
    """The store of item `after`, where a list of items in store order goes on from."""
    return select(ItemModel.store_id).where(ItemModel.id == after)


def live_items_in_store_order(
    offset: int, limit: int, after: int | None = None, after_store: int | None = None
) -> Select:
    """The items of every live store, store by store in id order, each store's in id order,
    past item `after` of store `after_store`.

    PostgreSQL walks the live stores, and each one's items by (store_id, id) (LATERAL): a
    deleted store's items, a million or more until its purge, are never read, as they
    would be by a walk of all items in id order that skips those of deleted stores.
    SQLite has no LATERAL; there the join walks them (SQLite is for one machine's data).
    """
    statement = live_items()
    if db.session.get_bind().dialect.name == "postgresql":
        firsts = select(ItemModel.id).where(ItemModel.store_id == StoreModel.id)
        if after_store is not None:
            firsts = firsts.where(or_(StoreModel.id > after_store, ItemModel.id > after))
        firsts = firsts.order_by(ItemModel.id).limit(offset + limit).lateral()
        ids = select(firsts.c.id).select_from(StoreModel).join(firsts, true())
        ids = ids.where(StoreModel.deleted_at.is_(None))
        if after_store is not None:
            ids = ids.where(StoreModel.id >= after_store)
        ids = ids.order_by(StoreModel.id, firsts.c.id).offset(offset).limit(limit)
        statement = statement.where(ItemModel.id.in_(ids))
    else:
        if after_store is not None:
            position = tuple_(ItemModel.store_id, ItemModel.id) > tuple_(after_store, after)
            statement = statement.where(position)
        statement = statement.offset(offset).limit(limit)
    return statement.order_by(ItemModel.store_id, ItemModel.id)
