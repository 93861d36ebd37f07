from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Response, url_for
from flask.views import MethodView
from flask_jwt_extended import current_user
from flask_smorest import abort
from sqlalchemy import select

from backups.erasures import record_erasure
from config.settings import current_settings
from db import db
from models import ItemModel, StoreModel, TagModel
from models.queries import count_links_up_to, count_up_to, get_any_store, get_live_one
from models.store import INCLUDE_DELETED
from rendering.store_document import store_answer, store_answer_by_id, with_firsts
from schemas import (
    COUNTED_UP_TO,
    DeletedStoreSchema,
    PlainStoreSchema,
    StoreDeletionSchema,
    StoreRestoreSchema,
    StoreSchema,
)
from web.blueprint import Blueprint
from web.errors import not_found, refuse
from web.events import Emits
from web.idempotency import user_scope
from web.openapi import LOCATION_HEADER, link
from web.pagination import Page, page_of
from web.transactions import ACCOUNT_DELETED, Conflict, Conflicts, flush

blp = Blueprint("stores", __name__, description="Stores, which own items and tags")

NOT_HERE = {404: "No store with this id"}


def store_to_change(store_id: int) -> StoreModel:
    # Locked: a rename or delete waits for writes in the store, and they for it; so a
    # delete's counts are exact (an insert of an item or tag needs a share lock on it).
    return get_live_one(StoreModel, store_id, lock="update")


def any_store_to_change(store_id: int) -> StoreModel:
    return get_any_store(store_id)


def now() -> datetime:
    return datetime.now(UTC)


def is_expired(store: StoreModel) -> bool:
    return store.expire_time is not None and store.expire_time <= now()


def saved_store(store: StoreModel) -> Response:
    """Save the store; its answer, rendered before the commit (no second transaction)."""
    db.session.add(store)
    flush()
    return store_answer(store)


def contents(store_id: int) -> dict:
    """How many items, tags and links the store holds, each counted up to COUNTED_UP_TO
    (`exact` false past it): what a deletion takes with it, and a restore brings back."""
    items, tags, links = db.session.execute(
        select(
            count_up_to(ItemModel, store_id, COUNTED_UP_TO),
            count_up_to(TagModel, store_id, COUNTED_UP_TO),
            count_links_up_to(store_id, COUNTED_UP_TO),
        )
    ).one()
    exact = max(items, tags, links) < COUNTED_UP_TO
    return {"items": items, "tags": tags, "links": links, "exact": exact}


def contents_of(store: dict) -> dict:
    return contents(store["id"])


def name_taken(name: str) -> str:
    return f"A store named {name!r} exists: pick another name."


# Live stores' names are unique: the name a view saves, as it finds it in its arguments.
def name_conflict(name_of: Callable[..., str]) -> Conflicts:
    return {
        "uq_stores_name_live": Conflict(409, lambda **arguments: name_taken(name_of(**arguments)))
    }


@blp.route("/store/<int:store_id>")
class Store(MethodView):
    @blp.read(StoreSchema, errors=NOT_HERE)
    def get(self, store_id: int) -> Response:
        """Get a store with its first items and tags"""
        return store_answer_by_id(store_id)

    @blp.write(
        200, StoreSchema, body=PlainStoreSchema, owner=store_to_change, current=store_answer,
        emits=Emits("store.renamed"), errors={**NOT_HERE, 409: "Another store has this name"},
        conflicts=name_conflict(lambda body, **_: body["name"]),
    )  # fmt: skip
    def put(self, target: StoreModel, body: dict, store_id: int) -> Response:
        """Rename a store (its owner or an admin)"""
        target.name = body["name"]
        return saved_store(target)

    @blp.write(
        200, StoreDeletionSchema, fresh=True, owner=store_to_change, current=store_answer,
        emits=Emits("store.deleted", counts=lambda deletion: deletion["deleted"]),
        errors=NOT_HERE, conflicts={"fk_stores_deleted_by_users": ACCOUNT_DELETED},
    )  # fmt: skip
    def delete(self, target: StoreModel, store_id: int) -> StoreModel:
        """Delete a store with all its items, tags and their links (its owner or an admin,
        with a fresh token); POST /store/<id>/restore brings it back until its expire_time"""
        # Its rows stay until expire_time, hidden: the delete costs the same at any size.
        counted = contents(store_id)
        target.deleted_at = now()
        target.expire_time = target.deleted_at + timedelta(
            days=current_settings().deleted_store_retention_days
        )
        target.deleted_by = current_user.id
        bound = "" if counted["exact"] else "at least "
        target.message = (
            f"Store {store_id} deleted with {bound}{counted['items']:,} items and "
            f"{counted['tags']:,} tags; "
            f"POST /store/{store_id}/restore brings it back until "
            f"{target.expire_time:%Y-%m-%d %H:%M} UTC."
        )
        target.deleted = counted
        return target


