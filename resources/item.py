from datetime import datetime

from flask import Response, jsonify, url_for
from flask.views import MethodView
from flask_smorest import abort
from sqlalchemy import Select, select
from sqlalchemy.orm.attributes import set_committed_value

from db import db
from models import ItemModel, ItemTagModel, StoreModel, TagModel
from models.queries import (
    NotFoundError,
    get_live,
    get_live_one,
    item_in_store_order_after,
    live_items,
    live_items_in_store_order,
)
from rendering.firsts import attach_firsts, set_firsts
from schemas import (
    ItemChangesArgsSchema,
    ItemCreateSchema,
    ItemListArgsSchema,
    ItemSchema,
    ItemUpdateSchema,
    MessageSchema,
)
from web.blueprint import Blueprint
from web.events import Emits
from web.idempotency import user_scope
from web.openapi import LOCATION_HEADER, link
from web.pagination import Page, changes_page, page_and_next, page_of, page_offset
from web.transactions import Conflict, flush

blp = Blueprint("items", __name__, description="Items, each in one store")

NOT_HERE = {404: "No item with this id"}
SKU_TAKEN = "Another item of the store has this sku"


def sku_taken(store_id: int, sku: str | None) -> str:
    return f"Store {store_id} has an item with sku {sku!r}: pick another."


def first_tags_of_item(item_id) -> Select:
    return (
        select(ItemTagModel.tag_id)
        .where(ItemTagModel.item_id == item_id)
        .order_by(ItemTagModel.tag_id)
    )


def with_first_tags(items: list[ItemModel]) -> list[ItemModel]:
    attach_firsts(items, "tags", TagModel, first_tags_of_item)
    return items


def item_answer(item: ItemModel) -> Response:
    """The item as GET /item/<id> shows it: what If-Match is compared with."""
    return jsonify(ItemSchema().dump(with_first_tags([item])[0]))


def item_to_change(item_id: int) -> ItemModel:
    # Locked, so that a concurrent change or delete waits for us, or we for it (then: 404).
    return get_live_one(ItemModel, item_id, lock="update")


def store_of_new_item(body: dict) -> StoreModel:
    # A related resource that does not exist is a 404, as JSON:API has it. Share-locked: its
    # deletion waits for the new item, or it is seen deleted (404).
    return get_live_one(StoreModel, body["store_id"], lock="share")


def page_of_store(store_id: int, **page: int) -> Page:
    """A page of one store's items, in id order."""
    return page_of(live_items(), ItemModel.id, parent=(ItemModel.store_id, store_id), **page)


def page_of_changes(updated_after: datetime, store_id: int | None = None, **page: int) -> Page:
    """A page of the items changed after `updated_after`, of every live store or of one."""
    parent = None if store_id is None else (ItemModel.store_id, store_id)
    return changes_page(live_items(), ItemModel, updated_after, parent=parent, **page)


def page_in_store_order(page_size: int, after: int | None = None, page: int | None = None) -> Page:
    """The items of every live store, store by store; `after` an item id, the page starts
    after it."""
    after_store = None
    if after:
        after_store = db.session.scalar(item_in_store_order_after(after))
        if after_store is None:
            abort(
                404,
                message=f"Item {after} not found (deleted since?): this list goes store by "
                "store, and goes on after an item that exists; pass another id of your page.",
            )
    statement = live_items_in_store_order(
        page_offset(page_size, page), page_size + 1, after, after_store
    )
    return page_and_next(db.session.scalars(statement).all(), page_size)


