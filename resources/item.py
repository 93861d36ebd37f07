from flask import Response, jsonify, url_for
from flask.views import MethodView
from flask_smorest import abort
from sqlalchemy import Select, or_, select, true, tuple_
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from db import db
from models import ItemModel, ItemTagModel, StoreModel, TagModel
from resources.common import (
    LOCATION_HEADER,
    Blueprint,
    commit_or_abort,
    created_links,
    get_or_404,
    in_live_store,
    link,
    not_found,
)
from resources.listing import Page, attach_firsts, page_and_next, page_of, page_offset, set_firsts
from resources.store import store_to_fill
from schemas import (
    ItemCreateSchema,
    ItemListArgsSchema,
    ItemSchema,
    ItemUpdateSchema,
    MessageSchema,
)

blp = Blueprint("items", __name__, description="Items, each in one store")

# An item or tag is seen with its store, and only while the store is live (an inner join,
# filtered by models.store.hide_deleted_stores).
WITH_STORE = joinedload(ItemModel.store, innerjoin=True)
TAG_STORE = (joinedload(TagModel.store, innerjoin=True),)
ITEMS = select(ItemModel).options(WITH_STORE)


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


def item_to_change(*_body: dict, item_id: int) -> ItemModel:
    # Locked, so that a concurrent change or delete waits for us, or we for it (then: 404).
    item = get_or_404(ItemModel, item_id, options=(WITH_STORE,), with_for_update={"of": ItemModel})
    return in_live_store(item, item_id)


def store_of_new_item(item_data: dict) -> StoreModel:
    # A related resource that does not exist is a 404, as JSON:API has it.
    return store_to_fill(store_id=item_data["store_id"])


def page_of_store(store_id: int, **page: int) -> Page:
    """A page of one store's items, in id order."""
    return page_of(ITEMS, ItemModel.id, parent=(ItemModel.store_id, store_id), **page)


def page_in_store_order(page_size: int, after: int | None = None, page: int | None = None) -> Page:
    """The items of every live store, store by store in id order, each store's in id order;
    `after` an item id, the page starts after it.

    PostgreSQL walks the live stores, and each one's items by (store_id, id) (LATERAL): a
    deleted store's items, a million or more until its purge, are never read, as they
    would be by a walk of all items in id order that skips those of deleted stores.
    SQLite has no LATERAL; there the join walks them (SQLite is for one machine's data).
    """
    offset = page_offset(page_size, page)
    statement = ITEMS
    after_store = None
    if after:
        after_store = db.session.scalar(select(ItemModel.store_id).where(ItemModel.id == after))
        if after_store is None:
            abort(
                404,
                message=f"Item {after} not found (deleted since?): this list goes store by "
                "store, and goes on after an item that exists; pass another id of your page.",
            )
    if db.session.get_bind().dialect.name == "postgresql":
        wanted = offset + page_size + 1
        firsts = select(ItemModel.id).where(ItemModel.store_id == StoreModel.id)
        if after_store is not None:
            firsts = firsts.where(or_(StoreModel.id > after_store, ItemModel.id > after))
        firsts = firsts.order_by(ItemModel.id).limit(wanted).lateral()
        ids = select(firsts.c.id).select_from(StoreModel).join(firsts, true())
        ids = ids.where(StoreModel.deleted_at.is_(None))
        if after_store is not None:
            ids = ids.where(StoreModel.id >= after_store)
        ids = ids.order_by(StoreModel.id, firsts.c.id).offset(offset).limit(page_size + 1)
        statement = statement.where(ItemModel.id.in_(ids))
    else:
        if after_store is not None:
            position = tuple_(ItemModel.store_id, ItemModel.id) > tuple_(after_store, after)
            statement = statement.where(position)
        statement = statement.offset(offset).limit(page_size + 1)
    rows = db.session.scalars(statement.order_by(ItemModel.store_id, ItemModel.id)).all()
    return page_and_next(rows, page_size)


