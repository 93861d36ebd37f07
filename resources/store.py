from datetime import UTC, datetime, timedelta

from flask import Response, current_app, jsonify, url_for
from flask.views import MethodView
from flask_jwt_extended import current_user
from flask_smorest import abort
from sqlalchemy import ScalarSelect, Select, func, select, text
from sqlalchemy.orm import aliased

from db import db
from models import ItemModel, StoreModel, TagModel
from models.store import INCLUDE_DELETED
from resources.common import (
    LOCATION_HEADER,
    Blueprint,
    commit,
    commit_or_abort,
    created_links,
    flush_or_abort,
    get_or_404,
    link,
    not_found,
    refuse,
)
from resources.listing import Page, attach_firsts, page_of
from schemas import (
    COUNTED_UP_TO,
    DeletedStoreSchema,
    PlainStoreSchema,
    StoreDeletionSchema,
    StoreRestoreSchema,
    StoreSchema,
)

blp = Blueprint("stores", __name__, description="Stores, which own items and tags")


def first_items_of_store(store_id) -> Select:
    first = aliased(ItemModel)
    return select(first.id).where(first.store_id == store_id).order_by(first.id)


def first_tags_of_store(store_id) -> Select:
    first = aliased(TagModel)
    return select(first.id).where(first.store_id == store_id).order_by(first.id)


def with_firsts(stores: list[StoreModel]) -> list[StoreModel]:
    attach_firsts(stores, "items", ItemModel, first_items_of_store)
    attach_firsts(stores, "tags", TagModel, first_tags_of_store)
    return stores


# GET /store/<id> is the read clients make most. On PostgreSQL the database renders it
# whole, in one statement: one round trip and no Python objects instead of three queries,
# ORM rows and a marshmallow dump, worth the upkeep of a second renderer (figures in the
# README). The statement is a function of the database's (migration 0006) so that its plan
# is made once per connection, not once per request. StoreSchema stays the contract:
# tests/test_stores.py holds this document equal to it.
STORE_DOCUMENT = text("SELECT store_document(:store_id)")


def rendered_store(store_id: int) -> Response:
    document = db.session.scalar(STORE_DOCUMENT, {"store_id": store_id})
    if document is None:
        refuse(not_found(StoreModel, store_id))
    return current_app.response_class(document, mimetype="application/json")


def store_answer(store: StoreModel) -> Response:
    """The store as GET /store/<id> shows it, which every write of it answers too, and
    If-Match is compared with: one renderer, so that an answer's ETag is the GET's."""
    if db.session.get_bind().dialect.name == "postgresql":
        return rendered_store(store.id)
    return jsonify(StoreSchema().dump(with_firsts([store])[0]))


def store_to_change(*_body: dict, store_id: int) -> StoreModel:
    # Locked: a rename or delete waits for writes in the store, and they for it; so a
    # delete's counts are exact (an insert of an item or tag needs a share lock on it).
    return get_or_404(StoreModel, store_id, with_for_update=True)


def store_to_fill(*_body: dict, store_id: int) -> StoreModel:
    # Share-locked: its deletion waits for what goes into it, or it is seen deleted (404).
    return get_or_404(StoreModel, store_id, with_for_update={"read": True})


def any_store_to_change(*_body: dict, store_id: int) -> StoreModel:
    """The store, deleted or not (404 if purged or never there), locked."""
    return get_or_404(
        StoreModel, store_id, with_for_update=True, execution_options={INCLUDE_DELETED: True}
    )


def now() -> datetime:
    return datetime.now(UTC)


def is_expired(store: StoreModel) -> bool:
    return store.expire_time is not None and store.expire_time <= now()


def count_up_to(model: type[ItemModel | TagModel], store_id: int) -> ScalarSelect:
    within = select(model.id).where(model.store_id == store_id).limit(COUNTED_UP_TO).subquery()
    return select(func.count()).select_from(within).scalar_subquery()


def save_store(store: StoreModel) -> Response:
    """Save the store; its answer, rendered before the commit (no second transaction)."""
    db.session.add(store)
    flush_or_abort(
        on_unique=(
            409,
            {"message": f"A store named {store.name!r} exists: pick another name."},
        )
    )
    answer = store_answer(store)
    commit()
    return answer