@blp.route("/store/<int:store_id>/restore")
class StoreRestore(MethodView):
    @blp.write(
        200, StoreSchema, fresh=True, idempotent=user_scope, body=StoreRestoreSchema,
        owner=any_store_to_change, emits=Emits("store.restored", counts=contents_of),
        errors={
            404: "No deleted store with this id: purged or expired",
            409: "The store is not deleted, or a live store has its name",
        },
        conflicts=name_conflict(lambda target, body, **_: body.get("name", target.name)),
    )  # fmt: skip
    def post(self, target: StoreModel, body: dict, store_id: int) -> Response:
        """Restore a deleted store before its expire_time, whole: same ids, items, tags and
        links (its owner or an admin, with a fresh token)"""
        if target.deleted_at is None:
            abort(409, message=f"Store {store_id} is not deleted.")
        if is_expired(target):
            refuse(not_found(StoreModel, store_id))
        name = body.get("name", target.name)
        # Named for the client; the unique index still decides (saved_store) if a store
        # takes the name between this look and the commit.
        taken = db.session.scalar(select(StoreModel.id).where(StoreModel.name == name))
        if taken is not None:
            abort(
                409,
                message=f"Store {taken} is named {name!r} now: restore this one with another "
                'name, {"name": "..."}.',
            )
        target.name = name
        target.deleted_at = target.expire_time = target.deleted_by = None
        return saved_store(target)


@blp.route("/store/<int:store_id>/purge")
class StorePurge(MethodView):
    @blp.write(
        202, DeletedStoreSchema, fresh=True, admin=True, idempotent=user_scope,
        # Gone for clients at once; its rows go in the background (store.purged, then).
        emits=Emits("store.deleted", counts=contents_of),
        errors={404: "No store with this id, or purged already"},
        conflicts={"fk_stores_deleted_by_users": ACCOUNT_DELETED},
    )  # fmt: skip
    def post(self, store_id: int) -> StoreModel:
        """Erase a store, deleted or not (admins, with a fresh token; for erasure requests):
        hidden at once, purged in the background within a minute, and no restore brings it
        back, neither POST /store/<id>/restore nor a restore of the backups, of this store
        or of the whole database to any time."""
        store = any_store_to_change(store_id=store_id)
        if store.deleted_at is None:
            store.deleted_at, store.deleted_by = now(), current_user.id
        store.expire_time = now()
        flush()
        record_erasure(store, current_user.id)
        return store


@blp.route("/store/deleted")
class DeletedStoreList(MethodView):
    @blp.listing(DeletedStoreSchema, token="access")
    def get(self, **page: int) -> Page:
        """List your deleted stores that can still be restored (an admin's: all), newest
        store first"""
        deleted = (
            select(StoreModel)
            .where(StoreModel.deleted_at.is_not(None), StoreModel.expire_time > now())
            .execution_options(**{INCLUDE_DELETED: True})
        )
        if not current_user.is_admin:
            deleted = deleted.where(StoreModel.owner_id == current_user.id)
        return page_of(deleted, StoreModel.id, descending=True, **page)


@blp.route("/store")
class StoreList(MethodView):
    @blp.listing(StoreSchema)
    def get(self, **page: int) -> Page:
        """List stores with their first items and tags"""
        stores, after = page_of(select(StoreModel), StoreModel.id, **page)
        return with_firsts(stores), after

    @blp.write(
        201, StoreSchema, idempotent=user_scope, body=PlainStoreSchema, headers=LOCATION_HEADER,
        emits=Emits("store.created"), errors={409: "Another store has this name"},
        conflicts={
            **name_conflict(lambda body, **_: body["name"]),
            "fk_stores_owner_id_users": ACCOUNT_DELETED,
        },
        links={
            "GetStore": link("get", "/store/{store_id}", store_id="id"),
            "RenameStore": link("put", "/store/{store_id}", store_id="id"),
            "DeleteStore": link("delete", "/store/{store_id}", store_id="id"),
            "CreateTag": link("post", "/store/{store_id}/tag", store_id="id"),
            "ListTags": link("get", "/store/{store_id}/tag", store_id="id"),
            "ListItems": link("get", "/store/{store_id}/item", store_id="id"),
        },
    )  # fmt: skip
    def post(self, body: dict) -> tuple[Response, int, dict[str, str]]:
        """Create a store, owned by you"""
        store = StoreModel(**body, owner_id=current_user.id)
        answer = saved_store(store)
        return answer, 201, {"Location": url_for("stores.Store", store_id=store.id)}
