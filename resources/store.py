from flask import Response, current_app
from flask.views import MethodView
from flask_jwt_extended import current_user
from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import aliased

from db import db
from models import ItemModel, StoreModel, TagModel
from resources.common import (
    Blueprint,
    commit_or_abort,
    created_links,
    get_or_404,
    link,
    not_found,
    refuse,
)
from resources.listing import Page, attach_firsts, page_of, set_firsts
from schemas import PlainStoreSchema, StoreDeletedSchema, StoreSchema

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


def store_to_change(*_body: dict, store_id: int) -> StoreModel:
    # Locked: a rename or delete waits for writes in the store, and they for it; so a
    # delete's counts are exact (an insert of an item or tag needs a share lock on it).
    return get_or_404(StoreModel, store_id, with_for_update=True)


def store_of_path(*_body: dict, store_id: int) -> StoreModel:
    return get_or_404(StoreModel, store_id)


def save_store(store: StoreModel) -> StoreModel:
    db.session.add(store)
    commit_or_abort(
        on_unique=(
            409,
            {"message": f"A store named {store.name!r} exists: pick another name."},
        )
    )
    return store


@blp.route("/store/<int:store_id>")
class Store(MethodView):
    @blp.response(200, StoreSchema)
    @blp.alt_response(404, description="No store with this id")
    def get(self, store_id: int) -> StoreModel | Response:
        """Get a store with its first items and tags"""
        if db.session.get_bind().dialect.name == "postgresql":
            return rendered_store(store_id)
        return with_firsts([get_or_404(StoreModel, store_id)])[0]

    @blp.login_required()
    @blp.arguments(PlainStoreSchema)
    @blp.response(200, StoreSchema)
    @blp.alt_response(404, description="No store with this id")
    @blp.alt_response(409, description="Another store has this name")
    @blp.owner_only(store_to_change)
    def put(self, store: StoreModel, store_data: dict, store_id: int) -> StoreModel:
        """Rename a store (its owner or an admin)"""
        store.name = store_data["name"]
        return with_firsts([save_store(store)])[0]

    @blp.login_required(fresh=True)
    @blp.response(200, StoreDeletedSchema)
    @blp.alt_response(404, description="No store with this id")
    @blp.owner_only(store_to_change)
    def delete(self, store: StoreModel, store_id: int) -> dict:
        """Delete a store with all its items, tags and their links (its owner or an admin,
        with a fresh token)"""
        items, tags = db.session.execute(
            select(
                select(func.count()).where(ItemModel.store_id == store_id).scalar_subquery(),
                select(func.count()).where(TagModel.store_id == store_id).scalar_subquery(),
            )
        ).one()
        db.session.delete(store)
        db.session.commit()
        return {
            "message": f"Store {store_id} deleted.",
            "deleted": {"items": items, "tags": tags},
        }


@blp.route("/store")
class StoreList(MethodView):
    @blp.paginated(StoreSchema)
    def get(self, **page: int) -> Page:
        """List stores with their first items and tags"""
        stores, after = page_of(select(StoreModel), StoreModel.id, **page)
        return with_firsts(stores), after

    @blp.login_required()
    @blp.arguments(PlainStoreSchema)
    @blp.response(201, StoreSchema)
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
    def post(self, store_data: dict) -> StoreModel:
        """Create a store, owned by you"""
        store = save_store(StoreModel(**store_data, owner_id=current_user.id))
        # A new store has no children: no need to ask the database.
        set_firsts(store, "items", [])
        set_firsts(store, "tags", [])
        return store
