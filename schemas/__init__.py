"""The representations of the API, in and out (marshmallow): one schema per shape."""

from datetime import UTC

from marshmallow import Schema, fields, validate

from schemas.field_types import (
    MAX_PAGE_DEPTH,
    NO_NUL,
    After,
    Id,
    Name,
    Price,
    Sku,
    UpdatedAfter,
    WholeMatch,
    first_entries,
    timestamps,
)

# Tags named on one imported line at most: a line costs the import a bounded amount.
IMPORTED_TAGS_PER_ITEM = 100


class PlainStoreSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Name(required=True)
    owner_id = fields.Integer(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The user who may change it (besides admins); null: admins only."},
    )
    created_at, updated_at = timestamps()


class PlainItemSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Name(required=True)
    price = Price(required=True)
    description = fields.String(
        allow_none=True,
        validate=[validate.Length(max=10_000), NO_NUL],
        metadata={"example": "A short description."},
    )
    sku = Sku()
    store_id = fields.Integer(dump_only=True)
    created_at, updated_at = timestamps()


class PlainTagSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Name(required=True)
    store_id = fields.Integer(dump_only=True)
    created_at, updated_at = timestamps()


class StoreSchema(PlainStoreSchema):
    items, items_has_more, items_url = first_entries(PlainItemSchema, "items", "/store/{id}/item")
    tags, tags_has_more, tags_url = first_entries(PlainTagSchema, "tags", "/store/{id}/tag")


class ItemSchema(PlainItemSchema):
    store = fields.Nested(PlainStoreSchema, dump_only=True)
    tags, tags_has_more, tags_url = first_entries(PlainTagSchema, "tags", "/item/{id}/tag")


class ItemCreateSchema(PlainItemSchema):
    store_id = Id(required=True, metadata={"example": 1})


class ItemImportSchema(PlainItemSchema):
    """One line of an imported catalogue: an item as POST /item takes it, its store the
    import's, with the names of its tags (found in the store, or created)."""

    tags = fields.List(
        Name(), load_default=list, validate=validate.Length(max=IMPORTED_TAGS_PER_ITEM)
    )


class ItemUpdateSchema(PlainItemSchema):
    """Any of an item's own fields; those left out keep their value."""

    def __init__(self, **kwargs) -> None:
        super().__init__(partial=True, **kwargs)


class TagSchema(PlainTagSchema):
    store = fields.Nested(PlainStoreSchema, dump_only=True)
    items, items_has_more, items_url = first_entries(PlainItemSchema, "items", "/tag/{id}/item")


class PageArgsSchema(Schema):
    page_size = fields.Integer(
        load_default=20, validate=validate.Range(min=1, max=100), metadata={"example": 20}
    )
    after = After(
        "Entries with a larger id than this, in id order: the next page starts after the last "
        "id of this one (the Link header says so). As cheap at the millionth entry as at the "
        "first."
    )
    page = fields.Integer(
        validate=validate.Range(min=1),
        metadata={
            "description": f"Page number, from 1, while page x page_size <= {MAX_PAGE_DEPTH:,}"
            "; deeper, use after. With after, pages are counted from there."
        },
    )


class ItemChangesArgsSchema(PageArgsSchema):
    updated_after = UpdatedAfter()
    after = After(
        "The last item id you have: the next page starts after it, in id order (with "
        "updated_after: after the item of that id and that updated_at). As cheap at the "
        "millionth item as at the first."
    )


class ItemListArgsSchema(ItemChangesArgsSchema):
    store_id = Id(strict=False, metadata={"description": "Only the items of this store."})
    after = After(
        "The last item id you have: the next page starts after it. Without store_id the list "
        "goes store by store (by store id), each store's items in id order; with it, that "
        "store's items in id order (with updated_after: after the item of that id and that "
        "updated_at). As cheap at the millionth item as at the first, and past deleted stores "
        "however big."
    )


