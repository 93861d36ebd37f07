from flask import Response, jsonify, url_for
from flask.views import MethodView
from flask_smorest import abort
from sqlalchemy import Select, delete, select
from sqlalchemy.orm.attributes import set_committed_value

from db import db
from models import ItemModel, ItemTagModel, StoreModel, TagModel
from models.queries import NotFoundError, get_live_one, live_tags
from rendering.firsts import attach_firsts, set_firsts
from schemas import LinkSchema, MessageSchema, PlainTagSchema, TagSchema
from web.blueprint import Blueprint
from web.events import Emits
from web.idempotency import user_scope
from web.openapi import LOCATION_HEADER, link
from web.pagination import page_of
from web.transactions import Conflict, flush

blp = Blueprint("tags", __name__, description="Tags of a store, linked to its items")

NOT_HERE = {404: "No tag with this id"}


def first_items_of_tag(tag_id) -> Select:
    return (
        select(ItemTagModel.item_id)
        .where(ItemTagModel.tag_id == tag_id)
        .order_by(ItemTagModel.item_id)
    )


def with_first_items(tags: list[TagModel]) -> list[TagModel]:
    attach_firsts(tags, "items", ItemModel, first_items_of_tag)
    return tags


def tag_answer(tag: TagModel) -> Response:
    """The tag as GET /tag/<id> shows it: what If-Match is compared with."""
    return jsonify(TagSchema().dump(with_first_items([tag])[0]))


def store_to_fill(store_id: int) -> StoreModel:
    # Share-locked: its deletion waits for the new tag, or it is seen deleted (404).
    return get_live_one(StoreModel, store_id, lock="share")


def tag_to_delete(tag_id: int) -> TagModel:
    # The lock keeps a concurrent link from slipping in between check and delete.
    return get_live_one(TagModel, tag_id, lock="update")


def item_of_link(item_id: int) -> ItemModel:
    return get_live_one(ItemModel, item_id, lock="share")


@blp.route("/store/<int:store_id>/tag")
class TagsInStore(MethodView):
    @blp.listing(TagSchema, errors={404: "No store with this id"})
    def get(self, store_id: int, **page: int):
        """List the tags of a store, page by page"""
        get_live_one(StoreModel, store_id)
        tags, after = page_of(
            live_tags(), TagModel.id, parent=(TagModel.store_id, store_id), **page
        )
        return with_first_items(tags), after

    @blp.write(
        201, TagSchema, idempotent=user_scope, body=PlainTagSchema, headers=LOCATION_HEADER,
        owner=store_to_fill, emits=Emits("tag.created"),
        errors={404: "No store with this id", 409: "The store has a tag with this name"},
        conflicts={
            "uq_tags_store_id_name": Conflict(409, lambda body, store_id, **_: (
                f"Store {store_id} has a tag named {body['name']!r}: pick another name."
            )),
            # The store can still vanish before the insert commits: the foreign key tells.
            "fk_tags_store_id_stores": Conflict(
                404, lambda store_id, **_: str(NotFoundError(StoreModel, store_id))
            ),
        },
        links={
            "GetTag": link("get", "/tag/{tag_id}", tag_id="id"),
            "DeleteTag": link("delete", "/tag/{tag_id}", tag_id="id"),
            "LinkItem": link("post", "/item/{item_id}/tag/{tag_id}", tag_id="id"),
        },
    )  # fmt: skip
    def post(
        self, target: StoreModel, body: dict, store_id: int
    ) -> tuple[TagModel, dict[str, str]]:
        """Create a tag in a store (its owner or an admin)"""
        tag = TagModel(**body, store_id=store_id)
        db.session.add(tag)
        flush()
        set_committed_value(tag, "store", target)
        set_firsts(tag, "items", [])
        return tag, {"Location": url_for("tags.Tag", tag_id=tag.id)}


