"""The event feed's representations: each event type and its payload (GET /events)."""

import re
from datetime import UTC

from marshmallow import Schema, ValidationError, fields, validate

from schemas import COUNTED_UP_TO
from schemas.field_types import Cursor, Id


class PurgedStoreSchema(Schema):
    """What a store.purged event says of the store that went."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    owner_id = fields.Integer(required=True, allow_none=True)


# Each event type, and the schema of its `data`: the resource as the API answered the
# change (or, for item.deleted and tag.deleted, as GET showed it just before).
EVENT_DATA = {
    "store.created": "Store",
    "store.renamed": "Store",
    "store.deleted": "StoreDeletion or DeletedStore (an erasure, POST /store/<id>/purge)",
    "store.restored": "Store",
    "store.purged": "PurgedStore",
    "item.created": "Item",
    "item.updated": "Item",
    "item.deleted": "Item",
    "tag.created": "Tag",
    "tag.deleted": "Tag",
    "link.created": "Link",
    "link.deleted": "Link",
    "import.succeeded": "ItemImportStatus",
    "import.failed": "ItemImportStatus",
}
EVENT_TYPES = tuple(EVENT_DATA)
DATA_SCHEMAS = (
    "Item", "ItemImportStatus", "Link", "DeletedStore", "PurgedStore", "Store", "StoreDeletion",
    "Tag",
)  # fmt: skip
ONE_TYPE = "|".join(re.escape(each) for each in EVENT_TYPES)


class EventCountsSchema(Schema):
    """What went or came with a store (store.deleted, store.restored, store.purged), or what
    an import wrote (import.*); absent from other events."""

    items = fields.Integer(required=True)
    tags = fields.Integer(required=True)
    links = fields.Integer(required=True)
    exact = fields.Boolean(
        metadata={"description": f"store.deleted, store.restored: false when a count stopped "
                  f"at {COUNTED_UP_TO:,} (at least that many)"},
    )  # fmt: skip
    lines = fields.Integer(metadata={"description": "import.*: lines read."})
    bad_lines = fields.Integer(metadata={"description": "import.*: lines refused."})


class EventSchema(Schema):
    cursor = Cursor(
        required=True,
        attribute="position",
        metadata={"description": "Where this event is in the feed: after=<cursor> goes on "
                  "from here (and Last-Event-ID, for streams)."},
    )  # fmt: skip
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    resource_id = fields.Integer(
        required=True, metadata={"description": "The store's, item's, tag's or import's id; "
                                 "a link's item id."}
    )  # fmt: skip
    store_id = fields.Integer(required=True)
    actor_id = fields.Integer(
        required=True, allow_none=True,
        metadata={"description": "The user who made the change; null: the API itself (a "
                  "purge of an expired store)."},
    )  # fmt: skip
    occurred_at = fields.AwareDateTime(default_timezone=UTC, required=True)
    data = fields.Raw(
        required=True,
        attribute="payload",
        metadata={
            "description": "The resource as the API answered the change (item.deleted, "
            "tag.deleted: as GET showed it just before), by type: "
            + "; ".join(f"{each}: {name}" for each, name in EVENT_DATA.items()),
            # anyOf: the schemas allow properties they do not name, so one object may match
            # several of them.
            "anyOf": [{"$ref": f"#/components/schemas/{name}"} for name in DATA_SCHEMAS],
        },
    )  # fmt: skip
    counts = fields.Nested(EventCountsSchema, required=True, allow_none=True, attribute="counted")


def event_types(value: str) -> None:
    unknown = [each for each in value.split(",") if each not in EVENT_TYPES]
    if unknown:
        raise ValidationError(f"Unknown event types {unknown}: pick from {', '.join(EVENT_TYPES)}.")


class EventFilterSchema(Schema):
    store_id = Id(strict=False, metadata={"description": "Only the events of this store."})
    type = fields.String(
        validate=event_types,
        metadata={"description": "Only events of these types, comma-separated "
                  "(item.created,item.updated).", "example": "item.created",
                  "pattern": f"^({ONE_TYPE})(,({ONE_TYPE}))*$"},
    )  # fmt: skip


class EventArgsSchema(EventFilterSchema):
    page_size = fields.Integer(
        load_default=100, validate=validate.Range(min=1, max=1000), metadata={"example": 100}
    )
    after = Cursor(
        metadata={"description": "The cursor of the last event you have (or of the Link "
                  "header's next page): the page starts after it. Without it, the page starts "
                  "at the oldest event kept, and the Feed-Head header tells the newest cursor."},
    )  # fmt: skip


class EventStreamArgsSchema(EventFilterSchema):
    after = Cursor(
        metadata={"description": "The cursor of the last event you have (Feed-Head, after a "
                  "listing): the stream starts after it. Last-Event-ID, if sent, wins. Without "
                  "either, the stream starts at the newest event."},
    )  # fmt: skip


class EventStreamHeadersSchema(Schema):
    last_event_id = Cursor(
        data_key="Last-Event-ID",
        metadata={"description": "The id of the last event you got: the stream starts after "
                  "it, whatever after says. A browser's EventSource sends it when it connects "
                  "again."},
    )  # fmt: skip