@blp.route("/store/<int:store_id>")
class Store(MethodView):
    @blp.etag
    @blp.response(200, StoreSchema)
    @blp.alt_response(404, description="No store with this id")
    def get(self, store_id: int) -> Response:
        """Get a store with its first items and tags"""
        if db.session.get_bind().dialect.name == "postgresql":
            return rendered_store(store_id)
        return store_answer(get_or_404(StoreModel, store_id))

    @blp.login_required()
    @blp.etag
    @blp.arguments(PlainStoreSchema)
    @blp.response(200, StoreSchema)
    @blp.alt_response(404, description="No store with this id")
    @blp.alt_response(409, description="Another store has this name")
    @blp.owner_only(store_to_change, current=store_answer)
    def put(self, store: StoreModel, store_data: dict, store_id: int) -> Response:
        """Rename a store (its owner or an admin)"""
        store.name = store_data["name"]
        return save_store(store)

    @blp.login_required(fresh=True)
    @blp.etag
    @blp.response(200, StoreDeletionSchema)
    @blp.alt_response(404, description="No store with this id")
    @blp.owner_only(store_to_change, current=store_answer)
    def delete(self, store: StoreModel, store_id: int) -> StoreModel:
        """Delete a store with all its items, tags and their links (its owner or an admin,
        with a fresh token); POST /store/<id>/restore brings it back until its expire_time"""
        # Its rows stay until expire_time, hidden: the delete costs the same at any size.
        items, tags = db.session.execute(
            select(count_up_to(ItemModel, store_id), count_up_to(TagModel, store_id))
        ).one()
        store.deleted_at = now()
        store.expire_time = store.deleted_at + timedelta(
            days=current_app.config["DELETED_STORE_RETENTION_DAYS"]
        )
        store.deleted_by = current_user.id
        db.session.commit()
        exact = max(items, tags) < COUNTED_UP_TO
        bound = "" if exact else "at least "
        store.message = (
            f"Store {store_id} deleted with {bound}{items:,} items and {tags:,} tags; "
            f"POST /store/{store_id}/restore brings it back until "
            f"{store.expire_time:%Y-%m-%d %H:%M} UTC."
        )
        store.deleted = {"items": items, "tags": tags, "exact": exact}
        return store


@blp.route("/store/<int:store_id>/restore")
class StoreRestore(MethodView):
    @blp.login_required(fresh=True)
    @blp.etag
    @blp.idempotent()
    @blp.arguments(StoreRestoreSchema)
    @blp.response(200, StoreSchema)
    @blp.alt_response(404, description="No deleted store with this id: purged or expired")
    @blp.alt_response(409, description="The store is not deleted, or a live store has its name")
    @blp.owner_only(any_store_to_change)
    def post(self, store: StoreModel, restore_data: dict, store_id: int) -> Response:
        """Restore a deleted store before its expire_time, whole: same ids, items, tags and
        links (its owner or an admin, with a fresh token)"""
        if store.deleted_at is None:
            abort(409, message=f"Store {store_id} is not deleted.")
        if is_expired(store):
            refuse(not_found(StoreModel, store_id))
        name = restore_data.get("name", store.name)
        # Named for the client; the unique index still decides (save_store) if a store
        # takes the name between this look and the commit.
        taken = db.session.scalar(select(StoreModel.id).where(StoreModel.name == name))
        if taken is not None:
            abort(
                409,
                message=f"Store {taken} is named {name!r} now: restore this one with another "
                'name, {"name": "..."}.',
            )
        store.name = name
        store.deleted_at = store.expire_time = store.deleted_by = None
        return save_store(store)


@blp.route("/store/<int:store_id>/purge")
class StorePurge(MethodView):
    @blp.login_required(fresh=True, admin=True)
    @blp.etag
    @blp.idempotent()
    @blp.response(202, DeletedStoreSchema)
    @blp.alt_response(404, description="No store with this id, or purged already")
    def post(self, store_id: int) -> StoreModel:
        """Delete a store for good, soon, deleted or not: no restore (admins, with a fresh
        token; for erasure requests). The purge runs in the background within a minute."""
        store = any_store_to_change(store_id=store_id)
        if store.deleted_at is None:
            store.deleted_at, store.deleted_by = now(), current_user.id
        store.expire_time = now()
        commit_or_abort()
        return store


@blp.route("/store/deleted")
class DeletedStoreList(MethodView):
    @blp.login_required()
    @blp.etag
    @blp.paginated(DeletedStoreSchema)
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
    @blp.etag
    @blp.paginated(StoreSchema)
    def get(self, **page: int) -> Page:
        """List stores with their first items and tags"""
        stores, after = page_of(select(StoreModel), StoreModel.id, **page)
        return with_firsts(stores), after

    @blp.login_required()
    @blp.etag
    @blp.idempotent()
    @blp.arguments(PlainStoreSchema)
    @blp.response(201, StoreSchema, headers=LOCATION_HEADER)
    @blp.alt_response(409, description="Another store has this name")
    @blp.doc(
        **created_links(
            GetStore=link("get", "/store/{store_id}", store_id="id"),
            RenameStore=link("put", "/store/{store_id}", store_id="id"),
            DeleteStore=link("delete", "/store/{store_id}", store_id="id"),
            CreateTag=link("post", "/store/{store_id}/tag", store_id="id"),
            ListTags=link("get", "/store/{store_id}/tag", store_id="id"),
            ListItems=link("get", "/store/{store_id}/item", store_id="id"),
        )
    )
    def post(self, store_data: dict) -> tuple[Response, int, dict[str, str]]:
        """Create a store, owned by you"""
        store = StoreModel(**store_data, owner_id=current_user.id)
        answer = save_store(store)
        return answer, 201, {"Location": url_for("stores.Store", store_id=store.id)}