@blp.route("/tag/<int:tag_id>")
class Tag(MethodView):
    @blp.read(TagSchema, errors=NOT_HERE)
    def get(self, tag_id: int) -> Response:
        """Get a tag with its store and first items"""
        return tag_answer(get_live_one(TagModel, tag_id))

    @blp.write(
        200, MessageSchema, owner=tag_to_delete, current=tag_answer,
        emits=Emits("tag.deleted", gone=tag_answer),
        errors={**NOT_HERE, 409: "The tag is still linked to items"},
    )  # fmt: skip
    def delete(self, target: TagModel, tag_id: int) -> dict:
        """Delete a tag that no item uses (its store's owner or an admin)"""
        # Whether any link is left, not how many: a tag of 20,000 items costs one index probe.
        linked = select(ItemTagModel).where(ItemTagModel.tag_id == tag_id).exists()
        if db.session.scalar(select(linked)):
            abort(
                409,
                message=f"Tag {tag_id} is still linked to items: unlink them first "
                f"with DELETE /item/<item_id>/tag/{tag_id} (GET /tag/{tag_id}/item lists them).",
            )
        db.session.delete(target)
        return {"message": f"Tag {tag_id} deleted."}


@blp.route("/item/<int:item_id>/tag")
class TagsOfItem(MethodView):
    @blp.listing(TagSchema, errors={404: "No item with this id"})
    def get(self, item_id: int, **page: int):
        """List the tags linked to an item, page by page"""
        get_live_one(ItemModel, item_id)
        linked = live_tags().join(ItemTagModel, ItemTagModel.tag_id == TagModel.id)
        # In the link table's order: its (item_id, tag_id) key walks just this page.
        tags, after = page_of(
            linked, ItemTagModel.tag_id, parent=(ItemTagModel.item_id, item_id), **page
        )
        return with_first_items(tags), after


@blp.route("/item/<int:item_id>/tag/<int:tag_id>")
class LinkTagsToItem(MethodView):
    @blp.write(
        201, LinkSchema, idempotent=user_scope, owner=item_of_link, emits=Emits("link.created"),
        errors={
            404: "No item or no tag with this id",
            409: "Already linked, or the tag belongs to another store",
        },
        conflicts={
            "pk_items_tags": Conflict(
                409, lambda item_id, tag_id, **_: f"Item {item_id} and tag {tag_id} are linked "
                "already."
            ),
            # Either can still vanish before the insert commits.
            **dict.fromkeys(
                ("fk_items_tags_item_id_items", "fk_items_tags_tag_id_tags"),
                Conflict(404, lambda *_, **__: "The item or the tag was deleted meanwhile."),
            ),
        },
        links={
            "Unlink": link(
                "delete", "/item/{item_id}/tag/{tag_id}", item_id="item/id", tag_id="tag/id"
            ),
            "GetItem": link("get", "/item/{item_id}", item_id="item/id"),
            "GetTag": link("get", "/tag/{tag_id}", tag_id="tag/id"),
        },
    )  # fmt: skip
    def post(self, target: ItemModel, item_id: int, tag_id: int) -> dict:
        """Link a tag to an item of the same store (its owner or an admin)"""
        tag = get_live_one(TagModel, tag_id)
        if target.store_id != tag.store_id:
            abort(
                409,
                message=f"Tag {tag_id} belongs to store {tag.store_id} and item {item_id} "
                f"to store {target.store_id}: link a tag of the item's own store.",
            )
        db.session.add(ItemTagModel(item_id=item_id, tag_id=tag_id))
        return {"message": f"Tag {tag_id} linked to item {item_id}.", "item": target, "tag": tag}

    @blp.write(
        200, LinkSchema, tagged=False, owner=item_of_link, emits=Emits("link.deleted"),
        errors={404: "No such item, tag or link"},
    )  # fmt: skip
    def delete(self, target: ItemModel, item_id: int, tag_id: int) -> dict:
        """Unlink a tag from an item (its store's owner or an admin)"""
        tag = get_live_one(TagModel, tag_id)
        unlinked = db.session.execute(
            delete(ItemTagModel).where(
                ItemTagModel.item_id == item_id, ItemTagModel.tag_id == tag_id
            )
        )
        if unlinked.rowcount == 0:
            abort(404, message=f"Item {item_id} and tag {tag_id} are not linked.")
        return {
            "message": f"Tag {tag_id} unlinked from item {item_id}.",
            "item": target,
            "tag": tag,
        }