# A deleted store's contents are counted this far: past it, "at least" (the count of a
# million rows would cost the delete 160 ms).
COUNTED_UP_TO = 10_000


class DeletedCountsSchema(Schema):
    items = fields.Integer(required=True)
    tags = fields.Integer(required=True)
    links = fields.Integer(required=True, metadata={"description": "Item-tag links."})
    exact = fields.Boolean(
        required=True,
        metadata={
            "description": f"false: the counts stop at {COUNTED_UP_TO:,}, and a count of "
            f"{COUNTED_UP_TO:,} means at least that many"
        },
    )


class DeletedStoreSchema(PlainStoreSchema):
    deleted_at = fields.AwareDateTime(default_timezone=UTC, required=True)
    expire_time = fields.AwareDateTime(
        default_timezone=UTC,
        required=True,
        metadata={"description": "Until then POST /store/<id>/restore brings it back whole."},
    )
    deleted_by = fields.Integer(
        allow_none=True, required=True, metadata={"description": "The user who deleted it."}
    )


class StoreDeletionSchema(DeletedStoreSchema):
    message = fields.String(required=True)
    deleted = fields.Nested(
        DeletedCountsSchema, required=True, metadata={"description": "What went with it."}
    )


class StoreRestoreSchema(Schema):
    """No body restores the store as it was; a `name` renames it, for when a live store took
    its name meanwhile."""

    BODY_OPTIONAL = True

    name = Name()


class BadLineSchema(Schema):
    line = fields.Integer(required=True, metadata={"description": "Counted from 1."})
    errors = fields.Dict(
        required=True,
        metadata={"description": "By field (or line, header), what is wrong.",
                  "example": {"price": ["Not a valid number."]}},
    )  # fmt: skip


class ItemImportStatusSchema(Schema):
    id = fields.Integer(required=True)
    store_id = fields.Integer(required=True)
    state = fields.String(
        required=True,
        validate=validate.OneOf(("queued", "running", "succeeded", "failed")),
        metadata={"description": "succeeded: every line imported; failed: none was."},
    )
    media_type = fields.String(required=True, metadata={"example": "application/x-ndjson"})
    size = fields.Integer(required=True, metadata={"description": "Bytes."})
    created_at = fields.AwareDateTime(default_timezone=UTC, required=True)
    finished_at = fields.AwareDateTime(default_timezone=UTC, required=True, allow_none=True)
    lines_read = fields.Integer(required=True)
    items = fields.Integer(required=True, metadata={"description": "Items created."})
    tags_created = fields.Integer(required=True)
    links = fields.Integer(required=True, metadata={"description": "Item-tag links made."})
    error_count = fields.Integer(required=True, metadata={"description": "Bad lines, all."})
    errors = fields.List(
        fields.Nested(BadLineSchema), required=True, attribute="bad_lines",
        metadata={"description": "The first 100 bad lines."},
    )  # fmt: skip
    message = fields.String(required=True, allow_none=True)
    store_url = fields.Function(lambda row: f"/store/{row.store_id}", required=True)


class MessageSchema(Schema):
    message = fields.String(required=True)


class LinkSchema(MessageSchema):
    item = fields.Nested(PlainItemSchema, required=True)
    tag = fields.Nested(PlainTagSchema, required=True)


# What an Idempotency-Key may be: 1 to 255 printable ASCII characters (a UUID, say).
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"


class IdempotencyKeySchema(Schema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=[
            validate.Length(min=1, max=255),
            WholeMatch(IDEMPOTENCY_KEY_PATTERN, error="Use printable ASCII characters."),
        ],
        # No example: Swagger UI would fill it in, the same key for every request.
        metadata={
            "description": "A new unique string for each request, a UUID say: sent again "
            "with a retry of this very request, it gets the first answer again instead of "
            "running twice. Kept IDEMPOTENCY_KEY_HOURS (24) hours.",
        },
    )


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(required=True, metadata={"example": "reachable"})