@blp.route("/item/<int:item_id>")
class Item(MethodView):
    @blp.etag
    @blp.response(200, ItemSchema)
    @blp.alt_response(404, description="No item with this id")
    def get(self, item_id: int) -> Response:
        """Get an item with its store and first tags"""
        return item_answer(get_or_404(ItemModel, item_id, options=(WITH_STORE,)))

    @blp.login_required()
    @blp.etag
    @blp.arguments(ItemUpdateSchema)
    @blp.response(200, ItemSchema)
    @blp.alt_response(404, description="No item with this id")
    @blp.owner_only(item_to_change, current=item_answer)
    def put(self, item: ItemModel, item_data: dict, item_id: int) -> Response:
        """Change an item's name, price or description (its store's owner or an admin)"""
        for field, value in item_data.items():
            setattr(item, field, value)
        db.session.commit()
        return item_answer(item)

    @blp.login_required()
    @blp.etag
    @blp.response(200, MessageSchema)
    @blp.alt_response(404, description="No item with this id")
    @blp.owner_only(item_to_change, current=item_answer)
    def delete(self, item: ItemModel, item_id: int) -> dict:
        """Delete an item and its links to tags (its store's owner or an admin)"""
        db.session.delete(item)
        db.session.commit()
        return {"message": f"Item {item_id} deleted."}


@blp.route("/item")
class ItemList(MethodView):
    @blp.etag
    @blp.paginated(ItemSchema, arguments=ItemListArgsSchema)
    @blp.alt_response(404, description="No item with the id of after")
    def get(self, store_id: int | None = None, **page: int):
        """List items store by store, or those of one store"""
        if store_id is None:
            items, after = page_in_store_order(**page)
        elif db.session.get(StoreModel, store_id) is None:  # or deleted: none to walk
            return [], None
        else:
            items, after = page_of_store(store_id, **page)
        return with_first_tags(items), after

    @blp.login_required()
    @blp.etag
    @blp.idempotent()
    @blp.arguments(ItemCreateSchema)
    @blp.response(201, ItemSchema, headers=LOCATION_HEADER)
    @blp.alt_response(404, description="No store with this store_id")
    @blp.doc(
        **created_links(
            GetItem=link("get", "/item/{item_id}", item_id="id"),
            UpdateItem=link("put", "/item/{item_id}", item_id="id"),
            DeleteItem=link("delete", "/item/{item_id}", item_id="id"),
            LinkTag=link("post", "/item/{item_id}/tag/{tag_id}", item_id="id"),
            GetStore=link("get", "/store/{store_id}", store_id="store_id"),
        )
    )
    @blp.owner_only(store_of_new_item)
    def post(self, store: StoreModel, item_data: dict) -> tuple[ItemModel, dict[str, str]]:
        """Create an item in a store (its owner or an admin)"""
        item = ItemModel(**item_data)
        db.session.add(item)
        # The store can still vanish before the insert commits: the foreign key tells.
        commit_or_abort(on_foreign_key=not_found(StoreModel, store.id))
        set_committed_value(item, "store", store)
        set_firsts(item, "tags", [])
        return item, {"Location": url_for("items.Item", item_id=item.id)}


@blp.route("/store/<int:store_id>/item")
class ItemsInStore(MethodView):
    @blp.etag
    @blp.paginated(ItemSchema)
    @blp.alt_response(404, description="No store with this id")
    def get(self, store_id: int, **page: int):
        """List the items of a store, page by page"""
        get_or_404(StoreModel, store_id)
        items, after = page_of_store(store_id, **page)
        return with_first_tags(items), after


@blp.route("/tag/<int:tag_id>/item")
class ItemsOfTag(MethodView):
    @blp.etag
    @blp.paginated(ItemSchema)
    @blp.alt_response(404, description="No tag with this id")
    def get(self, tag_id: int, **page: int):
        """List the items linked to a tag, page by page"""
        get_or_404(TagModel, tag_id, options=TAG_STORE)
        linked = ITEMS.join(ItemTagModel, ItemTagModel.item_id == ItemModel.id)
        # In the link table's order: its (tag_id, item_id) index walks just this page.
        items, after = page_of(
            linked, ItemTagModel.item_id, parent=(ItemTagModel.tag_id, tag_id), **page
        )
        return with_first_tags(items), after