@blp.route("/item/<int:item_id>")
class Item(MethodView):
    @blp.read(ItemSchema, errors=NOT_HERE)
    def get(self, item_id: int) -> Response:
        """Get an item with its store and first tags"""
        return item_answer(get_live_one(ItemModel, item_id))

    @blp.write(
        200, ItemSchema, body=ItemUpdateSchema, owner=item_to_change, current=item_answer,
        emits=Emits("item.updated"), errors={**NOT_HERE, 409: SKU_TAKEN},
        conflicts={
            "uq_items_store_id_sku": Conflict(
                409, lambda target, body, **_: sku_taken(target.store_id, body["sku"])
            ),
        },
    )  # fmt: skip
    def put(self, target: ItemModel, body: dict, item_id: int) -> Response:
        """Change an item's name, price, description or sku (its store's owner or an admin)"""
        for field, value in body.items():
            setattr(target, field, value)
        return item_answer(target)

    @blp.write(
        200, MessageSchema, owner=item_to_change, current=item_answer,
        emits=Emits("item.deleted", gone=item_answer), errors=NOT_HERE,
    )  # fmt: skip
    def delete(self, target: ItemModel, item_id: int) -> dict:
        """Delete an item and its links to tags (its store's owner or an admin)"""
        db.session.delete(target)
        return {"message": f"Item {item_id} deleted."}


@blp.route("/item")
class ItemList(MethodView):
    @blp.listing(
        ItemSchema, arguments=ItemListArgsSchema, errors={404: "No item with the id of after"}
    )
    def get(self, store_id: int | None = None, updated_after: datetime | None = None, **page: int):
        """List items store by store, or those of one store, or those changed since a time"""
        if store_id is not None and get_live(StoreModel, store_id) is None:  # or deleted
            return [], None
        if updated_after is not None:
            items, after = page_of_changes(updated_after, store_id, **page)
        elif store_id is None:
            items, after = page_in_store_order(**page)
        else:
            items, after = page_of_store(store_id, **page)
        return with_first_tags(items), after

    @blp.write(
        201, ItemSchema, idempotent=user_scope, body=ItemCreateSchema, headers=LOCATION_HEADER,
        owner=store_of_new_item, emits=Emits("item.created"),
        errors={404: "No store with this store_id", 409: SKU_TAKEN},
        conflicts={
            "uq_items_store_id_sku": Conflict(
                409, lambda body, **_: sku_taken(body["store_id"], body["sku"])
            ),
            # The store can still vanish before the insert commits: the foreign key tells.
            "fk_items_store_id_stores": Conflict(
                404, lambda body, **_: str(NotFoundError(StoreModel, body["store_id"]))
            ),
        },
        links={
            "GetItem": link("get", "/item/{item_id}", item_id="id"),
            "UpdateItem": link("put", "/item/{item_id}", item_id="id"),
            "DeleteItem": link("delete", "/item/{item_id}", item_id="id"),
            "LinkTag": link("post", "/item/{item_id}/tag/{tag_id}", item_id="id"),
            "GetStore": link("get", "/store/{store_id}", store_id="store_id"),
        },
    )  # fmt: skip
    def post(self, target: StoreModel, body: dict) -> tuple[ItemModel, dict[str, str]]:
        """Create an item in a store (its owner or an admin)"""
        item = ItemModel(**body)
        db.session.add(item)
        flush()
        set_committed_value(item, "store", target)
        set_firsts(item, "tags", [])
        return item, {"Location": url_for("items.Item", item_id=item.id)}


@blp.route("/store/<int:store_id>/item")
class ItemsInStore(MethodView):
    @blp.listing(ItemSchema, arguments=ItemChangesArgsSchema, errors={404: "No store with this id"})
    def get(self, store_id: int, updated_after: datetime | None = None, **page: int):
        """List the items of a store, page by page, or those changed since a time"""
        get_live_one(StoreModel, store_id)
        if updated_after is None:
            items, after = page_of_store(store_id, **page)
        else:
            items, after = page_of_changes(updated_after, store_id, **page)
        return with_first_tags(items), after


@blp.route("/tag/<int:tag_id>/item")
class ItemsOfTag(MethodView):
    @blp.listing(ItemSchema, errors={404: "No tag with this id"})
    def get(self, tag_id: int, **page: int):
        """List the items linked to a tag, page by page"""
        get_live_one(TagModel, tag_id)
        linked = live_items().join(ItemTagModel, ItemTagModel.item_id == ItemModel.id)
        # In the link table's order: its (tag_id, item_id) index walks just this page.
        items, after = page_of(
            linked, ItemTagModel.item_id, parent=(ItemTagModel.tag_id, tag_id), **page
        )
        return with_first_tags(items), after
